//! History through the admin API: one conversation, one client's sent
//! messages, or what a system conversation sent one subscriber, with
//! LeanCloud's parameters and rows.
//!
//! The order is newest first; `reversed` makes it oldest first. The start
//! (`msgid`/`timestamp`, default: the newest end, or the oldest when
//! reversed) and the stop (`till_msgid`/`till_timestamp`, default: the other
//! end) are excluded unless `include_start`/`include_stop` say otherwise.
//! Positions compare by `(timestamp, conversation, seq)`; a bare timestamp
//! stands for every message at that millisecond.

use std::cmp::Ordering;
use std::sync::Arc;

use axum::Json;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Served;
use super::error::{ApiError, ApiResult, Params, Segments, conv_id};
use crate::auth::valid_id;
use crate::conversation::system;
use crate::hooks::encode_bin;
use crate::hub::Hub;
use crate::protocol::{Content, ConvId, ConvKind, ErrorBody, ErrorCode, parse_msg_id};
use crate::store::{LogEntry, Origin};

/// LeanCloud's default page.
const DEFAULT_LIMIT: usize = 100;

#[derive(Debug, Default, Deserialize)]
pub struct HistoryParams {
    msgid: Option<String>,
    timestamp: Option<u64>,
    till_msgid: Option<String>,
    till_timestamp: Option<u64>,
    #[serde(default)]
    include_start: bool,
    #[serde(default)]
    include_stop: bool,
    #[serde(default)]
    reversed: bool,
    limit: Option<usize>,
}

/// A position in time, pinned to one message when a msg id named it.
#[derive(Debug, Clone, Copy)]
struct Mark {
    ts: u64,
    at: Option<(ConvId, u64)>,
    inclusive: bool,
}

impl Mark {
    /// How `e` lies relative to the mark.
    fn cmp_entry(&self, e: &LogEntry) -> Ordering {
        match self.at {
            Some(at) => (e.msg.timestamp, e.msg.conv, e.msg.seq).cmp(&(self.ts, at.0, at.1)),
            None => e.msg.timestamp.cmp(&self.ts),
        }
    }

    fn admits_above(&self, e: &LogEntry) -> bool {
        match self.cmp_entry(e) {
            Ordering::Greater => true,
            Ordering::Equal => self.inclusive,
            Ordering::Less => false,
        }
    }

    fn admits_below(&self, e: &LogEntry) -> bool {
        match self.cmp_entry(e) {
            Ordering::Less => true,
            Ordering::Equal => self.inclusive,
            Ordering::Greater => false,
        }
    }
}

/// The parsed query.
struct Query {
    lower: Option<Mark>,
    upper: Option<Mark>,
    newest_first: bool,
    limit: usize,
}

fn not_found(id: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::MessageNotFound, format!("no message {id}"))
}

/// A start or stop: the message a msg id names (its stored timestamp wins),
/// else the bare timestamp.
fn mark(
    hub: &Hub,
    msgid: Option<&str>,
    ts: Option<u64>,
    inclusive: bool,
) -> Result<Option<Mark>, ErrorBody> {
    if let Some(id) = msgid {
        let found = match parse_msg_id(id) {
            Some((conv, seq)) => hub.store.message(conv, seq)?.map(|e| (conv, seq, e)),
            None => None,
        };
        return match (found, ts) {
            (Some((conv, seq, e)), _) => Ok(Some(Mark {
                ts: e.msg.timestamp,
                at: Some((conv, seq)),
                inclusive,
            })),
            (None, Some(ts)) => Ok(Some(Mark {
                ts,
                at: None,
                inclusive,
            })),
            (None, None) => Err(not_found(id)),
        };
    }
    Ok(ts.map(|ts| Mark {
        ts,
        at: None,
        inclusive,
    }))
}

fn parse(hub: &Hub, p: &HistoryParams) -> Result<Query, ErrorBody> {
    let start = mark(hub, p.msgid.as_deref(), p.timestamp, p.include_start)?;
    let stop = mark(
        hub,
        p.till_msgid.as_deref(),
        p.till_timestamp,
        p.include_stop,
    )?;
    let max = hub.config.delivery.history_max_limit as usize;
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, max.max(1));
    let (lower, upper) = if p.reversed {
        (start, stop)
    } else {
        (stop, start)
    };
    Ok(Query {
        lower,
        upper,
        newest_first: !p.reversed,
        limit,
    })
}

