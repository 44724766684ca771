//! The modules of `shmstream-py/src` form no circle (issue 22): the check
//! of `ipc-demo/tests/layering.rs`, run on this crate's `src` (its test
//! reads `CARGO_MANIFEST_DIR`, which is this crate's here).
//!
//! The crate is a `cdylib` (abi3, no `extension-module` feature), so its
//! tests build and run without a Python to link: `cargo test` runs this.

#[path = "../../ipc-demo/tests/layering.rs"]
mod layering;

use std::collections::BTreeSet;
use std::path::Path;

fn src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `lib.rs` is the table of contents: no module reaches up into it, so
/// every `crate::x` a module mentions names another module.
#[test]
fn no_module_uses_the_crate_root() {
    let graph = layering::module_graph(&src());
    for entry in std::fs::read_dir(src()).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        if stem == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let root: Vec<String> = layering::mentions(&text)
            .into_iter()
            .filter(|m| !graph.contains_key(m))
            .collect();
        assert!(
            root.is_empty(),
            "{} uses crate::{root:?}, which is no module (lib.rs only lists modules)",
            path.display()
        );
    }
}

/// `lib.rs` lists every module, each after every module it uses, so the
/// list reads bottom up.
#[test]
fn lib_lists_the_modules_bottom_up() {
    let graph = layering::module_graph(&src());
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut listed: Vec<String> = Vec::new();
    for line in lib.lines().filter(|l| l.starts_with("//! - ")) {
        let head = line.split(':').next().unwrap();
        for name in head.split('`').skip(1).step_by(2) {
            listed.push(name.to_string());
        }
    }
    let modules: BTreeSet<&String> = graph.keys().collect();
    assert_eq!(
        listed.iter().collect::<BTreeSet<_>>(),
        modules,
        "lib.rs's list against src/"
    );
    for (i, m) in listed.iter().enumerate() {
        for used in &graph[m] {
            let at = listed.iter().position(|x| x == used).unwrap();
            assert!(at < i, "lib.rs lists {m} before {used}, which it uses");
        }
    }
}
