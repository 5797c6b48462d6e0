//! node/'s layering holds: every `crate::…` path in node/src runs down the layer table below (the
//! picture at the top of node/src/lib.rs), every top-level module is placed in it, and no source
//! file grows past the size a reader can hold.
//!
//! A module may use its own submodules freely and any module of a lower rank; an import of the
//! same or a higher rank (a back-edge, which is how import cycles start) fails with the file, the
//! line and the two layers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules of node/src, lowest first: (module, rank, layer). A module may import only
/// modules of a lower rank.
const LAYERS: &[(&str, u8, &str)] = &[
    ("error", 0, "L0 leaves"),
    ("clock", 0, "L0 leaves"),
    ("addr", 0, "L0 leaves"),
    ("view", 1, "L0 leaves"),
    ("config", 1, "L0 leaves"),
    ("keystore", 1, "L0 leaves"),
    ("reputation_store", 1, "L0 leaves"),
    ("framed", 1, "L0 leaves"),
    ("presets", 2, "L0 leaves"),
    ("record", 2, "L0 leaves"),
    ("metrics", 2, "L0 leaves"),
    ("worker", 2, "L0 leaves"),
    ("net", 3, "L1 net"),
    ("reputation", 4, "L2 services"),
    ("credits", 4, "L2 services"),
    ("storage", 5, "L2 services"),
    ("names", 5, "L2 services"),
    ("inference", 6, "L2 services"),
    ("onion", 7, "L2 services"),
    ("node", 8, "L3 node"),
    ("api", 9, "L4 edges"),
    ("cli", 10, "L4 edges"),
];

/// Longest source file allowed in node/src, in lines.
const MAX_LINES: usize = 700;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| match e {
            Ok(e) => e.path(),
            Err(e) => panic!("{}: {e}", dir.display()),
        })
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for lib.rs and main.rs).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// Every `crate::NAME` on a line, comments left out.
fn crate_paths(line: &str) -> Vec<String> {
    let code = match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    };
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `warren_storage_mesh_crate::`, not ours
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            // `crate::{a, b}`: every name in the braces.
            if let Some(body) = rest.strip_prefix('{') {
                let body = body.split('}').next().unwrap_or("");
                for part in body.split(',') {
                    let n: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !n.is_empty() {
                        out.push(n);
                    }
                }
            }
        } else {
            out.push(name);
        }
    }
    out
}

fn rank(name: &str) -> Option<(u8, &'static str)> {
    // Re-exports at the crate root belong to their module.
    let name = match name {
        "NodeError" => "error",
        other => other,
    };
    LAYERS
        .iter()
        .find(|(m, _, _)| *m == name)
        .map(|(_, r, l)| (*r, *l))
}

#[test]
fn every_import_in_node_runs_down_the_layer_table() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut back_edges = Vec::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        let (own, own_layer) = rank(&module).unwrap_or_else(|| {
            panic!(
                "{}: module `{module}` is not in the layer table of tests/layers.rs",
                file.display()
            )
        });
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for target in crate_paths(line) {
                if target == module {
                    continue;
                }
                let Some((theirs, their_layer)) = rank(&target) else {
                    back_edges.push(format!(
                        "{}:{}: `crate::{target}` is not in the layer table",
                        file.display(),
                        n + 1
                    ));
                    continue;
                };
                if theirs >= own {
                    back_edges.push(format!(
                        "{}:{}: {module} ({own_layer}) imports crate::{target} ({their_layer}): \
                         an import must run down the table",
                        file.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        back_edges.is_empty(),
        "imports against the layering:\n{}",
        back_edges.join("\n")
    );
}

#[test]
fn every_module_of_lib_rs_is_placed_and_every_placed_module_exists() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let declared: Vec<String> = lib
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))?;
            Some(l.trim_end_matches(';').to_owned())
        })
        .collect();
    for m in &declared {
        assert!(
            rank(m).is_some(),
            "lib.rs declares `{m}`, which the layer table lacks"
        );
    }
    for (m, _, _) in LAYERS {
        assert!(
            declared.iter().any(|d| d == m),
            "the layer table places `{m}`, which lib.rs does not declare"
        );
    }
}

#[test]
fn no_source_file_in_node_is_longer_than_a_reader_can_hold() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut sizes: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for file in &files {
        let lines = std::fs::read_to_string(file).unwrap().lines().count();
        sizes
            .entry(lines)
            .or_default()
            .push(file.display().to_string());
    }
    let long: Vec<String> = sizes
        .range(MAX_LINES + 1..)
        .flat_map(|(n, fs)| fs.iter().map(move |f| format!("{f}: {n} lines")))
        .collect();
    assert!(
        long.is_empty(),
        "split these (at most {MAX_LINES} lines a file):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_path_reader_finds_what_it_should() {
    assert_eq!(crate_paths("use crate::net::Client;"), ["net"]);
    assert_eq!(
        crate_paths("use crate::{config::Config, error::NodeError};"),
        ["config", "error"]
    );
    assert!(crate_paths("// see crate::api for the views").is_empty());
    assert_eq!(
        crate_paths("let x = crate::clock::unix_now(); // crate::api"),
        ["clock"]
    );
}
