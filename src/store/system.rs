//! System conversations' storage (issue #6): subscriptions and
//! `_SysMessage` delivery times in the `sys` tree, and the removal of a
//! whole system conversation. Broadcasts are in `broadcasts.rs`, the key
//! layouts in [`keys`](super::keys).
//!
//! Subscriptions are kept apart from the conversation record's member list
//! (which says who is subscribed) because LeanCloud's subscriber listing
//! pages by client id and reports when each one subscribed. The client id
//! is the rest of the key, unprefixed, so keys sort by client id.
//!
//! The `a` keys are written after the webhook answered, without waiting for
//! a flush: a lost one only hides a delivery time.

use super::tables::Tree;
use super::{ConversationRecord, Result, Store, StoreError, broadcasts, keys};
use crate::protocol::ConvId;

/// Where `BroadcastRecord` lived before the split; kept so the old path
/// resolves.
pub use super::records::BroadcastRecord;

impl Store {
    /// Records that `client` subscribed to `conv` at `at_ms`, unless it
    /// already had; the first subscription time stays.
    pub fn put_subscription(&self, conv: ConvId, client: &str, at_ms: u64) -> Result<()> {
        self.guard.writable()?;
        let _ = self.trees[Tree::Sys].compare_and_swap(
            keys::subscription(conv, client),
            None as Option<&[u8]>,
            Some(&at_ms.to_be_bytes()[..]),
        )?;
        Ok(())
    }

    pub fn remove_subscription(&self, conv: ConvId, client: &str) -> Result<()> {
        self.trees[Tree::Sys].remove(keys::subscription(conv, client))?;
        Ok(())
    }

    /// Subscribers of `conv` as `(client, subscribed at)`, by client id,
    /// starting after `after`, at most `limit`.
    pub fn subscriptions(
        &self,
        conv: ConvId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>> {
        let prefix = keys::subscription_prefix(conv);
        let range = match after {
            // The smallest key above `after`'s: its bytes with a 0 appended.
            Some(a) => {
                let mut from = keys::subscription(conv, a);
                from.push(0);
                self.trees[Tree::Sys].range(from..)
            }
            None => self.trees[Tree::Sys].range(prefix.to_vec()..),
        };
        let mut out = Vec::new();
        for kv in range {
            if out.len() == limit {
                break;
            }
            let (k, v) = kv?;
            if !k.starts_with(&prefix) {
                break;
            }
            let client =
                std::str::from_utf8(&k[prefix.len()..]).map_err(|_| StoreError::Corrupt {
                    tree: Tree::Sys.name(),
                })?;
            let at = keys::read_u64(&v).ok_or(StoreError::Corrupt {
                tree: Tree::Sys.name(),
            })?;
            out.push((client.to_owned(), at));
        }
        Ok(out)
    }

    /// Removes a system conversation: its record, every member's membership
    /// and read cursor, its subscriptions and its messages. The caller has
    /// already taken it out of the conversation table.
    pub fn remove_system_conversation(&self, rec: &ConversationRecord) -> Result<()> {
        self.trees[Tree::Conversations].remove(rec.id.0)?;
        for m in &rec.members {
            self.trees[Tree::Memberships].remove(keys::membership(m, rec.id))?;
            self.cursors.remove(&keys::read_cursor(m, rec.id))?;
        }
        clear_prefix(&self.trees[Tree::Sys], &keys::subscription_prefix(rec.id))?;
        clear_prefix(&self.trees[Tree::Sys], &keys::sys_acked_prefix(rec.id))?;
        // Its clients' messages still queued for the webhook.
        self.clear_log_prefix(&keys::webhook_prefix(rec.id))?;
        let ids: Vec<u64> = self.trees[Tree::Broadcasts]
            .scan_prefix(keys::broadcast_by_message_prefix(rec.id))
            .values()
            .map(|v| keys::read_u64(&v?).ok_or_else(broadcasts::corrupt))
            .collect::<Result<_>>()?;
        for id in ids {
            self.remove_broadcast(id)?;
        }
        self.remove_log(rec.id)?;
        Ok(())
    }

    /// Records that the webhook took these messages at `at_ms`.
    pub fn set_sys_acked(&self, msgs: &[(ConvId, u64)], at_ms: u64) -> Result<()> {
        let mut batch = sled::Batch::default();
        for &(conv, seq) in msgs {
            batch.insert(
                keys::sys_acked(conv, seq).to_vec(),
                at_ms.to_be_bytes().to_vec(),
            );
        }
        self.trees[Tree::Sys].apply_batch(batch)?;
        Ok(())
    }

    /// When the webhook took a client's message (`_SysMessage.ackAt`).
    pub fn sys_acked(&self, conv: ConvId, seq: u64) -> Result<Option<u64>> {
        match self.trees[Tree::Sys].get(keys::sys_acked(conv, seq))? {
            None => Ok(None),
            Some(v) => Ok(Some(keys::read_u64(&v).ok_or(StoreError::Corrupt {
                tree: Tree::Sys.name(),
            })?)),
        }
    }
}

/// Removes every key of `tree` under `prefix`, a thousand per batch.
fn clear_prefix(tree: &sled::Tree, prefix: &[u8]) -> Result<()> {
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for k in tree.scan_prefix(prefix).keys().take(1000) {
            batch.remove(k?);
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        tree.apply_batch(batch)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LogEntry;
    use crate::store::broadcasts::tests::rec;

    #[test]
    fn subscriptions_page_by_client_id_and_keep_the_first_time() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20, false).unwrap();
        let (a, b) = (ConvId([1; 12]), ConvId([2; 12]));
        for (i, c) in ["carol", "alice", "bob", "dave"].iter().enumerate() {
            s.put_subscription(a, c, i as u64).unwrap();
        }
        s.put_subscription(a, "alice", 99).unwrap();
        s.put_subscription(b, "zed", 7).unwrap();
        let all = s.subscriptions(a, None, 10).unwrap();
        assert_eq!(
            all,
            vec![
                ("alice".to_owned(), 1),
                ("bob".to_owned(), 2),
                ("carol".to_owned(), 0),
                ("dave".to_owned(), 3)
            ]
        );
        let page = s.subscriptions(a, Some("bob"), 1).unwrap();
        assert_eq!(page, vec![("carol".to_owned(), 0)]);
        assert!(s.subscriptions(a, Some("dave"), 10).unwrap().is_empty());
        // A prefix of another id does not swallow it.
        s.put_subscription(a, "bo", 5).unwrap();
        let after_bo = s.subscriptions(a, Some("bo"), 1).unwrap();
        assert_eq!(after_bo, vec![("bob".to_owned(), 2)]);
        s.remove_subscription(a, "bob").unwrap();
        assert_eq!(s.subscriptions(a, Some("bo"), 1).unwrap()[0].0, "carol");
        assert_eq!(s.subscriptions(b, None, 10).unwrap().len(), 1);
    }

