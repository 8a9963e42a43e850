//! `cargo xtask cycles`: import cycles between the module files of each crate.
//!
//! For every library and binary target of the workspace, the module tree is followed from the
//! crate root through its `mod NAME;` declarations. A module file imports another module file
//! of the same crate when it names it by a path that starts with `crate::`, `super::`,
//! `self::` or the name of a module it declares. Comments, string literals, `#[cfg(test)]`
//! modules (inline or in their own file) and references to the crate root itself (the
//! re-export hub) are left out. Every strongly connected component of more than one file is a
//! cycle; it is printed with the names that tie its files together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

mod tokens;

use tokens::{Token, tokenize};

/// A module path inside one crate (`["service", "pool"]`); the root is empty.
type ModPath = Vec<String>;

/// The import graph of one crate target.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    /// Each module file's path.
    files: BTreeMap<ModPath, PathBuf>,
    /// `from -> to -> names` (the item names, or `*`, through which `from` reaches `to`).
    edges: BTreeMap<ModPath, BTreeMap<ModPath, BTreeSet<String>>>,
}

/// One cycle: its module files and the edges between them, with their names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Cycle {
    /// The modules, sorted.
    pub(crate) members: Vec<String>,
    /// `from -> to: names`, one line per edge inside the cycle.
    pub(crate) ties: Vec<String>,
}

/// Runs the check over the workspace; fails if any target has a cycle.
pub(crate) fn cycles(root: &Path) -> Result<()> {
    let mut total = 0usize;
    for (label, crate_root) in targets(root)? {
        let graph = Graph::build(&crate_root, &|path| std::fs::read_to_string(path).ok());
        for cycle in graph.cycles() {
            total += 1;
            eprintln!("cycle in {label}: {}", cycle.members.join(", "));
            for tie in &cycle.ties {
                eprintln!("    {tie}");
            }
        }
    }
    if total > 0 {
        bail!("{total} import cycle(s) between module files");
    }
    eprintln!("xtask cycles: no import cycle between module files");
    Ok(())
}