/// Up to `q.limit` messages of `convs` that `keep` accepts, in the query's
/// order. Deleted messages are never shown.
fn run(
    hub: &Hub,
    convs: &[ConvId],
    q: &Query,
    keep: impl Fn(&LogEntry) -> bool,
) -> Result<Vec<(LogEntry, ConvKind)>, ErrorBody> {
    let key = |e: &LogEntry| (e.msg.timestamp, e.msg.conv, e.msg.seq);
    let sort = |out: &mut Vec<(LogEntry, ConvKind)>| {
        if q.newest_first {
            out.sort_by_key(|e| std::cmp::Reverse(key(&e.0)));
        } else {
            out.sort_by_key(|e| key(&e.0));
        }
        out.truncate(q.limit);
    };
    // Newest first, the most recently active conversations go first, so
    // the walk stops at the first one too old to make the page.
    let mut convs: Vec<_> = convs
        .iter()
        .filter_map(|id| hub.convs.get(id))
        .filter(|c| q.lower.is_none_or(|m| c.last_ts() >= m.ts))
        .collect();
    if q.newest_first {
        convs.sort_by_key(|c| std::cmp::Reverse(c.last_ts()));
    }
    let mut out: Vec<(LogEntry, ConvKind)> = Vec::new();
    for c in convs {
        if q.newest_first && out.len() >= q.limit {
            sort(&mut out);
            if out
                .last()
                .is_some_and(|(e, _)| e.msg.timestamp > c.last_ts())
            {
                break;
            }
        }
        let id = c.id;
        let kind = c.state.read().rec.kind;
        let last = c.last_seq();
        // The seq range the timestamps allow; the marks then decide the edges.
        let mut lo = match &q.lower {
            Some(m) => hub.store.seq_at_or_after(id, m.ts, last)?,
            None => 1,
        };
        let mut hi = match &q.upper {
            Some(m) => hub
                .store
                .seq_at_or_after(id, m.ts.saturating_add(1), last)?
                .saturating_sub(1),
            None => last,
        };
        if let Some(Mark {
            at: Some((c, s)), ..
        }) = q.lower
            && c == id
        {
            lo = lo.max(s);
        }
        if let Some(Mark {
            at: Some((c, s)), ..
        }) = q.upper
            && c == id
        {
            hi = hi.min(s);
        }
        let page = hub
            .store
            .scan_messages(id, (lo.max(1), hi), q.newest_first, q.limit, |e| {
                !e.deleted
                    && q.lower.is_none_or(|m| m.admits_above(e))
                    && q.upper.is_none_or(|m| m.admits_below(e))
                    && keep(e)
            })?;
        out.extend(page.into_iter().map(|e| (e, kind)));
    }
    sort(&mut out);
    Ok(out)
}

/// LeanCloud's history row.
fn row(e: &LogEntry, kind: ConvKind) -> Value {
    let (data, bin) = match &e.msg.content {
        Content::Text(t) => (t.clone(), false),
        Content::Binary(b) => (encode_bin(b), true),
    };
    let conv = e.msg.conv.to_string();
    json!({
        "timestamp": e.msg.timestamp,
        "conv-id": conv,
        "data": data,
        "from": e.msg.from,
        "msg-id": e.msg.msg_id,
        "is-conv": true,
        "is-room": kind == ConvKind::ChatRoom,
        "to": conv,
        "bin": bin,
        "from-ip": e.from_ip,
    })
}

/// Runs the (blocking) store scans off the async workers.
async fn answer(
    hub: Arc<Hub>,
    p: HistoryParams,
    f: impl FnOnce(&Hub, &Query) -> Result<Vec<(LogEntry, ConvKind)>, ErrorBody> + Send + 'static,
) -> ApiResult<Json<Value>> {
    let rows = tokio::task::spawn_blocking(move || {
        let q = parse(&hub, &p)?;
        f(&hub, &q)
    })
    .await
    .map_err(|e| ApiError::from(ErrorBody::new(ErrorCode::InternalError, e.to_string())))??;
    Ok(Json(Value::Array(
        rows.iter().map(|(e, kind)| row(e, *kind)).collect(),
    )))
}

/// `GET /1.2/rtm/conversations/{id}/messages`: any kind of conversation.
pub async fn conversation(
    Served(st): Served,
    Segments(id): Segments<String>,
    Params(p): Params<HistoryParams>,
) -> ApiResult<Json<Value>> {
    let id = conv_id(&id)?;
    st.hub().convs.live(id)?;
    answer(st.hub().clone(), p, move |hub, q| {
        run(hub, &[id], q, |_| true)
    })
    .await
}

/// `GET /1.2/rtm/clients/{client_id}/messages`: what the client sent, in
/// the conversations it is a member (or subscriber) of now.
pub async fn client(
    Served(st): Served,
    Segments(client): Segments<String>,
    Params(p): Params<HistoryParams>,
) -> ApiResult<Json<Value>> {
    if !valid_id(&client) {
        return Err(ApiError::bad_params(format!(
            "invalid client id {client:?}"
        )));
    }
    answer(st.hub().clone(), p, move |hub, q| {
        let convs = hub.store.memberships_of(&client)?;
        run(hub, &convs, q, |e| e.msg.from == client)
    })
    .await
}

/// `GET /1.2/rtm/messages`: every conversation's messages, the app's whole
/// history. Newest first it reads only the conversations active late
/// enough to make the page; oldest first it reads every conversation
/// active since the start.
pub async fn app(Served(st): Served, Params(p): Params<HistoryParams>) -> ApiResult<Json<Value>> {
    answer(st.hub().clone(), p, move |hub, q| {
        run(hub, &hub.convs.ids(), q, |_| true)
    })
    .await
}

/// `GET /1.2/rtm/service-conversations/{id}/subscribers/{client_id}/messages`:
/// what the system conversation sent that subscriber: the app's sends
/// naming it, and the broadcasts (expired ones too).
pub async fn subscriber(
    Served(st): Served,
    Segments((id, client)): Segments<(String, String)>,
    Params(p): Params<HistoryParams>,
) -> ApiResult<Json<Value>> {
    let id = conv_id(&id)?;
    system::lookup(st.hub(), id)?;
    answer(st.hub().clone(), p, move |hub, q| {
        run(hub, &[id], q, |e| {
            e.to_peers.as_ref().is_some_and(|to| to.contains(&client))
                || e.origin() == Origin::Broadcast
        })
    })
    .await
}
