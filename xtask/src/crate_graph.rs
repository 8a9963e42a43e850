//! Holds ARCHITECTURE.md's crate graph (the block after `<!-- crate-graph -->`) against the
//! dependencies `cargo metadata` reports, so the picture cannot drift from the crates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The marker line above the graph's code block.
const MARKER: &str = "<!-- crate-graph -->";

/// Crate name -> the crates it depends on.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Fails, naming each difference, when the drawn graph and the crates disagree.
pub(crate) fn check(root: &Path) -> Result<()> {
    eprintln!("xtask: == ARCHITECTURE.md's crate graph against cargo metadata ==");
    let text =
        std::fs::read_to_string(root.join("ARCHITECTURE.md")).context("reading ARCHITECTURE.md")?;
    let drawn = parse(&text)?;
    let metadata = crate::cargo_metadata(root)?;
    let built = from_metadata(&metadata, &drawn);
    let differences = compare(&drawn, &built);
    if !differences.is_empty() {
        bail!(
            "ARCHITECTURE.md's crate graph differs from the crates:\n{}",
            differences.join("\n")
        );
    }
    Ok(())
}

/// The graph drawn under [`MARKER`]: `name ─► a, b` lines, a line that starts with spaces
/// continuing the one above.
fn parse(text: &str) -> Result<Graph> {
    let after = text
        .split_once(MARKER)
        .map(|(_, after)| after)
        .context("ARCHITECTURE.md has no crate-graph marker")?;
    let block = after
        .split("```")
        .nth(1)
        .context("no code block after the crate-graph marker")?;
    let mut graph = Graph::new();
    let mut current: Option<String> = None;
    for line in block.lines().filter(|line| !line.trim().is_empty()) {
        let (name, deps) = if line.starts_with(' ') {
            let name = current
                .clone()
                .context("a continuation line with nothing above")?;
            (name, line)
        } else {
            let (name, deps) = line.split_once('─').unwrap_or((line, ""));
            (name.trim().to_owned(), deps.trim_start_matches(['─', '►']))
        };
        let entry = graph.entry(name.clone()).or_default();
        entry.extend(
            deps.split(',')
                .map(str::trim)
                .filter(|dep| !dep.is_empty())
                .map(str::to_owned),
        );
        current = Some(name);
    }
    Ok(graph)
}

/// The normal dependencies of the crates the drawing names, among the crates it names.
fn from_metadata(metadata: &Value, drawn: &Graph) -> Graph {
    let shown: BTreeSet<&String> = drawn.keys().chain(drawn.values().flatten()).collect();
    let mut graph = Graph::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let Some(name) = package["name"].as_str() else {
            continue;
        };
        if !drawn.contains_key(name) {
            continue;
        }
        let deps = package["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|dep| dep["kind"].is_null())
            .filter_map(|dep| dep["name"].as_str())
            .filter(|dep| shown.contains(&(*dep).to_owned()))
            .map(str::to_owned)
            .collect();
        graph.insert(name.to_owned(), deps);
    }
    graph
}

fn compare(drawn: &Graph, built: &Graph) -> Vec<String> {
    let mut differences = Vec::new();
    for (name, deps) in drawn {
        let Some(actual) = built.get(name) else {
            differences.push(format!("{name}: drawn, but no such crate"));
            continue;
        };
        for missing in actual.difference(deps) {
            differences.push(format!("{name} ─► {missing}: in the crates, not drawn"));
        }
        for extra in deps.difference(actual) {
            differences.push(format!("{name} ─► {extra}: drawn, not in the crates"));
        }
    }
    differences
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "text\n<!-- crate-graph -->\n```\na ─► b, c,\n     d\nb ─► c\nc\n```\n";

    #[test]
    fn the_drawing_is_read_with_its_continuation_lines() {
        let graph = parse(DOC).unwrap();
        assert_eq!(graph["a"], ["b", "c", "d"].map(str::to_owned).into());
        assert_eq!(graph["b"], ["c".to_owned()].into());
        assert!(graph["c"].is_empty());
    }

    #[test]
    fn a_missing_and_an_extra_arrow_are_both_named() {
        let drawn = parse(DOC).unwrap();
        let mut built = drawn.clone();
        built.get_mut("a").unwrap().remove("d");
        built.get_mut("c").unwrap().insert("b".to_owned());
        let differences = compare(&drawn, &built);
        assert_eq!(
            differences,
            [
                "a ─► d: drawn, not in the crates",
                "c ─► b: in the crates, not drawn"
            ]
        );
    }

    #[test]
    fn architecture_md_draws_the_crates_as_they_are() {
        let root = crate::workspace_root().unwrap();
        check(&root).unwrap();
    }
}
