//! The receiver's tree of the names in a manifest, to find conflicts as entries arrive.
//!
//! Every name is kept once, as a node (its parent, where its bytes sit in one shared string,
//! whether it is a directory): a path of 64 components costs 64 small nodes and its own bytes,
//! never a string per ancestor, so the tree grows linearly with the manifest's size, and the
//! number of nodes is capped (entries plus the directories their paths imply).
//!
//! Children are found by their name as a file system that ignores case and Unicode
//! normalisation sees it (macOS APFS and HFS+, Windows, exFAT, casefolded ext4): canonical
//! decomposition (NFD) then full Unicode case folding (`unicase`; `ß` is `ss`). So `Report.pdf`
//! and `report.pdf`, or `café` precomposed and decomposed, are one node, and a second spelling
//! of a name already in the tree is a [`Refusal::Collision`].

use std::borrow::Cow;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use hashbrown::HashTable;
use unicase::UniCase;
use unicode_normalization::UnicodeNormalization;

/// The parent of top-level names.
const ROOT: u32 = u32::MAX;

/// One name.
#[derive(Debug, Clone, Copy)]
struct Node {
    parent: u32,
    start: u32,
    len: u32,
    dir: bool,
}

/// Why a path could not go into the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The path is already there, or a file sits where a directory is needed (or the reverse).
    Conflict,
    /// A component is another spelling of a name already there: `at` is this path up to that
    /// component, `other` the name in the tree (its path).
    Collision { at: String, other: String },
    /// The tree holds as many names as it may.
    Full { names: u64 },
}

/// The names of a manifest (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct NameTree {
    nodes: Vec<Node>,
    names: String,
    table: HashTable<u32>,
    hasher: RandomState,
    max_nodes: usize,
}

impl NameTree {
    /// An empty tree that takes at most `max_nodes` names.
    pub(crate) fn new(max_nodes: u64) -> Self {
        NameTree {
            nodes: Vec::new(),
            names: String::new(),
            table: HashTable::new(),
            hasher: RandomState::new(),
            max_nodes: usize::try_from(max_nodes).unwrap_or(usize::MAX),
        }
    }

    /// Adds `path` (checked, `/`-separated) as a file or directory, with the directories it
    /// implies; returns its node.
    pub(crate) fn insert(&mut self, path: &str, is_dir: bool) -> Result<u32, Refusal> {
        let mut parent = ROOT;
        let mut components = path.split('/').peekable();
        let mut at_len = 0;
        while let Some(name) = components.next() {
            at_len += name.len() + usize::from(at_len > 0);
            let last = components.peek().is_none();
            let hash = self.hash(parent, name);
            match self.find(hash, parent, name) {
                Some(index) => {
                    let node = self.node(index).ok_or(Refusal::Conflict)?;
                    if self.name(node) != name {
                        return Err(Refusal::Collision {
                            at: path.get(..at_len).unwrap_or(path).to_owned(),
                            other: self.path(index),
                        });
                    }
                    if !node.dir {
                        return Err(Refusal::Conflict);
                    }
                    if last {
                        // A directory entry for a directory a deeper path implied (or listed
                        // twice) is fine; a file there is not.
                        return if is_dir {
                            Ok(index)
                        } else {
                            Err(Refusal::Conflict)
                        };
                    }
                    parent = index;
                }
                None => parent = self.push(hash, parent, name, !last || is_dir)?,
            }
        }
        Ok(parent)
    }

    fn push(&mut self, hash: u64, parent: u32, name: &str, dir: bool) -> Result<u32, Refusal> {
        let full = Refusal::Full {
            names: self.nodes.len() as u64,
        };
        if self.nodes.len() >= self.max_nodes {
            return Err(full);
        }
        let index = u32::try_from(self.nodes.len()).map_err(|_| full.clone())?;
        let start = u32::try_from(self.names.len()).map_err(|_| full.clone())?;
        let len = u32::try_from(name.len()).map_err(|_| full.clone())?;
        if index == ROOT || start.checked_add(len).is_none() {
            return Err(full);
        }
        self.names.push_str(name);
        self.nodes.push(Node {
            parent,
            start,
            len,
            dir,
        });
        let (nodes, names, hasher) = (&self.nodes, &self.names, &self.hasher);
        self.table.insert_unique(hash, index, |&n| {
            let node = nodes.get(n as usize);
            let name = node.and_then(|node| slice(names, node)).unwrap_or_default();
            hash_of(hasher, node.map_or(ROOT, |node| node.parent), name)
        });
        Ok(index)
    }

