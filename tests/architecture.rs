//! The crate's floors only point down: no top-level module imports one that
//! imports it back, directly or through others, and the bottom floors
//! (shared vocabulary, errors, background work, config) stand on nothing
//! above them. Read from the source, as a reviewer would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules it names through `crate::`,
/// with one place each edge comes from.
fn imports() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let edges = graph.entry(top.clone()).or_default();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for target in crate_paths(code) {
                if target != top {
                    edges
                        .entry(target)
                        .or_insert_with(|| format!("{}:{}", relative.display(), n + 1));
                }
            }
        }
    }
    graph
}

/// The first segment after each `crate::` in a line, including every
/// member of a `crate::{a, b::c}` group.
fn crate_paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Members at the group's own depth: `a` and `b` of
            // `{a::{x, y}, b}`, not `y`.
            let (mut depth, mut start) = (0usize, 0usize);
            for (i, c) in group.char_indices() {
                let end = match c {
                    '{' => {
                        depth += 1;
                        None
                    }
                    '}' if depth == 0 => Some(i),
                    '}' => {
                        depth -= 1;
                        None
                    }
                    ',' if depth == 0 => Some(i),
                    _ => None,
                };
                if let Some(end) = end {
                    let name: String = group[start..end]
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != "self" {
                        found.push(name);
                    }
                    start = end + 1;
                    if c == '}' {
                        break;
                    }
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// A path from `from` back to `to`, if any.
fn path_back(
    graph: &BTreeMap<String, BTreeMap<String, String>>,
    from: &str,
    to: &str,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if from == to {
        return Some(vec![to.to_string()]);
    }
    if !seen.insert(from.to_string()) {
        return None;
    }
    for next in graph.get(from).into_iter().flat_map(|e| e.keys()) {
        if let Some(mut path) = path_back(graph, next, to, seen) {
            path.insert(0, from.to_string());
            return Some(path);
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = imports();
    let mut cycles = Vec::new();
    for (module, edges) in &graph {
        for (target, place) in edges {
            if let Some(back) = path_back(&graph, target, module, &mut BTreeSet::new()) {
                cycles.push(format!(
                    "{module} -> {} (first at {place})",
                    back.join(" -> ")
                ));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_bottom_floors_stand_on_nothing_above_them() {
    let graph = imports();
    let allowed: &[(&str, &[&str])] = &[
        ("error", &[]),
        ("vocab", &[]),
        ("background", &[]),
        ("hex", &[]),
        ("schema", &[]),
        ("config", &["vocab"]),
        ("domain", &["error", "vocab"]),
        ("telemetry", &["config", "vocab"]),
    ];
    for (module, may_use) in allowed {
        let uses: Vec<&String> = graph
            .get(*module)
            .map(|e| e.keys().collect())
            .unwrap_or_default();
        for used in uses {
            assert!(
                may_use.contains(&used.as_str()),
                "{module} imports {used} (at {})",
                graph[*module][used]
            );
        }
    }
    // The simulator shares nothing with the gateway but the wire protocol.
    let sim_uses: Vec<&String> = graph
        .get("sim")
        .map(|e| e.keys().filter(|m| *m != "schema").collect())
        .unwrap_or_default();
    assert!(sim_uses.is_empty(), "sim imports {sim_uses:?}");
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let mut graph = BTreeMap::new();
    graph.insert(
        "a".to_string(),
        BTreeMap::from([("b".to_string(), "a.rs:1".to_string())]),
    );
    graph.insert(
        "b".to_string(),
        BTreeMap::from([("a".to_string(), "b.rs:1".to_string())]),
    );
    assert!(path_back(&graph, "b", "a", &mut BTreeSet::new()).is_some());
    assert_eq!(
        crate_paths("use crate::{cache::{Key, Tier}, vocab::Entity, self};"),
        ["cache", "vocab"]
    );
}
