//! Checks of the code's shape that ARCHITECTURE.md promises: no import cycle between the
//! top-level modules of `src/`, and every path the map names exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The top-level module a file under `src/` belongs to (`src/store/sqlite/mod.rs` -> `store`).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Which top-level modules each one names as `crate::NAME`, test code excluded (a test may
/// reach across). Only the code before a file's `#[cfg(test)]` module counts.
fn dependencies(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = top_module(src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let code: String = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap()
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let uses = graph.entry(module.clone()).or_default();
        for (index, _) in code.match_indices("crate::") {
            let name: String = code[index + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                uses.insert(name);
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one, as the path that closes it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// No top-level module of `src/` imports, directly or through others, one that imports it.
#[test]
fn no_import_cycle_between_top_level_modules() {
    let graph = dependencies(&root().join("src"));
    assert!(graph.len() > 10, "the walk found the modules: {graph:?}");
    assert!(
        graph["registry"].contains("store"),
        "the walk sees imports: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}\nall: {graph:#?}", cycle.join(" -> "));
    }
}

/// The leaves stay leaves: `model` imports nothing of the crate, and `api` (the admin API's
/// wire types, shared by server and CLI) only `model`, so both ends can use them without
/// pulling in the host.
#[test]
fn leaf_modules_import_only_what_they_may() {
    let graph = dependencies(&root().join("src"));
    let empty = BTreeSet::new();
    let model = graph.get("model").unwrap_or(&empty);
    assert!(model.is_empty(), "model imports {model:?}");
    let api = &graph["api"];
    assert!(
        api.iter().all(|m| m == "model"),
        "api may import only model, imports {api:?}"
    );
    for user in ["server", "cli"] {
        assert!(
            graph[user].contains("api"),
            "{user} speaks the API through `api`: {:?}",
            graph[user]
        );
    }
}

/// Sibling modules (files of one directory) that name each other through `super::NAME`,
/// for every directory under `src/`.
fn sibling_dependencies(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let dir = file.parent().unwrap();
        let stem = file.file_stem().unwrap().to_str().unwrap();
        if stem == "mod" || dir == src {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let node = format!("{}::{stem}", dir.strip_prefix(src).unwrap().display());
        let uses = graph.entry(node).or_default();
        for (index, _) in code.match_indices("super::") {
            let name: String = code[index + "super::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let sibling = dir.join(format!("{name}.rs")).exists() || dir.join(&name).is_dir();
            if sibling && name != stem {
                uses.insert(format!(
                    "{}::{name}",
                    dir.strip_prefix(src).unwrap().display()
                ));
            }
        }
    }
    graph
}

/// No two files of one directory import each other, directly or in a ring.
#[test]
fn no_import_cycle_between_sibling_modules() {
    let graph = sibling_dependencies(&root().join("src"));
    assert!(
        graph.contains_key("server/admin::aliases"),
        "the walk found the admin modules: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

/// The checker itself finds a cycle when there is one.
#[test]
fn the_cycle_check_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
}

/// Every `src/...`, `tests/...`, `benches/...`, `scripts/...` or `functions/...` path that
/// ARCHITECTURE.md names in backticks exists.
#[test]
fn every_path_architecture_names_exists() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let mut checked = 0;
    let mut missing = Vec::new();
    for quoted in text.split('`').skip(1).step_by(2) {
        let path = quoted.trim_end_matches('/');
        let rooted = [
            "src/",
            "tests/",
            "benches/",
            "scripts/",
            "functions/",
            "examples/",
            "wit/",
        ]
        .iter()
        .any(|prefix| path.starts_with(prefix));
        if !rooted || path.contains(' ') || path.contains('*') {
            continue;
        }
        checked += 1;
        if !root().join(path).exists() {
            missing.push(path.to_string());
        }
    }
    assert!(
        checked > 20,
        "only {checked} paths found in ARCHITECTURE.md"
    );
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names missing paths: {missing:?}"
    );
}
