//! The module import graph of `server/`, read from the source: imports point down the
//! layers below, and the only import circles are a registry module with its own children
//! (e.g. `trackers` and `trackers::process`). A new top-level module must be given a layer
//! here, which is the moment to decide where it sits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer: a module may import only from lower layers.
const LAYERS: &[(&str, u32)] = &[
    ("model", 0),
    ("config", 0),
    ("metrics", 0),
    ("handler", 1),
    ("engine", 2),
    ("trackers", 3),
    ("container", 4),
    ("exporter", 5),
    ("results", 4),
    ("security", 5),
    ("seccomp", 5),
    ("session", 6),
    ("fleet", 7),
    ("api", 8),
    ("app", 9),
];

type Module = Vec<String>;

/// Every module of the library crate with its source, without its unit tests (which may
/// reach wherever a test needs).
fn modules() -> BTreeMap<Module, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("server");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
        .into_iter()
        .filter_map(|path: PathBuf| {
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let mut module: Module = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            match module.last().map(String::as_str) {
                Some("main") if module.len() == 1 => return None,
                Some("lib") if module.len() == 1 => module.clear(),
                Some("mod") => {
                    module.pop();
                }
                _ => {}
            }
            let source = std::fs::read_to_string(&path).unwrap();
            let without_tests = match source.find("#[cfg(test)]\nmod tests") {
                Some(at) => source[..at].to_string(),
                None => source,
            };
            Some((module, without_tests))
        })
        .collect()
}

/// The modules `source` (of `module`) names through `crate::` or `super::` paths (use
/// trees with braces included), each resolved to the longest known module it starts with.
fn imports(module: &Module, source: &str, known: &BTreeSet<Module>) -> BTreeSet<Module> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$';
    let mut found = BTreeSet::new();
    for (at, _) in source.match_indices("::") {
        let head_start = source[..at]
            .char_indices()
            .rev()
            .take_while(|&(_, c)| ident(c))
            .last()
            .map_or(at, |(i, _)| i);
        let before = source[..head_start].chars().next_back();
        if before.is_some_and(|c| c == ':' || ident(c)) {
            continue; // not the head of its path
        }
        let base: Module = match &source[head_start..at] {
            "crate" | "$crate" => Vec::new(),
            "super" => module[..module.len().saturating_sub(1)].to_vec(),
            _ => continue,
        };
        for path in use_tree(&source[at + 2..], base) {
            // `super::super::x` climbs once more per extra `super`.
            let mut resolved: Module = Vec::new();
            let mut target = None;
            for segment in path {
                if segment == "super" {
                    resolved.pop();
                    continue;
                }
                resolved.push(segment);
                if known.contains(&resolved) {
                    target = Some(resolved.clone());
                }
            }
            if let Some(target) = target.filter(|t| t != module) {
                found.insert(target);
            }
        }
    }
    found
}

/// The full paths of the use tree that starts `text` (after a `::`), each prefixed with
/// `base`: `a::{b, c::{d}}` gives a::b and a::c::d.
fn use_tree(text: &str, base: Module) -> Vec<Module> {
    let mut path = base;
    let mut rest = text.trim_start();
    loop {
        if let Some(inner) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = inner
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(inner.len(), |(i, _)| i);
            return split_top_level(&inner[..end])
                .into_iter()
                .flat_map(|item| use_tree(item, path.clone()))
                .collect();
        }
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if len == 0 {
            return vec![path];
        }
        path.push(rest[..len].to_string());
        match rest[len..].strip_prefix("::") {
            Some(next) => rest = next.trim_start(),
            None => return vec![path],
        }
    }
}

/// The comma-separated items of a brace group, not splitting nested groups.
fn split_top_level(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(group[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(group[start..].trim());
    items.into_iter().filter(|item| !item.is_empty()).collect()
}

fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let modules = modules();
    let known: BTreeSet<Module> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(module, source)| (module.clone(), imports(module, source, &known)))
        .collect()
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

#[test]
fn imports_point_down_the_layers() {
    let layer = |module: &Module| {
        let top = module.first().expect("the crate root is not layered");
        LAYERS
            .iter()
            .find(|(name, _)| name == top)
            .map(|&(_, layer)| layer)
            .unwrap_or_else(|| panic!("top-level module `{top}` has no layer in LAYERS"))
    };
    let mut upward = Vec::new();
    let mut edges = 0;
    for (from, targets) in graph() {
        if from.is_empty() {
            continue;
        }
        for to in targets.iter().filter(|to| to.first() != from.first()) {
            edges += 1;
            if layer(to) >= layer(&from) {
                upward.push(format!("{} -> {}", name(&from), name(to)));
            }
        }
    }
    // The reader sees the crate's real imports, not nothing.
    assert!(
        edges > 40,
        "only {edges} imports between top-level modules were found"
    );
    assert!(
        upward.is_empty(),
        "imports that do not point down: {upward:#?}"
    );
}

#[test]
fn the_only_import_circles_are_registries_with_their_children() {
    let graph = graph();
    let mut bad = Vec::new();
    for component in strongly_connected(&graph) {
        if component.len() < 2 {
            continue;
        }
        let parent = component.iter().min_by_key(|m| m.len()).unwrap();
        let registry = component
            .iter()
            .all(|m| m == parent || (m.len() == parent.len() + 1 && m.starts_with(parent)));
        if !registry {
            bad.push(component.iter().map(name).collect::<Vec<_>>());
        }
    }
    assert!(bad.is_empty(), "import circles: {bad:#?}");
}

/// Tarjan's strongly connected components.
fn strongly_connected(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        components: Vec<Vec<Module>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let Some((w, _)) = s.graph.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            s.components.push(component);
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.components
}