    fn find(&self, hash: u64, parent: u32, name: &str) -> Option<u32> {
        let key = folded(name);
        self.table
            .find(hash, |&n| {
                self.node(n).is_some_and(|node| {
                    node.parent == parent
                        && UniCase::unicode(folded(self.name(node)).as_ref())
                            == UniCase::unicode(key.as_ref())
                })
            })
            .copied()
    }

    fn hash(&self, parent: u32, name: &str) -> u64 {
        hash_of(&self.hasher, parent, name)
    }

    fn node(&self, index: u32) -> Option<Node> {
        self.nodes.get(index as usize).copied()
    }

    fn name(&self, node: Node) -> &str {
        slice(&self.names, &node).unwrap_or_default()
    }

    /// The path of node `index`, as the manifest spelled it.
    pub(crate) fn path(&self, index: u32) -> String {
        let mut names = Vec::new();
        let mut at = index;
        while let Some(node) = self.node(at) {
            names.push(self.name(node));
            at = node.parent;
        }
        names.reverse();
        names.join("/")
    }
}

fn slice<'a>(names: &'a str, node: &Node) -> Option<&'a str> {
    let start = node.start as usize;
    names.get(start..start.checked_add(node.len as usize)?)
}

/// `name` canonically decomposed (borrowed when it is ASCII, which decomposes to itself).
fn folded(name: &str) -> Cow<'_, str> {
    if name.is_ascii() {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(name.nfd().collect())
    }
}

fn hash_of(hasher: &RandomState, parent: u32, name: &str) -> u64 {
    let mut state = hasher.build_hasher();
    parent.hash(&mut state);
    UniCase::unicode(folded(name).as_ref()).hash(&mut state);
    state.finish()
}

#[cfg(test)]
mod tests {
    use super::{NameTree, Refusal};

    #[test]
    fn paths_conflicts_and_collisions() {
        let mut tree = NameTree::new(100);
        let c = tree.insert("a/b/c", false).unwrap();
        assert_eq!(tree.path(c), "a/b/c");
        let b = tree.insert("a/b", true).unwrap();
        assert_eq!(tree.path(b), "a/b");
        tree.insert("a/d", true).unwrap();
        assert_eq!(tree.insert("a/b/c", false), Err(Refusal::Conflict));
        assert_eq!(tree.insert("a/b/c/d", false), Err(Refusal::Conflict));
        assert_eq!(tree.insert("a", false), Err(Refusal::Conflict));
        assert_eq!(
            tree.insert("A/x", false),
            Err(Refusal::Collision {
                at: "A".into(),
                other: "a".into()
            })
        );
        assert_eq!(
            tree.insert("a/B/STRASSE", false),
            Err(Refusal::Collision {
                at: "a/B".into(),
                other: "a/b".into()
            })
        );
        tree.insert("s/Straße", false).unwrap();
        assert_eq!(
            tree.insert("s/STRASSE", false),
            Err(Refusal::Collision {
                at: "s/STRASSE".into(),
                other: "s/Straße".into()
            })
        );
        tree.insert("caf\u{e9}", true).unwrap();
        assert!(matches!(
            tree.insert("cafe\u{301}/x", false),
            Err(Refusal::Collision { .. })
        ));
        // Names that differ after folding are distinct.
        tree.insert("a/b/c2", false).unwrap();
        tree.insert("a/b/C3", false).unwrap();
    }

    #[test]
    fn the_tree_is_capped() {
        let mut tree = NameTree::new(3);
        tree.insert("a/b/c", false).unwrap();
        assert_eq!(tree.insert("a/x", false), Err(Refusal::Full { names: 3 }));
        tree.insert("a/b", true).unwrap();
    }
}
