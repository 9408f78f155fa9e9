//! The shape of the code, checked: modules depend on each other in one direction only (no
//! import cycle between top-level modules, nor between any two modules at any depth: every
//! file is a module), `main.rs` stays thin, and no function of the command-line layer grows
//! past 80 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
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

/// The module a file belongs to, `depth` levels deep: `src/ops/backup.rs` is `ops` at depth 1
/// and `ops::backup` at depth 2; `src/store/mod.rs` is `store`.
fn module_of(file: &Path, depth: usize) -> String {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.truncate(depth);
    parts.join("::")
}

/// The modules a file's code names as `crate::a::b...` (at `depth` levels), and for files
/// under `parent`, its siblings named as `super::x`.
fn references(text: &str, depth: usize, parent: Option<&str>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let path_after = |rest: &str| -> Vec<String> {
        rest.split("::")
            .map(|seg| {
                seg.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|seg| !seg.is_empty() && seg.chars().next().unwrap().is_ascii_lowercase())
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let segs = path_after(&code[i + "crate::".len()..]);
        if segs.len() >= depth {
            found.insert(segs[..depth].join("::"));
        } else if !segs.is_empty() {
            found.insert(segs.join("::"));
        }
    }
    if let Some(parent) = parent {
        for (i, _) in code.match_indices("super::") {
            let segs = path_after(&code[i + "super::".len()..]);
            if let Some(first) = segs.first() {
                found.insert(format!("{parent}::{first}"));
            }
        }
    }
    found
}

/// Module -> the modules it uses, for every file that `keep` selects.
fn graph(depth: usize, keep: impl Fn(&str) -> bool) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let module = module_of(&file, depth);
        if module.is_empty() || module == "main" || module == "lib" || !keep(&module) {
            continue;
        }
        let parent = (depth > 1).then(|| module_of(&file, depth - 1));
        let text = std::fs::read_to_string(&file).unwrap();
        let uses = references(&text, depth, parent.as_deref());
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(uses.into_iter().filter(|m| *m != module && keep(m)));
    }
    graph
}

/// A cycle in `graph`, if there is one, as the modules around it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
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

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    let refs = references(
        "use crate::store::{Backup};\nuse super::prune;\n// crate::cli",
        2,
        Some("ops"),
    );
    assert!(refs.contains("store::Backup") || refs.contains("store"));
    assert!(refs.contains("ops::prune") && !refs.iter().any(|r| r.starts_with("cli")));
}

#[test]
fn top_level_modules_depend_on_each_other_in_one_direction() {
    let g = graph(1, |_| true);
    assert!(g.contains_key("ops") && g.contains_key("cli"), "{g:?}");
    if let Some(cycle) = find_cycle(&g) {
        panic!("import cycle between modules: {}", cycle.join(" -> "));
    }
    // The command line is on top: nothing below it uses it.
    for (module, uses) in &g {
        assert!(
            module == "cli" || !uses.contains("cli"),
            "{module} uses cli"
        );
    }
}

#[test]
fn operations_and_store_modules_have_no_cycle_among_themselves() {
    for parent in [
        "ops",
        "store",
        "config",
        "cli",
        "source",
        "db",
        "crypto",
        "secretstore",
    ] {
        let g = graph(2, |m| m.starts_with(&format!("{parent}::")) || m == parent);
        if let Some(cycle) = find_cycle(&g) {
            panic!("import cycle in {parent}: {}", cycle.join(" -> "));
        }
    }
}

/// Every path `code` names from `crate::`, `super::`, `self::` or one of `children` (the
/// modules it declares), with `use` groups (`{a, b::c}`) expanded: the start word and the
/// segments after it.
fn paths(code: &str, children: &[String]) -> Vec<(String, Vec<String>)> {
    fn ident(rest: &str) -> (&str, &str) {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        rest.split_at(end)
    }
    /// The segments of one path from `rest` on, every branch of its groups.
    fn tails(rest: &str) -> Vec<Vec<String>> {
        let rest = rest.trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut start, mut out) = (0, 0, Vec::new());
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.extend(tails(&group[start..i]));
                        return out;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.extend(tails(&group[start..i]));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            return out;
        }
        let (word, after) = ident(rest);
        if word.is_empty() {
            return vec![Vec::new()];
        }
        match after.strip_prefix("::") {
            Some(more) => tails(more)
                .into_iter()
                .map(|mut t| {
                    t.insert(0, word.to_string());
                    t
                })
                .collect(),
            None => vec![vec![word.to_string()]],
        }
    }
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut starts: Vec<String> = vec!["crate".into(), "super".into(), "self".into()];
    starts.extend(children.iter().cloned());
    for start in &starts {
        let needle = format!("{start}::");
        for (i, _) in code.match_indices(&needle) {
            let before = i.checked_sub(1).map(|b| bytes[b] as char);
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            for tail in tails(&code[i + needle.len()..]) {
                out.push((start.clone(), tail));
            }
        }
    }
    out
}

