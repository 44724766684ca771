//! The modules of `ipc-demo` form no circle (issue 22): every `crate::x`
//! a module mentions, in code or in a doc link, points down a graph
//! without cycles, so each module can be read knowing only those below it.
//!
//! The check is generic over a crate's source directory
//! (`circle(&module_graph(src))`);
//! another crate can run it on its own `src` by including this file
//! (`#[path = "../../ipc-demo/tests/layering.rs"] mod layering;`: the
//! test below then reads that crate's `CARGO_MANIFEST_DIR`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Which module uses which: a module's name to the names it mentions.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The modules of the crate whose root is in `src` (`lib.rs`, `main.rs`
/// and `bin/` aside) and the other modules each mentions as `crate::x`.
/// A directory module (`x/mod.rs`, `x/*.rs`) is one module, `x`.
pub fn module_graph(src: &Path) -> Graph {
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("the source directory") {
        let path = entry.expect("a directory entry").path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = texts.entry(stem.clone()).or_default();
        if path.is_dir() {
            for file in std::fs::read_dir(&path).expect("a module directory") {
                let file = file.expect("a directory entry").path();
                if file.extension().is_some_and(|e| e == "rs") {
                    *text += &std::fs::read_to_string(&file).expect("a source file");
                }
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            *text += &std::fs::read_to_string(&path).expect("a source file");
        }
    }
    for root in ["lib", "main", "bin"] {
        texts.remove(root);
    }
    texts.retain(|_, text| !text.is_empty());
    texts
        .iter()
        .map(|(name, text)| {
            let used = mentions(text)
                .into_iter()
                .filter(|m| m != name && texts.contains_key(m))
                .collect();
            (name.clone(), used)
        })
        .collect()
}

/// The first segment of every `crate::` path in `text`, also inside
/// braces: `crate::a::X`, `crate::{b, c::Y}` give a, b, c.
pub fn mentions(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::`, `my_crate::`
        }
        let rest = &text[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            out.insert(ident(rest));
            continue;
        };
        // Inside the braces: the name after the opening brace and after
        // each comma at depth 1.
        let mut depth = 1;
        let mut start = true;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 1 => break,
                '}' => depth -= 1,
                ',' if depth == 1 => start = true,
                c if c.is_whitespace() => {}
                _ if start => {
                    out.insert(ident(&group[i..]));
                    start = false;
                }
                _ => {}
            }
        }
    }
    out.remove("");
    out
}

/// A circle of `graph` (its modules in order, the first repeated at the
/// end), or `None` when it has none.
pub fn circle(graph: &Graph) -> Option<Vec<String>> {
    // Depth-first; a module met again while still on the path closes a
    // circle.
    fn visit<'a>(
        graph: &'a Graph,
        at: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|m| *m == at) {
            let mut found: Vec<String> = path[i..].iter().map(|m| m.to_string()).collect();
            found.push(at.to_string());
            return Some(found);
        }
        if !done.insert(at) {
            return None;
        }
        path.push(at);
        for next in graph.get(at).into_iter().flatten() {
            if let Some(found) = visit(graph, next, path, done) {
                return Some(found);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(graph, m, &mut Vec::new(), &mut done))
}

#[test]
fn the_modules_of_this_crate_form_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(graph.len() > 1, "no modules found in {}", src.display());
    if let Some(found) = circle(&graph) {
        let uses: Vec<String> = graph
            .iter()
            .map(|(m, used)| format!("  {m} -> {}", Vec::from_iter(used.clone()).join(" ")))
            .collect();
        panic!(
            "modules in a circle: {}\n{}",
            found.join(" -> "),
            uses.join("\n")
        );
    }
}

#[test]
fn mentions_and_circles_are_found() {
    let text = "use crate::a::X;\nuse crate::{b, c::{D, e::F}, g};\n/// [`crate::h`]\n\
                $crate::no::x; other_crate::no2; crate::i::f();";
    let names: Vec<_> = mentions(text).into_iter().collect();
    assert_eq!(names, ["a", "b", "c", "g", "h", "i"]);
    let graph = |edges: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (from, to) in edges {
            g.entry(from.to_string())
                .or_default()
                .insert(to.to_string());
            g.entry(to.to_string()).or_default();
        }
        g
    };
    assert_eq!(circle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    assert_eq!(
        circle(&graph(&[("a", "b"), ("b", "c"), ("c", "d"), ("d", "b")])),
        Some(vec!["b".into(), "c".into(), "d".into(), "b".into()])
    );
}
