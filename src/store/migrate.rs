//! Upgrades of old data dirs, run at open before anything else reads them.

use serde::{Deserialize, Serialize};

use super::tables::Tree;
use super::{LogEntry, Result, StoreError, keys};
use crate::protocol::{Content, ConvId, Message};
use crate::wire::codec;

/// Schema 1's message record, as written before edit/recall/delete existed.
#[derive(Serialize, Deserialize)]
struct MessageV1 {
    conv: ConvId,
    msg_id: String,
    seq: u64,
    from: String,
    timestamp: u64,
    content: Content,
    mention_list: Vec<String>,
    mention_all: bool,
    receipt: bool,
    transient: bool,
    will: bool,
    push_data: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct LogEntryV1 {
    msg: MessageV1,
    origin_device: String,
    from_ip: String,
    to_peers: Option<Vec<String>>,
}

impl From<LogEntryV1> for LogEntry {
    fn from(e: LogEntryV1) -> Self {
        let m = e.msg;
        LogEntry {
            msg: Message {
                msg_id: m.msg_id,
                mention_list: m.mention_list,
                mention_all: m.mention_all,
                receipt: m.receipt,
                transient: m.transient,
                will: m.will,
                push_data: m.push_data,
                ..Message::new(m.conv, m.seq, m.from, m.timestamp, m.content)
            },
            to_peers: e.to_peers,
            ..LogEntry::new(
                Message::new(m.conv, 0, "", 0, Content::Text(String::new())),
                e.origin_device,
                e.from_ip,
            )
        }
    }
}

/// Rewrites every message record in the new layout. A record that already
/// decodes as schema 2 was rewritten by an earlier, interrupted run (schema
/// 1's layout is a strict prefix, so it never decodes as 2), so re-running
/// after a crash is safe.
pub(super) fn v1_to_v2(db: &sled::Db) -> Result<u64> {
    let log = Tree::Log.open(db)?;
    let mut done = 0u64;
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    for kv in log.scan_prefix(keys::MESSAGES) {
        let (k, v) = kv?;
        if codec::decode::<LogEntry>(&v).is_ok() {
            continue;
        }
        let old: LogEntryV1 = codec::decode(&v).map_err(|_| StoreError::Corrupt {
            tree: Tree::Log.name(),
        })?;
        batch.insert(k, codec::encode(&LogEntry::from(old))?);
        in_batch += 1;
        if in_batch == 10_000 {
            log.apply_batch(std::mem::take(&mut batch))?;
            done += in_batch;
            in_batch = 0;
        }
    }
    log.apply_batch(batch)?;
    done += in_batch;
    tracing::info!(messages = done, "store upgraded from schema 1 to 2");
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_1_dir_opens_with_every_message_intact() {
        let dir = tempfile::tempdir().unwrap();
        let conv = ConvId([7; 12]);
        {
            let db = sled::open(dir.path()).unwrap();
            Tree::Meta
                .open(&db)
                .unwrap()
                .insert(keys::SCHEMA, &1u32.to_be_bytes())
                .unwrap();
            let log = Tree::Log.open(&db).unwrap();
            for seq in 1..=3u64 {
                let old = LogEntryV1 {
                    msg: MessageV1 {
                        conv,
                        msg_id: crate::protocol::msg_id(conv, seq),
                        seq,
                        from: "Tom".into(),
                        timestamp: 1000 + seq,
                        content: Content::Text(format!("m{seq}")),
                        mention_list: vec!["Jerry".into()],
                        mention_all: seq == 2,
                        receipt: true,
                        transient: false,
                        will: false,
                        push_data: Some("{}".into()),
                    },
                    origin_device: "pc".into(),
                    from_ip: "10.0.0.1".into(),
                    to_peers: (seq == 3).then(|| vec!["Jerry".into()]),
                };
                log.insert(keys::message(conv, seq), codec::encode(&old).unwrap())
                    .unwrap();
            }
            db.flush().unwrap();
        }
        let store = super::super::Store::open(dir.path(), 1 << 20, false).unwrap();
        let got = store.messages(conv, 1, 3, 10, false).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].msg.content, Content::Text("m2".into()));
        assert!(got[1].msg.mention_all && got[1].msg.receipt);
        assert_eq!(got[1].msg.mention_list, vec!["Jerry".to_string()]);
        assert_eq!(got[2].to_peers, Some(vec!["Jerry".to_string()]));
        assert_eq!(got[0].origin_device, "pc");
        assert!(!got[0].deleted && got[0].msg.updated_at.is_none());
        drop(store);
        // Reopening finds schema 2 and changes nothing.
        let store = super::super::Store::open(dir.path(), 1 << 20, false).unwrap();
        assert_eq!(store.messages(conv, 1, 3, 10, false).unwrap(), got);
    }
}
