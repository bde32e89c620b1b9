//! `_SysMessage` rows: LeanCloud's REST shape of a client's message to a
//! system conversation, and the admin API's query over them.

use serde_json::{Value, json};

use crate::conversation::system;
use crate::hooks::encode_bin;
use crate::hub::Hub;
use crate::protocol::{Content, ConvId, ErrorBody, parse_msg_id};
use crate::store::{LogEntry, Origin};
use crate::util::iso_date;

fn date(ms: u64) -> Value {
    json!({"__type": "Date", "iso": iso_date(ms)})
}

/// A `_SysMessage` row in LeanCloud's REST shape (the webhook's format):
/// `conv` is a Pointer to `_Conversation`, dates are `Date` objects,
/// binary `data` is base64 with `bin: true`. `ackAt` is there once the
/// webhook took the message.
pub fn row(e: &LogEntry, ack_at: Option<u64>) -> Value {
    let (data, bin) = match &e.msg.content {
        Content::Text(t) => (t.clone(), false),
        Content::Binary(b) => (encode_bin(b), true),
    };
    let updated = [e.msg.updated_at, ack_at]
        .into_iter()
        .flatten()
        .fold(e.msg.timestamp, u64::max);
    let mut v = json!({
        "msgId": e.msg.msg_id,
        "conv": {
            "__type": "Pointer",
            "className": "_Conversation",
            "objectId": e.msg.conv.to_string(),
        },
        "from": e.msg.from,
        "fromIp": e.from_ip,
        "bin": bin,
        "data": data,
        "timestamp": e.msg.timestamp,
        "createdAt": date(e.msg.timestamp),
        "updatedAt": date(updated),
    });
    if let (Some(at), Value::Object(o)) = (ack_at, &mut v) {
        o.insert("ackAt".into(), date(at));
    }
    v
}

/// Which rows a query wants; every part that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub conv: Option<ConvId>,
    pub from: Option<String>,
    pub msg_id: Option<String>,
}

/// A query's page: after `skip` rows, at most `limit`, oldest first or
/// (`newest_first`) newest first. Each row with its `ackAt`.
pub fn query(
    hub: &Hub,
    f: &Filter,
    newest_first: bool,
    skip: usize,
    limit: usize,
) -> Result<Vec<(LogEntry, Option<u64>)>, ErrorBody> {
    let keep = |e: &LogEntry| {
        e.origin() == Origin::Client
            && !e.deleted
            && f.from.as_ref().is_none_or(|from| e.msg.from == *from)
    };
    let mut found: Vec<LogEntry> = Vec::new();
    if let Some(id) = &f.msg_id {
        // One message: no scan.
        if let Some((conv, seq)) = parse_msg_id(id)
            && f.conv.is_none_or(|c| c == conv)
            && system::lookup(hub, conv).is_ok()
            && let Some(e) = hub.store.message(conv, seq)?
            && keep(&e)
        {
            found.push(e);
        }
    } else {
        let convs: Vec<ConvId> = match f.conv {
            Some(c) => system::lookup(hub, c).map(|_| c).into_iter().collect(),
            None => system::list(hub, 0, usize::MAX)?
                .into_iter()
                .map(|s| s.id)
                .collect(),
        };
        let want = skip.saturating_add(limit);
        for id in convs {
            let Ok(c) = system::lookup(hub, id) else {
                continue;
            };
            let last = c.last_seq();
            found.extend(
                hub.store
                    .scan_messages(id, (1, last), newest_first, want, &keep)?,
            );
        }
    }
    let key = |e: &LogEntry| (e.msg.timestamp, e.msg.conv, e.msg.seq);
    found.sort_by_key(key);
    if newest_first {
        found.reverse();
    }
    found
        .into_iter()
        .skip(skip)
        .take(limit)
        .map(|e| {
            let ack = hub.store.sys_acked(e.msg.conv, e.msg.seq)?;
            Ok((e, ack))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Message;

    #[test]
    fn rows_have_leanclouds_shape() {
        let conv: ConvId = "55b99ad700b0387b8a3d7bf0".parse().unwrap();
        let msg = Message::new(
            conv,
            3,
            "A",
            1_438_267_062_584,
            Content::Text("Hello sys".into()),
        );
        let e = LogEntry::new(msg, "phone", "121.238.214.92");
        let id = e.msg.msg_id.clone();
        assert_eq!(e.origin(), Origin::Client);
        assert_eq!(
            row(&e, None),
            json!({
                "msgId": id,
                "conv": {"__type": "Pointer", "className": "_Conversation",
                         "objectId": "55b99ad700b0387b8a3d7bf0"},
                "from": "A",
                "fromIp": "121.238.214.92",
                "bin": false,
                "data": "Hello sys",
                "timestamp": 1_438_267_062_584u64,
                "createdAt": {"__type": "Date", "iso": "2015-07-30T14:37:42.584Z"},
                "updatedAt": {"__type": "Date", "iso": "2015-07-30T14:37:42.584Z"},
            })
        );
        let acked = row(&e, Some(1_438_267_063_000));
        assert_eq!(
            acked["ackAt"],
            json!({"__type": "Date", "iso": "2015-07-30T14:37:43.000Z"})
        );
        assert_eq!(acked["updatedAt"], acked["ackAt"]);
        let bin = LogEntry::new(
            Message::new(conv, 4, "A", 1, Content::Binary(vec![0, 1, 2])),
            "phone",
            "::1",
        );
        assert_eq!(row(&bin, None)["data"], "AAEC");
        assert_eq!(row(&bin, None)["bin"], true);
        let app = LogEntry::new(
            Message::new(conv, 5, "Bot", 1, Content::Text("hi".into())),
            "",
            "127.0.0.1",
        );
        assert_ne!(app.origin(), Origin::Client);
    }
}
