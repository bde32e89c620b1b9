//! The one list of sled trees (continuwuity's `database/maps.rs` shape).
//! [`Store::open`](super::Store::open) opens every tree by walking
//! [`TABLES`] and keeps them in [`Trees`], the only place the store reads
//! a tree from; `migrate` and `check` name trees through [`Tree`]. So no
//! other file spells a tree name, and a tree cannot be added, renamed or
//! forgotten in one place only.
//!
//! The names are on-disk bytes: sled files a tree's keys under its name,
//! so renaming one is a schema change, as a key layout change is (a test
//! pins them byte for byte).

use std::ops::Index;

/// One sled tree: its on-disk name and what it holds (the key layouts are
/// in [`keys`](super::keys) and the table in the [`store`](super) docs).
#[derive(Debug)]
pub struct Table {
    pub tree: Tree,
    pub name: &'static str,
    pub holds: &'static str,
}

/// A tree, as code names it. Its discriminant is its index in [`TABLES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tree {
    Conversations,
    Unique,
    Memberships,
    Log,
    Cursors,
    Outbox,
    DeadLetters,
    Receipts,
    Sys,
    Broadcasts,
    Nonces,
    Meta,
    Moderation,
    Installations,
}

/// Every tree the store has, in [`Tree`] order.
pub static TABLES: &[Table] = &[
    Table {
        tree: Tree::Conversations,
        name: "conversations",
        holds: "conversation records by id",
    },
    Table {
        tree: Tree::Unique,
        name: "unique",
        holds: "unique conversations by the hash of their sorted members",
    },
    Table {
        tree: Tree::Memberships,
        name: "memberships",
        holds: "the conversations each client is a member of",
    },
    Table {
        tree: Tree::Log,
        name: "log",
        holds: "messages, idempotency tokens, the patch index and the system webhook queue \
                (one tree, so one atomic batch writes them together)",
    },
    Table {
        tree: Tree::Cursors,
        name: "cursors",
        holds: "device ack, client read and device patch cursors (written behind)",
    },
    Table {
        tree: Tree::Outbox,
        name: "outbox",
        holds: "after-hook calls waiting for delivery, in push order",
    },
    Table {
        tree: Tree::DeadLetters,
        name: "dead_letters",
        holds: "outbox records given up on, under their outbox id",
    },
    Table {
        tree: Tree::Receipts,
        name: "receipts",
        holds: "delivered and read times per conversation member, and receipts owed",
    },
    Table {
        tree: Tree::Sys,
        name: "sys",
        holds: "system conversations' subscriptions and webhook delivery times",
    },
    Table {
        tree: Tree::Broadcasts,
        name: "broadcasts",
        holds: "TTL'd broadcast records, their expiry index and per-client cursors",
    },
    Table {
        tree: Tree::Nonces,
        name: "nonces",
        holds: "used login nonces until they expire",
    },
    Table {
        tree: Tree::Meta,
        name: "meta",
        holds: "the schema version",
    },
    Table {
        tree: Tree::Moderation,
        name: "moderation",
        holds: "each conversation's blocked (blacklist) and muted (shutup) clients",
    },
    Table {
        tree: Tree::Installations,
        name: "installations",
        holds: "push device registrations (LeanCloud's _Installation) and their token, \
                installationId and client indexes",
    },
];

impl Tree {
    pub fn table(self) -> &'static Table {
        &TABLES[self as usize]
    }

    /// The tree's on-disk name.
    pub fn name(self) -> &'static str {
        self.table().name
    }

    /// The tree sled files under `name`, if it is one of ours.
    pub fn named(name: &[u8]) -> Option<Tree> {
        TABLES
            .iter()
            .find(|t| t.name.as_bytes() == name)
            .map(|t| t.tree)
    }

    /// Opens this one tree (for the schema gate and `migrate`, which run
    /// before the rest is opened).
    pub(super) fn open(self, db: &sled::Db) -> sled::Result<sled::Tree> {
        db.open_tree(self.name())
    }
}

/// Every tree of [`TABLES`], opened; indexed by [`Tree`].
pub(super) struct Trees(Vec<sled::Tree>);

impl Trees {
    /// Opens (creating when new) every tree in [`TABLES`], and nothing else.
    pub(super) fn open(db: &sled::Db) -> sled::Result<Trees> {
        TABLES
            .iter()
            .map(|t| db.open_tree(t.name))
            .collect::<sled::Result<_>>()
            .map(Trees)
    }

    #[cfg(test)]
    pub(super) fn all(&self) -> &[sled::Tree] {
        &self.0
    }
}

impl Index<Tree> for Trees {
    type Output = sled::Tree;

    fn index(&self, t: Tree) -> &sled::Tree {
        &self.0[t as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Today's names, byte for byte: changing one orphans a tree on disk.
    const ON_DISK: [&str; 14] = [
        "conversations",
        "unique",
        "memberships",
        "log",
        "cursors",
        "outbox",
        "dead_letters",
        "receipts",
        "sys",
        "broadcasts",
        "nonces",
        "meta",
        "moderation",
        "installations",
    ];

    #[test]
    fn the_list_is_in_tree_order_and_names_are_byte_exact() {
        assert_eq!(TABLES.len(), ON_DISK.len());
        for (i, t) in TABLES.iter().enumerate() {
            assert_eq!(t.tree as usize, i, "{} out of place", t.name);
            assert_eq!(t.name.as_bytes(), ON_DISK[i].as_bytes());
            assert_eq!(t.tree.name(), t.name);
            assert_eq!(Tree::named(t.name.as_bytes()), Some(t.tree));
            assert!(!t.holds.is_empty());
        }
        assert_eq!(Tree::named(b"__sled__default"), None);
    }

    #[test]
    fn every_tree_the_store_holds_comes_from_the_list() {
        let dir = tempfile::tempdir().unwrap();
        let s = super::super::Store::open(dir.path(), 1 << 20, false).unwrap();
        let held: Vec<Vec<u8>> = s.trees.all().iter().map(|t| t.name().to_vec()).collect();
        let listed: Vec<Vec<u8>> = TABLES.iter().map(|t| t.name.as_bytes().to_vec()).collect();
        assert_eq!(held, listed);
        // The cursor writer's tree is the listed one, not a second handle.
        assert_eq!(&*s.cursors.tree_name(), Tree::Cursors.name().as_bytes());
        // sled has no tree the list does not name (besides its own default).
        let mut on_disk: Vec<Vec<u8>> =
            s.db.tree_names()
                .into_iter()
                .map(|n| n.to_vec())
                .filter(|n| n.as_slice() != b"__sled__default")
                .collect();
        on_disk.sort();
        let mut want = listed;
        want.sort();
        assert_eq!(on_disk, want);
    }
}