/// The library and binary targets of the workspace members: `(label, root file)`.
fn targets(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let metadata = crate::cargo_metadata(root)?;
    let mut found = Vec::new();
    let list = |value: &serde_json::Value, key: &str| {
        value
            .get(key)
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let text = |value: &serde_json::Value, key: &str| {
        value
            .get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    for package in &list(&metadata, "packages") {
        let name = text(package, "name");
        for target in &list(package, "targets") {
            let wanted = list(target, "kind")
                .iter()
                .any(|kind| matches!(kind.as_str(), Some("lib" | "bin" | "proc-macro" | "rlib")));
            if wanted {
                let src = PathBuf::from(text(target, "src_path"));
                found.push((format!("{name} ({})", text(target, "name")), src));
            }
        }
    }
    found.sort();
    Ok(found)
}

impl Graph {
    /// Follows the module tree from `crate_root`, reading files through `read`.
    pub(crate) fn build(crate_root: &Path, read: &dyn Fn(&Path) -> Option<String>) -> Self {
        let mut graph = Self::default();
        let mut sources = BTreeMap::new();
        // The directory where a module's children live, per module.
        let mut pending = vec![(
            Vec::new(),
            crate_root.to_path_buf(),
            child_dir(crate_root, true),
        )];
        while let Some((module, file, dir)) = pending.pop() {
            let Some(text) = read(&file) else { continue };
            let tokens = tokenize(&text);
            for child in declared_files(&tokens) {
                let candidates = [
                    dir.join(format!("{child}.rs")),
                    dir.join(&child).join("mod.rs"),
                ];
                if let Some(found) = candidates.into_iter().find(|path| read(path).is_some()) {
                    let is_mod_rs = found.ends_with("mod.rs");
                    let child_dir = if is_mod_rs {
                        dir.join(&child)
                    } else {
                        child_dir(&found, false)
                    };
                    let mut path = module.clone();
                    path.push(child);
                    pending.push((path, found, child_dir));
                }
            }
            graph.files.insert(module.clone(), file);
            sources.insert(module, tokens);
        }
        // What the crate root re-exports: `crate::Name` stands for the module that defines it.
        let exports: BTreeMap<String, ModPath> = sources
            .get(&Vec::new())
            .map(|tokens| references(&[], tokens))
            .unwrap_or_default()
            .into_iter()
            .filter(|(path, name)| name != "*" && path.last() == Some(name))
            .map(|(path, name)| (name, path))
            .collect();
        for (module, tokens) in &sources {
            for (mut target, name) in references(module, tokens) {
                if let Some(exported) = target.first().and_then(|first| exports.get(first))
                    && graph.owner(&target).is_some_and(|owner| owner.is_empty())
                {
                    target = exported
                        .iter()
                        .chain(target.iter().skip(1))
                        .cloned()
                        .collect();
                }
                let Some(to) = graph.owner(&target) else {
                    continue;
                };
                if to != *module && !to.is_empty() && !module.is_empty() {
                    graph
                        .edges
                        .entry(module.clone())
                        .or_default()
                        .entry(to)
                        .or_default()
                        .insert(name);
                }
            }
        }
        graph
    }

    /// The module file that holds `path`: its longest prefix that is a file.
    fn owner(&self, path: &[String]) -> Option<ModPath> {
        (0..=path.len())
            .rev()
            .filter_map(|len| path.get(..len))
            .find(|prefix| self.files.contains_key(*prefix))
            .map(<[String]>::to_vec)
    }

    /// Every strongly connected component of more than one file (Tarjan).
    pub(crate) fn cycles(&self) -> Vec<Cycle> {
        let nodes: Vec<&ModPath> = self.files.keys().collect();
        let index_of: BTreeMap<&ModPath, usize> =
            nodes.iter().enumerate().map(|(i, m)| (*m, i)).collect();
        let successors: Vec<Vec<usize>> = nodes
            .iter()
            .map(|module| {
                self.edges
                    .get(*module)
                    .map(|to| to.keys().filter_map(|m| index_of.get(m).copied()).collect())
                    .unwrap_or_default()
            })
            .collect();
        let mut found = Vec::new();
        for component in strongly_connected(&successors) {
            if component.len() < 2 {
                continue;
            }
            let members: BTreeSet<&ModPath> = component
                .iter()
                .filter_map(|i| nodes.get(*i).copied())
                .collect();
            let mut ties = Vec::new();
            for from in &members {
                for (to, names) in self.edges.get(*from).into_iter().flatten() {
                    if members.contains(to) {
                        let names: Vec<&str> = names.iter().map(String::as_str).collect();
                        ties.push(format!(
                            "{} -> {}: {}",
                            display(from),
                            display(to),
                            names.join(", ")
                        ));
                    }
                }
            }
            found.push(Cycle {
                members: members.iter().map(|m| display(m)).collect(),
                ties,
            });
        }
        found.sort_by(|a, b| a.members.cmp(&b.members));
        found
    }
}

fn display(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_owned()
    } else {
        module.join("::")
    }
}

/// Where the children of the module in `file` live: `src/` for a crate root or `mod.rs`,
/// `src/foo/` for `src/foo.rs`.
fn child_dir(file: &Path, is_root: bool) -> PathBuf {
    let parent = file.parent().map(Path::to_path_buf).unwrap_or_default();
    if is_root || file.ends_with("mod.rs") {
        return parent;
    }
    match file.file_stem() {
        Some(stem) => parent.join(stem),
        None => parent,
    }
}

/// Tarjan's algorithm, iterative; returns the components.
#[allow(clippy::indexing_slicing)] // every index is a node number below `successors.len()`
fn strongly_connected(successors: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let count = successors.len();
    let mut index = vec![usize::MAX; count];
    let mut low = vec![0usize; count];
    let mut on_stack = vec![false; count];
    let mut stack = Vec::new();
    let mut next = 0usize;
    let mut components = Vec::new();
    for start in 0..count {
        if index.get(start) != Some(&usize::MAX) {
            continue;
        }
        // (node, position in its successor list)
        let mut work = vec![(start, 0usize)];
        while let Some(&(node, position)) = work.last() {
            if position == 0 && index[node] == usize::MAX {
                index[node] = next;
                low[node] = next;
                next += 1;
                stack.push(node);
                on_stack[node] = true;
            }
            if let Some(&succ) = successors[node].get(position) {
                if let Some(top) = work.last_mut() {
                    top.1 += 1;
                }
                if index[succ] == usize::MAX {
                    work.push((succ, 0));
                } else if on_stack[succ] {
                    low[node] = low[node].min(index[succ]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index[node] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                components.push(component);
            }
        }
    }
    components
}

/// Whether the tokens before `end` (exclusive) close an attribute `#[cfg(test)]` (also
/// `#[cfg(all(test, …))]`); looks back over the attributes right before an item.
fn is_test_item(tokens: &[Token], end: usize) -> bool {
    let mut j = end;
    // Skip back over `pub`, `pub(crate)` and friends.
    while j > 0 {
        match tokens.get(j - 1) {
            Some(Token::Ident(word)) if word == "pub" || word == "crate" || word == "super" => {
                j -= 1;
            }
            Some(Token::Punct('(' | ')')) => j -= 1,
            _ => break,
        }
    }
    while j > 0 && tokens.get(j - 1) == Some(&Token::Punct(']')) {
        let mut depth = 0usize;
        let mut k = j;
        while k > 0 {
            k -= 1;
            match tokens.get(k) {
                Some(Token::Punct(']')) => depth += 1,
                Some(Token::Punct('[')) => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
        let attribute = tokens.get(k..j).unwrap_or_default();
        let is_cfg = matches!(attribute.get(1), Some(Token::Ident(w)) if w == "cfg");
        let names_test = attribute
            .iter()
            .any(|token| matches!(token, Token::Ident(w) if w == "test"));
        let negated = attribute
            .iter()
            .any(|token| matches!(token, Token::Ident(w) if w == "not"));
        if is_cfg && names_test && !negated {
            return true;
        }
        // `k` is at `[`; the `#` before it starts the attribute.
        j = k.saturating_sub(1);
    }
    false
}

/// The names of the non-test modules declared in their own files (`mod NAME;`).
fn declared_files(tokens: &[Token]) -> Vec<String> {
    let mut names = Vec::new();
    for (i, window) in tokens.windows(3).enumerate() {
        if let [Token::Ident(kw), Token::Ident(name), Token::Punct(';')] = window
            && kw == "mod"
            && !is_test_item(tokens, i)
        {
            names.push(name.clone());
        }
    }
    names
}

/// The index just past the `}` that closes the `{` at `open`.
fn matching_brace(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, token) in tokens.iter().enumerate().skip(open) {
        match token {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return k + 1;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

/// The paths a module file names, made absolute: `(path, name)`, where `name` is what the
/// path names in its target (an item, a module, or `*`).
fn references(module: &[String], tokens: &[Token]) -> Vec<(ModPath, String)> {
    let declared: BTreeSet<String> = declared_modules(tokens);
    let mut found = Vec::new();
    // The inline modules we are inside: (name, index of the token that closes them).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        while inline.last().is_some_and(|(_, end)| *end <= i) {
            inline.pop();
        }
        let here: ModPath = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(name, _)| name.clone()))
            .collect();
        match (tokens.get(i), tokens.get(i + 1), tokens.get(i + 2)) {
            (Some(Token::Ident(kw)), Some(Token::Ident(name)), Some(Token::Punct('{')))
                if kw == "mod" =>
            {
                let end = matching_brace(tokens, i + 2);
                if is_test_item(tokens, i) {
                    i = end;
                } else {
                    inline.push((name.clone(), end));
                    i += 3;
                }
                continue;
            }
            (Some(Token::Ident(kw)), _, _) if kw == "use" => {
                let mut paths = Vec::new();
                let end = use_tree(tokens, i + 1, &mut Vec::new(), &mut paths);
                for path in paths {
                    if let Some(resolved) = resolve(&here, &declared, &path) {
                        found.push(resolved);
                    }
                }
                i = end.max(i + 1);
                continue;
            }
            (Some(Token::Ident(_)), Some(Token::PathSep), _)
                if !matches!(
                    i.checked_sub(1).and_then(|k| tokens.get(k)),
                    Some(Token::PathSep)
                ) =>
            {
                let mut path = Vec::new();
                let mut j = i;
                while let Some(Token::Ident(word)) = tokens.get(j) {
                    path.push(word.clone());
                    if tokens.get(j + 1) != Some(&Token::PathSep) {
                        break;
                    }
                    j += 2;
                }
                if let Some(resolved) = resolve(&here, &declared, &path) {
                    found.push(resolved);
                }
                i = j + 1;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// The names of every module this file declares, in its own file or inline.
fn declared_modules(tokens: &[Token]) -> BTreeSet<String> {
    tokens
        .windows(3)
        .filter_map(|window| match window {
            [
                Token::Ident(kw),
                Token::Ident(name),
                Token::Punct(';' | '{'),
            ] if kw == "mod" => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Parses a `use` tree starting at `i` (after `use` or inside braces), pushing each full path
/// (`*` for a glob) into `out`; returns the index after the tree.
fn use_tree(
    tokens: &[Token],
    mut i: usize,
    prefix: &mut Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    let depth = prefix.len();
    // A leading `::` names an extern crate.
    if tokens.get(i) == Some(&Token::PathSep) {
        i += 1;
        prefix.push("::".to_owned());
    }
    loop {
        match tokens.get(i) {
            Some(Token::Ident(word)) if word != "as" => {
                prefix.push(word.clone());
                i += 1;
                if tokens.get(i) == Some(&Token::PathSep) {
                    i += 1;
                    continue;
                }
                out.push(prefix.clone());
                break;
            }
            Some(Token::Punct('*')) => {
                let mut path = prefix.clone();
                path.push("*".to_owned());
                out.push(path);
                i += 1;
                break;
            }
            Some(Token::Punct('{')) => {
                i += 1;
                while !matches!(tokens.get(i), Some(Token::Punct('}')) | None) {
                    i = use_tree(tokens, i, prefix, out);
                    if tokens.get(i) == Some(&Token::Punct(',')) {
                        i += 1;
                    }
                }
                i += 1;
                break;
            }
            _ => break,
        }
    }
    // `as NAME`
    if matches!(tokens.get(i), Some(Token::Ident(w)) if w == "as") {
        i += 2;
    }
    prefix.truncate(depth);
    if tokens.get(i) == Some(&Token::Punct(';')) {
        i += 1;
    }
    i
}

/// Makes `path`, as written in module `here`, absolute; `None` for a path that leaves the
/// crate or does not start at a module of it. The name is the path's last segment.
fn resolve(
    here: &[String],
    declared: &BTreeSet<String>,
    path: &[String],
) -> Option<(ModPath, String)> {
    let first = path.first()?;
    let mut base: ModPath;
    let mut rest = path;
    match first.as_str() {
        "crate" => {
            base = Vec::new();
            rest = rest.get(1..)?;
        }
        "self" => {
            base = here.to_vec();
            rest = rest.get(1..)?;
        }
        "super" => {
            base = here.to_vec();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = rest.get(1..)?;
            }
        }
        name if declared.contains(name) => base = here.to_vec(),
        _ => return None,
    }
    // `use super::{self, X}` names the module itself.
    let mut segments: Vec<String> = rest.iter().filter(|s| *s != "self").cloned().collect();
    let name = match path.last().map(String::as_str) {
        // `use super::pool::{self}` names the module `pool`.
        Some("self") => path.iter().rev().nth(1).cloned().unwrap_or_default(),
        Some(last) => last.to_owned(),
        None => String::new(),
    };
    if name == "*" {
        segments.pop();
    }
    base.extend(segments);
    Some((base, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(files: &[(&str, &str)]) -> Graph {
        let files: BTreeMap<PathBuf, String> = files
            .iter()
            .map(|(path, text)| (PathBuf::from(path), (*text).to_owned()))
            .collect();
        Graph::build(Path::new("src/lib.rs"), &|path| files.get(path).cloned())
    }

    #[test]
    fn finds_a_cycle_through_use_and_paths() {
        let graph = graph(&[
            ("src/lib.rs", "mod a;\nmod b;\nmod c;\npub use a::A;"),
            ("src/a.rs", "use crate::b::B;\npub struct A(B);"),
            (
                "src/b.rs",
                "pub struct B;\nfn f() -> u8 { super::c::value() }",
            ),
            (
                "src/c.rs",
                "pub fn value() -> u8 { let _ = crate::a::A(crate::b::B); 1 }",
            ),
        ]);
        let cycles = graph.cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].members, ["a", "b", "c"]);
        assert!(
            cycles[0].ties.contains(&"b -> c: value".to_owned()),
            "{cycles:?}"
        );
        assert!(
            cycles[0].ties.contains(&"a -> b: B".to_owned()),
            "{cycles:?}"
        );
    }

    #[test]
    fn a_cycle_through_the_roots_re_exports() {
        let graph = graph(&[
            (
                "src/lib.rs",
                "mod a;\nmod b;\npub use a::A;\npub use b::{B, f};",
            ),
            ("src/a.rs", "use crate::B;\npub struct A(B);"),
            (
                "src/b.rs",
                "pub struct B;\npub fn f() -> crate::A { crate::A(B) }",
            ),
        ]);
        let cycles = graph.cycles();
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        assert_eq!(cycles[0].ties, ["a -> b: B", "b -> a: A"]);
    }

    #[test]
    fn a_chain_is_no_cycle() {
        let graph = graph(&[
            ("src/lib.rs", "mod a;\nmod b;\nuse a::A; use b::B;"),
            ("src/a.rs", "use crate::b::B;\npub struct A(B);"),
            (
                "src/b.rs",
                "pub struct B;\n// use crate::a::A;\nconst S: &str = \"crate::a::A\";",
            ),
        ]);
        assert_eq!(graph.cycles(), []);
        assert!(graph.edges[&vec!["a".to_owned()]].contains_key(&vec!["b".to_owned()]));
    }

    #[test]
    fn test_modules_do_not_count() {
        let graph = graph(&[
            ("src/lib.rs", "mod a;\nmod b;"),
            ("src/a.rs", "use crate::b::B;\npub struct A(B);"),
            (
                "src/b.rs",
                "pub struct B;\n#[cfg(test)]\nmod tests { use crate::a::A; }\n#[cfg(test)] mod more;",
            ),
            ("src/b/more.rs", "use crate::a::A;"),
        ]);
        assert_eq!(graph.cycles(), []);
    }

    #[test]
    fn nested_modules_globs_and_super() {
        // net/mod.rs is not the crate root: net -> link -> pool -> net (through `*`).
        let graph2 = graph(&[
            ("src/lib.rs", "mod net;"),
            (
                "src/net/mod.rs",
                "mod link;\nmod pool;\npub use self::{link::Link, pool::*};",
            ),
            (
                "src/net/link.rs",
                "use super::pool::{self, Pool as P};\npub struct Link;",
            ),
            (
                "src/net/pool.rs",
                "use super::*;\nfn f(x: &'static str) -> char { 'a' }",
            ),
        ]);
        let cycles = graph2.cycles();
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        assert_eq!(cycles[0].members, ["net", "net::link", "net::pool"]);
        assert!(cycles[0].ties.contains(&"net::pool -> net: *".to_owned()));
        let link = vec!["net".to_owned(), "link".to_owned()];
        let pool = vec!["net".to_owned(), "pool".to_owned()];
        assert_eq!(
            graph2.edges[&link][&pool],
            ["Pool".to_owned(), "pool".to_owned()].into()
        );
    }

    #[test]
    fn tokenizer_skips_literals_and_lifetimes() {
        let tokens = tokenize("r#\"crate::a\"# b\"x\" '\\'' 'a: loop {} r#type c");
        assert_eq!(
            tokens,
            [
                Token::Punct(':'),
                Token::Ident("loop".into()),
                Token::Punct('{'),
                Token::Punct('}'),
                Token::Ident("type".into()),
                Token::Ident("c".into()),
            ]
        );
    }
}
