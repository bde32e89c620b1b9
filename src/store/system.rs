//! System conversations' storage: `_SysMessage` rows, their webhook queue
//! and TTL'd broadcasts (issue #6). Trees `sys` and `broadcasts`.
//!
//! | tree  | key                              | value                      |
//! |-------|----------------------------------|----------------------------|
//! | `sys` | `s` conv(12) client (raw bytes)  | subscribed at, ms(8)       |
//!
//! Subscriptions are kept apart from the conversation record's member list
//! (which says who is subscribed) because LeanCloud's subscriber listing
//! pages by client id and reports when each one subscribed. The client id
//! is the rest of the key, unprefixed, so keys sort by client id.

use super::{ConversationRecord, LogEntry, Result, Store, StoreError, keys};
use crate::codec;
use crate::protocol::ConvId;

const SUBSCRIPTION: u8 = b's';

fn subscription_prefix(conv: ConvId) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = SUBSCRIPTION;
    k[1..].copy_from_slice(&conv.0);
    k
}

fn subscription(conv: ConvId, client: &str) -> Vec<u8> {
    let mut k = subscription_prefix(conv).to_vec();
    k.extend_from_slice(client.as_bytes());
    k
}

impl Store {
    /// Records that `client` subscribed to `conv` at `at_ms`, unless it
    /// already had; the first subscription time stays.
    pub fn put_subscription(&self, conv: ConvId, client: &str, at_ms: u64) -> Result<()> {
        let _ = self.sys.compare_and_swap(
            subscription(conv, client),
            None as Option<&[u8]>,
            Some(&at_ms.to_be_bytes()[..]),
        )?;
        Ok(())
    }

    pub fn remove_subscription(&self, conv: ConvId, client: &str) -> Result<()> {
        self.sys.remove(subscription(conv, client))?;
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
        let prefix = subscription_prefix(conv);
        let range = match after {
            // The smallest key above `after`'s: its bytes with a 0 appended.
            Some(a) => {
                let mut from = subscription(conv, a);
                from.push(0);
                self.sys.range(from..)
            }
            None => self.sys.range(prefix.to_vec()..),
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
            let client = std::str::from_utf8(&k[prefix.len()..])
                .map_err(|_| StoreError::Corrupt { tree: "sys" })?;
            let at = keys::read_u64(&v).ok_or(StoreError::Corrupt { tree: "sys" })?;
            out.push((client.to_owned(), at));
        }
        Ok(out)
    }

    /// Removes a system conversation: its record, every member's membership
    /// and read cursor, its subscriptions and its messages. The caller has
    /// already taken it out of the conversation table.
    pub fn remove_system_conversation(&self, rec: &ConversationRecord) -> Result<()> {
        self.conversations.remove(rec.id.0)?;
        for m in &rec.members {
            self.memberships.remove(keys::membership(m, rec.id))?;
            self.cursors.remove(keys::read_cursor(m, rec.id))?;
        }
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for k in self
                .sys
                .scan_prefix(subscription_prefix(rec.id))
                .keys()
                .take(1000)
            {
                batch.remove(k?);
                n += 1;
            }
            if n == 0 {
                break;
            }
            self.sys.apply_batch(batch)?;
        }
        self.remove_log(rec.id)?;
        Ok(())
    }

    /// Messages of `conv` with `lo <= seq <= hi` that `keep` accepts, at
    /// most `limit`, walking from the newest end when `newest_first`; in
    /// walking order. For the admin API's history, where the filter (one
    /// sender, one receiver) can skip many entries.
    pub fn scan_messages(
        &self,
        conv: ConvId,
        (lo, hi): (u64, u64),
        newest_first: bool,
        limit: usize,
        mut keep: impl FnMut(&LogEntry) -> bool,
    ) -> Result<Vec<LogEntry>> {
        if lo > hi || limit == 0 {
            return Ok(Vec::new());
        }
        let range = self
            .log
            .range(keys::message(conv, lo)..=keys::message(conv, hi));
        let mut out = Vec::new();
        let mut take = |kv: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool> {
            let e: LogEntry = codec::decode(&kv?.1)?;
            if keep(&e) {
                out.push(e);
            }
            Ok(out.len() < limit)
        };
        if newest_first {
            for kv in range.rev() {
                if !take(kv)? {
                    break;
                }
            }
        } else {
            for kv in range {
                if !take(kv)? {
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