/// Every module (each file is one: `ops::rotate::run`, `ops::rotate` for its mod.rs) and the
/// modules it names, an ancestor excepted (a child using what its parent module defines for
/// its children is the parent's purpose, not a cycle).
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let module = |f: &Path| module_of(f, usize::MAX);
    let known: BTreeSet<String> = files.iter().map(|f| module(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let name = module(file);
        if name.is_empty() || name == "main" || name == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let here: Vec<String> = name.split("::").map(str::to_string).collect();
        let children: Vec<String> = code
            .lines()
            .filter_map(|l| {
                let l = l
                    .trim_start()
                    .trim_start_matches("pub ")
                    .trim_start_matches("pub(crate) ");
                l.strip_prefix("mod ")?
                    .strip_suffix(';')
                    .map(str::to_string)
            })
            .collect();
        let uses = graph.entry(name.clone()).or_default();
        for (start, tail) in paths(&code, &children) {
            let mut absolute = match start.as_str() {
                "crate" => Vec::new(),
                "self" => here.clone(),
                "super" => here[..here.len() - 1].to_vec(),
                child => [here.clone(), vec![child.to_string()]].concat(),
            };
            let mut tail = tail.as_slice();
            while tail.first().is_some_and(|s| s == "super") {
                absolute.pop();
                tail = &tail[1..];
            }
            absolute.extend(tail.iter().cloned());
            let Some(target) = (1..=absolute.len())
                .rev()
                .map(|n| absolute[..n].join("::"))
                .find(|m| known.contains(m))
            else {
                continue;
            };
            let ancestor = name == target || name.starts_with(&format!("{target}::"));
            if !ancestor {
                uses.insert(target);
            }
        }
    }
    graph
}

#[test]
fn no_two_modules_at_any_depth_use_each_other() {
    let g = module_graph();
    // The finder sees sibling modules and groups: ops::rotate::run uses its sibling trail.
    assert!(
        g["ops::rotate::run"].contains("ops::rotate::trail"),
        "{:?}",
        g["ops::rotate::run"]
    );
    assert!(g["ops::rotate"].contains("ops::rotate::run"));
    if let Some(cycle) = find_cycle(&g) {
        panic!("import cycle between modules: {}", cycle.join(" -> "));
    }
    let sample = paths(
        "use super::{a, b::{c, D}};\nuse crate::x::y;\nfn f() { run::go(); not_super::z(); }",
        &["run".to_string()],
    );
    let names: BTreeSet<String> = sample
        .iter()
        .map(|(s, t)| format!("{s}::{}", t.join("::")))
        .collect();
    assert_eq!(
        names,
        [
            "crate::x::y",
            "run::go",
            "super::a",
            "super::b::D",
            "super::b::c"
        ]
        .map(String::from)
        .into()
    );
}

#[test]
fn main_is_thin() {
    let main = std::fs::read_to_string(src().join("main.rs")).unwrap();
    assert!(
        main.lines().count() < 150,
        "src/main.rs has {} lines",
        main.lines().count()
    );
}

/// Every `fn` in `text` with its length in lines (from its signature to its closing brace).
fn function_lengths(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let is_fn = [
            "fn ",
            "pub fn ",
            "async fn ",
            "pub async fn ",
            "pub(crate) fn ",
            "pub(super) fn ",
        ]
        .iter()
        .any(|p| trimmed.starts_with(p));
        if !is_fn {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let close = format!("{}}}", " ".repeat(indent));
        if let Some(end) = lines[i..].iter().position(|l| *l == close) {
            let name = trimmed.split('(').next().unwrap_or(trimmed).to_string();
            out.push((name, end + 1));
        }
    }
    out
}

#[test]
fn no_function_of_the_command_line_layer_is_over_80_lines() {
    let mut files = Vec::new();
    rust_files(&src().join("cli"), &mut files);
    files.push(src().join("main.rs"));
    let mut long = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (name, lines) in function_lengths(&text) {
            if lines > 80 {
                long.push(format!("{}: {name} ({lines} lines)", file.display()));
            }
        }
    }
    assert!(long.is_empty(), "{long:#?}");
    let sample = "fn a() {\n    x;\n}\n\nfn b() {\n}\n";
    assert_eq!(
        function_lengths(sample),
        [("fn a".to_string(), 3), ("fn b".to_string(), 2)]
    );
}