    #[test]
    fn deleting_a_system_conversation_takes_its_broadcasts_acks_and_queue() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20, false).unwrap();
        let (a, b) = (ConvId([1; 12]), ConvId([2; 12]));
        let msg = |c: ConvId, seq: u64| {
            LogEntry::new(
                crate::protocol::Message::new(
                    c,
                    seq,
                    "Tom",
                    seq,
                    crate::protocol::Content::Text("hi".into()),
                ),
                "phone",
                "127.0.0.1",
            )
        };
        s.write_unsynced(&[msg(a, 1), msg(b, 1)], &[], &[], &[(a, 1), (b, 1)])
            .unwrap();
        s.set_sys_acked(&[(a, 1), (b, 1)], 42).unwrap();
        assert_eq!(s.sys_acked(a, 1).unwrap(), Some(42));
        assert_eq!(s.sys_acked(a, 2).unwrap(), None);
        s.put_broadcast(&rec(a, 2, 100)).unwrap();
        s.put_broadcast(&rec(b, 2, 100)).unwrap();
        s.put_subscription(a, "Tom", 1).unwrap();
        let record = ConversationRecord {
            id: a,
            kind: crate::protocol::ConvKind::System,
            name: None,
            attr: None,
            creator: String::new(),
            members: vec!["Tom".into()],
            managers: Vec::new(),
            muted: Vec::new(),
            unique: false,
            created_at: 0,
            updated_at: 0,
        };
        s.remove_system_conversation(&record).unwrap();
        assert_eq!(s.sys_acked(a, 1).unwrap(), None);
        assert_eq!(s.sys_acked(b, 1).unwrap(), Some(42));
        assert_eq!(s.webhook_pending(10).unwrap(), [(b, 1)]);
        assert_eq!(s.broadcast_of_message(a, 2).unwrap(), None);
        assert_eq!(s.broadcast_of_message(b, 2).unwrap(), Some(2));
        assert!(s.subscriptions(a, None, 10).unwrap().is_empty());
        assert!(s.message(a, 1).unwrap().is_none());
    }
}
