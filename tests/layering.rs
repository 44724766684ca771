//! The core's folders are its layers (issue 22): no circle among its
//! modules (folders as units, and the files within each folder), and each
//! layer uses only the layers below it, in the order docs/design.md draws
//! (and `lib.rs` lists).

#[path = "../ipc-demo/tests/layering.rs"]
mod layering;

use layering::{circle, mentions, module_graph};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module of the crate's root that is not a
/// folder named here is one of the handles (`producer.rs`, `buffer.rs`,
/// ...), the layer between `os` and `hub`.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["sync"],
    &["protocol"],
    &["config"],
    &["policy"],
    &["os"],
    &[
        "batch", "buffer", "chunk", "consumer", "grow", "lease", "open", "pending", "producer",
        "view",
    ],
    &["hub"],
    // Beside the layers: what only the bindings and the fuzz targets use.
    &["binding", "fuzzing"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rank(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .unwrap_or_else(|| panic!("src/{module} is in no layer of tests/layering.rs"))
}

/// Each file of the folder `dir` (its `mod.rs` aside) and the files of the
/// same folder it names, as `crate::folder::x` or `super::x`.
fn folder_graph(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let folder = dir.file_name().unwrap().to_string_lossy().into_owned();
    let texts: BTreeMap<String, String> = std::fs::read_dir(dir)
        .expect("a module directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            (stem, std::fs::read_to_string(&p).expect("a source file"))
        })
        .filter(|(stem, _)| stem != "mod")
        .collect();
    texts
        .iter()
        .map(|(name, text)| {
            // `crate::protocol::ring::X` in the folder `protocol` reads as
            // `crate::ring::X`; `super::ring` (a file's own `tests` module
            // says `super::*`, which names nothing) too.
            let local = text
                .replace(&format!("crate::{folder}::"), "crate::")
                .replace("super::", "crate::");
            let used = mentions(&local)
                .into_iter()
                .filter(|m| m != name && texts.contains_key(m))
                .collect();
            (name.clone(), used)
        })
        .collect()
}

fn show(graph: &BTreeMap<String, BTreeSet<String>>) -> String {
    graph
        .iter()
        .map(|(m, used)| format!("  {m} -> {}", Vec::from_iter(used.clone()).join(" ")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn each_layer_uses_only_the_layers_below_it() {
    let graph = module_graph(&src());
    let mut upward = Vec::new();
    for (module, used) in &graph {
        for other in used {
            let (from, to) = (rank(module), rank(other));
            // Handles may use each other (no circle: checked by the test
            // the included file brings); folders only lower layers.
            if to > from || (to == from && LAYERS[from].len() == 1) {
                upward.push(format!(
                    "{module} (layer {}) -> {other} (layer {})",
                    from + 1,
                    to + 1
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "layers used from below or beside:\n{}\n{}",
        upward.join("\n"),
        show(&graph)
    );
    // Every layer of the list is there: a renamed folder fails the test
    // instead of passing it for want of modules.
    for layer in LAYERS {
        for module in *layer {
            assert!(graph.contains_key(*module), "no src/{module}");
        }
    }
}

#[test]
fn the_files_of_each_folder_form_no_circle() {
    let mut folders = 0;
    for entry in std::fs::read_dir(src()).expect("the source directory") {
        let dir = entry.expect("a directory entry").path();
        if !dir.is_dir() {
            continue;
        }
        folders += 1;
        let graph = folder_graph(&dir);
        if let Some(found) = circle(&graph) {
            panic!(
                "files of {} in a circle: {}\n{}",
                dir.display(),
                found.join(" -> "),
                show(&graph)
            );
        }
    }
    assert!(folders >= 6, "only {folders} folders in src");
}

#[test]
fn a_folder_circle_is_found() {
    let dir = std::env::temp_dir().join(format!("shmstream-layering-{}", std::process::id()));
    let layer = dir.join("layer");
    std::fs::create_dir_all(&layer).unwrap();
    std::fs::write(layer.join("mod.rs"), "mod a; mod b;").unwrap();
    std::fs::write(layer.join("a.rs"), "use crate::layer::b::X;").unwrap();
    std::fs::write(
        layer.join("b.rs"),
        "use super::a::Y;\nmod tests { use super::*; }",
    )
    .unwrap();
    let graph = folder_graph(&layer);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(graph["a"], BTreeSet::from(["b".to_string()]));
    assert_eq!(circle(&graph).map(|c| c.len()), Some(3), "{graph:?}");
}
