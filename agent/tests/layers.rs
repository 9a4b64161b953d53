//! The stages depend in one direction only: each top-level module of `agent/src` may import
//! the modules of the layers below its own, never those of its layer or above. Read from the
//! source's `crate::` paths (`use` lines and inline paths, test modules excepted), so a new
//! upward import fails here with the file that made it. docs/architecture.md draws the layers.
//!
//! `DEBT` would list upward imports tolerated for a while (none now): a listed one that no
//! longer occurs fails too, so the list can only shrink.

#![allow(clippy::unwrap_used)] // A test: a failure is its message.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// Lowest first. A module may import the modules of earlier layers.
const LAYERS: &[&[&str]] = &[
    &[
        "stats",
        "proc_root",
        "priority",
        "allocator",
        "test_support",
    ],
    &["protocol"],
    &["call"],
    &["credentials"],
    &["source_error", "identity"],
    &["probes", "capture"],
    &["tls"],
    &["conn"],
    &["inventory"],
    &["findings"],
    &["store"],
    &["sink", "gate", "cluster"],
    &["health"],
    &["config"],
    &["cli"],
    &["pipeline"],
    &["record"],
];

/// (importer, imported) pairs allowed to go upward: none. An entry here is a loop to remove.
const DEBT: &[(&str, &str)] = &[];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer of tests/layers.rs"))
}

/// Every `crate::<module>` a source text names, outside `#[cfg(test)]` and comments.
fn imported_modules(source: &str) -> BTreeSet<String> {
    let code: String = source
        .split("#[cfg(test)]")
        .next()
        .unwrap_or_default()
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            found.extend(group_heads(group));
        } else {
            found.insert(identifier(rest));
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

/// The first identifier of each top-level item of a `{a::b, c, d::{e, f}}` group.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut at_item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item_start = true,
            c if at_item_start && (c.is_ascii_alphabetic() || c == '_') => {
                heads.push(identifier(&group[i..]));
                at_item_start = false;
            }
            _ => {}
        }
    }
    heads
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn stages_import_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let source = std::fs::read_to_string(file).unwrap();
        for imported in imported_modules(&source) {
            if imported != module && layer_of(&imported) >= layer_of(&module) {
                upward
                    .entry((module.clone(), imported))
                    .or_default()
                    .push(relative.display().to_string());
            }
        }
    }
    let new: Vec<String> = upward
        .iter()
        .filter(|((from, to), _)| !DEBT.contains(&(from.as_str(), to.as_str())))
        .map(|((from, to), files)| format!("{from} imports {to} (same layer or above): {files:?}"))
        .collect();
    assert!(new.is_empty(), "upward imports:\n{}", new.join("\n"));
    let paid: Vec<&(&str, &str)> = DEBT
        .iter()
        .filter(|(from, to)| !upward.contains_key(&(from.to_string(), to.to_string())))
        .collect();
    assert!(
        paid.is_empty(),
        "no longer imported, remove from DEBT: {paid:?}"
    );
}

#[test]
fn reads_use_groups_and_inline_paths() {
    let source = "use crate::{a::b, c, d::{e, f}};\nfn x() { crate::g::h(); }\n\
                  // crate::commented\n#[cfg(test)]\nmod tests { use crate::t; }\n";
    let found: Vec<String> = imported_modules(source).into_iter().collect();
    assert_eq!(found, ["a", "c", "d", "g"]);
}
