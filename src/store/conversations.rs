//! Conversation records, unique-conversation claims and memberships.

use super::tables::Tree;
use super::{ConversationRecord, Result, Store, StoreError, keys};
use crate::protocol::ConvId;
use crate::wire::codec;

impl Store {
    pub fn put_conversation(&self, rec: &ConversationRecord) -> Result<()> {
        self.guard.writable()?;
        self.trees[Tree::Conversations].insert(rec.id.0, codec::encode(rec)?)?;
        Ok(())
    }

    pub fn remove_conversation(&self, id: ConvId) -> Result<()> {
        self.trees[Tree::Conversations].remove(id.0)?;
        Ok(())
    }

    /// Every conversation record that decodes. One that does not is noted
    /// as damaged and left out, so the rest still load; a tree sled cannot
    /// read is [`StoreError::Unreadable`].
    pub fn conversations(&self) -> Result<Vec<ConversationRecord>> {
        let mut out = Vec::new();
        for kv in self.trees[Tree::Conversations].iter() {
            let (k, v) = kv.map_err(|e| self.unreadable(Tree::Conversations.name(), e.into()))?;
            match codec::decode::<ConversationRecord>(&v) {
                Ok(rec) => out.push(rec),
                Err(e) => match keys::read_conv(&k) {
                    Some(conv) => {
                        self.noted(conv, e.into());
                    }
                    None => return Err(self.unreadable(Tree::Conversations.name(), e.into())),
                },
            }
        }
        Ok(out)
    }

    pub fn unique_get(&self, members_key: &[u8; 32]) -> Result<Option<ConvId>> {
        match self.trees[Tree::Unique].get(members_key)? {
            None => Ok(None),
            Some(v) => keys::read_conv(&v).map(Some).ok_or(StoreError::Corrupt {
                tree: Tree::Unique.name(),
            }),
        }
    }

    pub fn unique_put(&self, members_key: &[u8; 32], conv: ConvId) -> Result<()> {
        self.guard.not_failed()?;
        self.trees[Tree::Unique].insert(members_key, &conv.0)?;
        Ok(())
    }

    /// Points `members_key` at `conv` unless it already names a conversation; returns that one.
    pub fn unique_claim(&self, members_key: &[u8; 32], conv: ConvId) -> Result<Option<ConvId>> {
        self.guard.writable()?;
        match self.trees[Tree::Unique].compare_and_swap(
            members_key,
            None as Option<&[u8]>,
            Some(&conv.0[..]),
        )? {
            Ok(()) => Ok(None),
            Err(e) => Ok(e.current.as_deref().and_then(keys::read_conv)),
        }
    }

    pub fn unique_remove(&self, members_key: &[u8; 32]) -> Result<()> {
        self.trees[Tree::Unique].remove(members_key)?;
        Ok(())
    }

    pub fn add_membership(&self, client: &str, conv: ConvId) -> Result<()> {
        self.guard.not_failed()?;
        self.trees[Tree::Memberships].insert(keys::membership(client, conv), &[])?;
        Ok(())
    }

    pub fn remove_membership(&self, client: &str, conv: ConvId) -> Result<()> {
        self.trees[Tree::Memberships].remove(keys::membership(client, conv))?;
        Ok(())
    }

    pub fn memberships_of(&self, client: &str) -> Result<Vec<ConvId>> {
        let prefix = keys::id(client);
        self.trees[Tree::Memberships]
            .scan_prefix(&prefix)
            .keys()
            .map(|k| {
                let k = k?;
                keys::read_conv(&k[prefix.len()..]).ok_or(StoreError::Corrupt {
                    tree: Tree::Memberships.name(),
                })
            })
            .collect()
    }

    /// How many conversations `client` is a member of, counted no further
    /// than `at_most` (a quota check need not scan them all).
    pub fn membership_count(&self, client: &str, at_most: usize) -> usize {
        self.trees[Tree::Memberships]
            .scan_prefix(keys::id(client))
            .keys()
            .take(at_most)
            .count()
    }
}
