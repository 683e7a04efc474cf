//! The layers hold: every module imports only from floors below its own (docs/ARCHITECTURE.md,
//! "Layers"), and the files of one module import one another without cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::harness::repo;

/// The floor of each module, from the table in docs/ARCHITECTURE.md.
fn floors() -> BTreeMap<String, u32> {
    let doc =
        std::fs::read_to_string(repo().join("docs/ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let section = doc.split("## Layers").nth(1).expect("a Layers section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let floor = cells.first()?.parse::<u32>().ok()?;
            let module = cells.get(1)?.trim_matches('`').to_string();
            Some((module, floor))
        })
        .collect()
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// A file's module path: `src/plugins/wasm/abi.rs` is `["plugins", "wasm", "abi"]`, a
/// `mod.rs` is its directory's module.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code of a file without comments, so doc links and prose do not count as imports.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths a file refers to: `crate::a::b` and `super::…` resolved from its place.
fn references(module: &[String], text: &str) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let path_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let code = code(text);
    let mut rest = code.as_str();
    while let Some(i) = rest.find(['c', 's']) {
        let tail = &rest[i..];
        let boundary = i == 0 || !path_char(rest[..i].chars().next_back().unwrap_or(' '));
        let end = tail.find(|c: char| !path_char(c)).unwrap_or(tail.len());
        let token = &tail[..end];
        rest = &tail[end.max(1)..];
        if !boundary {
            continue;
        }
        let segments: Vec<&str> = token.split("::").filter(|s| !s.is_empty()).collect();
        let resolved: Option<Vec<String>> = match segments.first() {
            Some(&"crate") => Some(segments[1..].iter().map(|s| s.to_string()).collect()),
            Some(&"super") => {
                // `super` of a file's module (a mod.rs stands for its directory's) is its parent.
                let mut base: Vec<String> = module.to_vec();
                let mut segs = segments.as_slice();
                while segs.first() == Some(&"super") {
                    base.pop();
                    segs = &segs[1..];
                }
                base.extend(segs.iter().map(|s| s.to_string()));
                Some(base)
            }
            _ => None,
        };
        if let Some(path) = resolved
            && !path.is_empty()
        {
            out.insert(path);
        }
    }
    out
}

#[test]
fn no_module_imports_from_a_floor_above_its_own() {
    let floors = floors();
    let src = repo().join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let top = module[0].as_str();
        if top == "main" || top == "lib" {
            continue;
        }
        let Some(&floor) = floors.get(top) else {
            problems.push(format!(
                "{top} is not in the Layers table of docs/ARCHITECTURE.md"
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("source");
        for target in references(&module, &text) {
            let to = target[0].as_str();
            if to == top {
                continue;
            }
            match floors.get(to) {
                Some(&f) if f < floor => {}
                Some(&f) => problems.push(format!(
                    "{} (floor {floor}) imports {} (floor {f})",
                    file.strip_prefix(repo()).unwrap_or(file).display(),
                    target.join("::")
                )),
                None => {}
            }
        }
    }
    assert!(
        problems.is_empty(),
        "imports against the layers:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_files_of_a_module_import_one_another_without_cycles() {
    let src = repo().join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
    // Edges between files; a file naming its own ancestor (its parent's mod.rs) is how Rust
    // modules see their parent, not a dependency between peers, so those are left out.
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in &files {
        let from = module_of(&src, file);
        if from[0] == "main" || from[0] == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("source");
        for target in references(&from, &text) {
            // The longest module the path names.
            let to = (1..=target.len())
                .rev()
                .map(|n| target[..n].to_vec())
                .find(|m| modules.contains(m));
            let Some(to) = to else { continue };
            if to == from || from.starts_with(&to) || to.starts_with(&from) {
                continue;
            }
            edges.entry(from.clone()).or_default().insert(to);
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next) {
                Some(1) => {
                    let at = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle: Vec<String> = stack[at..].iter().map(|m| m.join("::")).collect();
                    cycle.push(next.join("::"));
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if !state.contains_key(node)
            && let Some(cycle) = visit(node, &edges, &mut state, &mut Vec::new())
        {
            panic!("an import cycle: {}", cycle.join(" -> "));
        }
    }
}
