//! Each conversation's blacklist and shutup (muted members) list, in the
//! `moderation` tree. The server keeps both lists in memory (they are read
//! on every send and join); this is their durable copy, read once at
//! start-up. Writes do not wait for a flush: callers that answer only once
//! a change is durable wait for the pipeline's barrier, as for
//! conversation records.

use super::tables::Tree;
use super::{Result, Store, StoreError, keys};
use crate::protocol::ConvId;

/// The two lists, as the store names them (`core::moderation` uses the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModerationList {
    /// LeanCloud's blacklist: may not join or be added.
    Blocked,
    /// LeanCloud's "shutup": may not send.
    Shutup,
}

impl ModerationList {
    fn tag(self) -> u8 {
        match self {
            ModerationList::Blocked => keys::BLOCKED,
            ModerationList::Shutup => keys::SHUTUP,
        }
    }

    fn of_tag(tag: u8) -> Option<Self> {
        match tag {
            keys::BLOCKED => Some(ModerationList::Blocked),
            keys::SHUTUP => Some(ModerationList::Shutup),
            _ => None,
        }
    }
}

impl Store {
    /// Puts `clients` on `list` of `conv`, noting `at_ms` for those not
    /// already on it, in one batch.
    pub fn put_moderation(
        &self,
        conv: ConvId,
        list: ModerationList,
        clients: &[String],
        at_ms: u64,
    ) -> Result<()> {
        self.guard.writable()?;
        let mut batch = sled::Batch::default();
        for c in clients {
            batch.insert(keys::moderation(list.tag(), conv, c), &at_ms.to_be_bytes());
        }
        self.trees[Tree::Moderation].apply_batch(batch)?;
        Ok(())
    }

    pub fn remove_moderation(
        &self,
        conv: ConvId,
        list: ModerationList,
        clients: &[String],
    ) -> Result<()> {
        let mut batch = sled::Batch::default();
        for c in clients {
            batch.remove(keys::moderation(list.tag(), conv, c));
        }
        self.trees[Tree::Moderation].apply_batch(batch)?;
        Ok(())
    }

    /// Drops both lists of `conv` (it was deleted).
    pub fn remove_moderation_of(&self, conv: ConvId) -> Result<()> {
        let tree = &self.trees[Tree::Moderation];
        let mut batch = sled::Batch::default();
        for tag in [keys::BLOCKED, keys::SHUTUP] {
            for k in tree.scan_prefix(keys::moderation_prefix(tag, conv)).keys() {
                batch.remove(k?);
            }
        }
        tree.apply_batch(batch)?;
        Ok(())
    }

    /// Every entry of every conversation, for the start-up load.
    pub fn moderation_lists(&self) -> Result<Vec<(ConvId, ModerationList, String)>> {
        let corrupt = || StoreError::Corrupt {
            tree: Tree::Moderation.name(),
        };
        let mut out = Vec::new();
        for k in self.trees[Tree::Moderation].iter().keys() {
            let k = k.map_err(|e| self.unreadable(Tree::Moderation.name(), e.into()))?;
            let (tag, conv, client) = keys::read_moderation(&k).ok_or_else(corrupt)?;
            let list = ModerationList::of_tag(tag).ok_or_else(corrupt)?;
            out.push((conv, list, client.to_owned()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_persist_per_conversation_and_go_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20, false).unwrap();
        let (a, b) = (ConvId([1; 12]), ConvId([2; 12]));
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        s.put_moderation(a, ModerationList::Blocked, &v(&["x", "y"]), 5)
            .unwrap();
        s.put_moderation(a, ModerationList::Shutup, &v(&["z"]), 5)
            .unwrap();
        s.put_moderation(b, ModerationList::Shutup, &v(&["x"]), 5)
            .unwrap();
        s.remove_moderation(a, ModerationList::Blocked, &v(&["y", "never"]))
            .unwrap();
        let all = s.moderation_lists().unwrap();
        assert_eq!(
            all,
            vec![
                (a, ModerationList::Blocked, "x".to_string()),
                (a, ModerationList::Shutup, "z".to_string()),
                (b, ModerationList::Shutup, "x".to_string()),
            ]
        );
        s.remove_moderation_of(a).unwrap();
        assert_eq!(
            s.moderation_lists().unwrap(),
            vec![(b, ModerationList::Shutup, "x".to_string())]
        );
    }
}
