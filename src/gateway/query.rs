//! LeanCloud's `conv/query` for the WebSocket door. The SDKs look
//! conversations up with a `_Conversation` `where` (MongoDB-style JSON),
//! `sort`, `limit`, `skip` and `flag`, and read back `_Conversation` rows.
//! Tidings has no document store to hand the query to, so the door fetches
//! candidate conversations (the ids the query pins, else the caller's own),
//! [`row`] renders them, and [`Query::apply`] filters, sorts and pages them
//! ([`Query::run`] does both in the right order). Pure: no I/O, no clock.
//!
//! What the SDKs send and read (JS `leancloud-realtime` 5.0.0-rc.8
//! `src/conversation-query.js` and `im-client.js`
//! `_parseConversationFromRawData`; Swift 17.11 `IMConversationQuery.swift`,
//! `Foundation/Query.swift`, `IMConversation.swift`):
//! - `where` operators: implicit equality, `$ne $lt $lte $gt $gte $in $nin
//!   $all $size $exists $regex`(+`$options` `i`/`m`), `$and $or`. Swift puts
//!   every `equalTo` inside `$and`. Dates are `{__type:"Date", iso}`.
//!   Also accepted: `$eq`, `$nor`, `$options` `s`. Anything else is refused.
//!   `contains`/`startsWith`/`endsWith` quote with `\Q…\E` (JS) or
//!   backslashes (Swift).
//! - `sort`: comma-separated keys, `-` for descending (`-lm`).
//! - `flag`: bit 1 compact (no `m`), bit 2 with the last message.
//! - rows: `createdAt`/`updatedAt` as plain ISO strings (Swift reads only
//!   strings; JS accepts both), `lm` as a Date object (JS `decodeDate`),
//!   custom attributes at the top level (JS 4/5) or under `attr` (Swift and
//!   JS 3 keep them there), last message as `msg`, `bin`, `msg_from`,
//!   `msg_mid`, `msg_timestamp`, `patch_timestamp` (both SDKs) and
//!   `mention_all`, `mention_pids` (Swift).
//!
//! Every refusal is 4310 CONVERSATION_QUERY_FAILED, the code the SDKs name
//! for a query the server will not run; `detail` says which part and why.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::protocol::{Content, ConvKind, ConversationInfo, ErrorBody, Message};
use crate::util::iso_date;

/// LeanCloud's CONVERSATION_QUERY_FAILED (JS `src/error.js`).
pub const QUERY_FAILED: u16 = 4310;
/// `flag` bit: leave the member list (`m`) out.
pub const FLAG_COMPACT: u32 = 1;
/// `flag` bit: add the conversation's last message (`msg`, `msg_from`, …).
pub const FLAG_LAST_MESSAGE: u32 = 2;
/// Rows per answer when the client sets no `limit` (LeanCloud's default).
pub const DEFAULT_LIMIT: usize = 10;
/// Larger limits are cut to this, as LeanCloud's storage API does (the JS
/// SDK's `getConversations` asks for 999).
pub const MAX_LIMIT: usize = 1000;

/// Keys [`row`] owns. A custom attribute with one of these names is left
/// out: the storage columns, the last-message keys, and `temp`/`ttl`/
/// `conv_type`, which would make the SDKs retype the conversation.
const RESERVED: &[&str] = &[
    "objectId",
    "name",
    "m",
    "c",
    "mu",
    "lm",
    "tr",
    "sys",
    "unique",
    "uniqueId",
    "createdAt",
    "updatedAt",
    "ACL",
    "msg",
    "bin",
    "msg_from",
    "msg_mid",
    "msg_timestamp",
    "patch_timestamp",
    "mention_all",
    "mention_pids",
    "temp",
    "ttl",
    "conv_type",
];

fn bad(detail: impl Into<String>) -> ErrorBody {
    ErrorBody {
        code: QUERY_FAILED,
        reason: "CONVERSATION_QUERY_FAILED".to_string(),
        detail: detail.into(),
    }
}

fn date(ms: u64) -> Value {
    json!({"__type": "Date", "iso": iso_date(ms)})
}

/// One conversation as LeanCloud's `_Conversation` row (storage keys), as
/// `caller` sees it: `mu` is `[caller]` when the caller muted it (Tidings
/// keeps only the caller's own mute; Swift derives `isMuted` from `mu`).
/// `uniqueId` of a unique conversation is its objectId: stable, and all
/// the SDKs do with it is test that it is there. `flag` is the query's
/// ([`FLAG_COMPACT`], [`FLAG_LAST_MESSAGE`]); `last` is used only with
/// [`FLAG_LAST_MESSAGE`]. `managers` is not a LeanCloud column (roles live
/// in `_ConversationMemberInfo`), so it is not here.
pub fn row(info: &ConversationInfo, caller: &str, last: Option<&Message>, flag: u32) -> Value {
    let id = info.id.to_string();
    let mut o = Map::new();
    // Stored attributes were checked to be an object when written; text
    // that no longer parses is left out rather than failing the query.
    if let Some(Ok(Value::Object(attrs))) = info.attr.as_deref().map(serde_json::from_str::<Value>)
    {
        for (k, v) in attrs {
            if !RESERVED.contains(&k.as_str()) {
                o.insert(k, v);
            }
        }
    }
    o.insert("objectId".into(), Value::String(id.clone()));
    if let Some(name) = &info.name {
        o.insert("name".into(), Value::String(name.clone()));
    }
    if flag & FLAG_COMPACT == 0 {
        o.insert("m".into(), json!(info.members));
    }
    o.insert("c".into(), Value::String(info.creator.clone()));
    let mu = if info.muted { vec![caller] } else { Vec::new() };
    o.insert("mu".into(), json!(mu));
    if let Some(at) = info.last_message_at {
        o.insert("lm".into(), date(at));
    }
    o.insert("tr".into(), Value::Bool(info.kind == ConvKind::ChatRoom));
    o.insert("sys".into(), Value::Bool(info.kind == ConvKind::System));
    o.insert("unique".into(), Value::Bool(info.unique));
    if info.unique {
        o.insert("uniqueId".into(), Value::String(id));
    }
    o.insert("createdAt".into(), Value::String(iso_date(info.created_at)));
    o.insert("updatedAt".into(), Value::String(iso_date(info.updated_at)));
    if let Some(ttl) = ttl_left(info.id) {
        // The SDKs set `expiredAt` to now plus this.
        o.insert("ttl".into(), json!(ttl));
    }
    if flag & FLAG_LAST_MESSAGE != 0
        && let Some(m) = last
    {
        let (msg, bin) = match &m.content {
            Content::Text(t) => (t.clone(), false),
            Content::Binary(b) => (crate::hooks::encode_bin(b), true),
        };
        o.insert("msg".into(), Value::String(msg));
        o.insert("bin".into(), Value::Bool(bin));
        o.insert("msg_from".into(), Value::String(m.from.clone()));
        o.insert("msg_mid".into(), Value::String(m.msg_id.clone()));
        o.insert("msg_timestamp".into(), json!(m.timestamp));
        if let Some(at) = m.updated_at {
            o.insert("patch_timestamp".into(), json!(at));
        }
        o.insert("mention_all".into(), Value::Bool(m.mention_all));
        o.insert("mention_pids".into(), json!(m.mention_list));
    }
    Value::Object(o)
}

/// A temporary conversation's seconds left (LeanCloud's `ttl` and
/// `tempConvTTL`), read from its id; `None` for other conversations.
pub fn ttl_left(id: crate::protocol::ConvId) -> Option<i64> {
    let left = id.expires_ms()?.saturating_sub(crate::util::now_ms()) / 1000;
    Some(i64::try_from(left).unwrap_or(i64::MAX))
}

/// A parsed `conv/query`: the `where` compiled (so [`Query::apply`] cannot
/// fail), the sort keys, the page and the flag.
#[derive(Debug, Clone)]
pub struct Query {
    cond: Cond,
    sort: Vec<SortKey>,
    limit: usize,
    skip: usize,
    flag: u32,
}

#[derive(Debug, Clone)]
enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Nor(Vec<Cond>),
    Field(String, Op),
}

#[derive(Debug, Clone)]
enum Op {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    All(Vec<Value>),
    Size(usize),
    Exists(bool),
    Cmp(Cmp, Scalar),
    Regex(pattern::Pattern),
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// A range operand: LeanCloud compares numbers with numbers, strings with
/// strings and dates with dates.
#[derive(Debug, Clone)]
enum Scalar {
    Num(f64),
    Str(String),
    Date(i64),
}

#[derive(Debug, Clone)]
struct SortKey {
    path: String,
    desc: bool,
}

impl Query {
    /// `where_json` absent or blank matches everything. `limit`: absent or
    /// 0 means [`DEFAULT_LIMIT`] (proto2 clients may send an unset 0), above
    /// [`MAX_LIMIT`] is cut to it, negative is refused; `skip` and `flag`
    /// default to 0 and must not be negative. Unknown operators, malformed
    /// operands and regular expressions outside the supported subset are
    /// refused with 4310 rather than matched loosely.
    pub fn parse(
        where_json: Option<&str>,
        sort: Option<&str>,
        limit: Option<i32>,
        skip: Option<i32>,
        flag: Option<i32>,
    ) -> Result<Query, ErrorBody> {
        let cond = match where_json.map(str::trim) {
            None | Some("") => Cond::All(Vec::new()),
            Some(text) => {
                let v: Value = serde_json::from_str(text)
                    .map_err(|e| bad(format!("where is not JSON: {e}")))?;
                compile_where(&v, "where")?
            }
        };
        let non_negative = |v: Option<i32>, what: &str| match v {
            Some(n) if n < 0 => Err(bad(format!("{what} {n} is negative"))),
            v => Ok(v.unwrap_or(0) as usize),
        };
        let limit = match non_negative(limit, "limit")? {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        Ok(Query {
            cond,
            sort: parse_sort(sort.unwrap_or(""))?,
            limit,
            skip: non_negative(skip, "skip")?,
            flag: non_negative(flag, "flag")? as u32,
        })
    }

    /// Object ids the where pins (`objectId` equal or `$in`, also inside
    /// `$and`, and in `$or` when every branch pins), so the door can fetch
    /// those directly, including conversations the caller is not a member
    /// of (chat rooms, by id). Sorted, without repeats; ids that are not
    /// conversation ids are the door's to skip. `None`: not pinned.
    /// [`Query::apply`] still checks the whole where on what is fetched.
    pub fn pinned_ids(&self) -> Option<Vec<String>> {
        pins(&self.cond).map(|ids| ids.into_iter().collect())
    }

    /// Filters, sorts (stable: rows that tie keep the order given, so the
    /// door should pass them in a fixed order), skips and limits rows (as
    /// built by [`row`]), then drops `m` when the flag says compact. Build
    /// the rows without [`FLAG_COMPACT`], or `m` conditions (the SDKs'
    /// `containsMembers`, `withMembers`) see no members; [`Query::run`]
    /// does all of that.
    pub fn apply(&self, rows: Vec<Value>) -> Vec<Value> {
        let rows = rows.into_iter().map(|r| ((), r)).collect();
        self.select(rows)
            .into_iter()
            .map(|((), mut r)| {
                if self.flag & FLAG_COMPACT != 0
                    && let Value::Object(o) = &mut r
                {
                    o.remove("m");
                }
                r
            })
            .collect()
    }

    /// The whole query over candidate conversations, answered as
    /// `conv/results` rows: filters on full rows, sorts, pages, then renders
    /// the page with the query's flag. `last` is asked only for the page's
    /// conversations, and only with [`FLAG_LAST_MESSAGE`]; its error stops
    /// the query.
    pub fn run<E>(
        &self,
        infos: &[ConversationInfo],
        caller: &str,
        mut last: impl FnMut(&ConversationInfo) -> Result<Option<Message>, E>,
    ) -> Result<Vec<Value>, E> {
        let rows = infos.iter().map(|i| (i, row(i, caller, None, 0))).collect();
        self.select(rows)
            .into_iter()
            .map(|(info, _)| {
                let msg = match self.flag & FLAG_LAST_MESSAGE {
                    0 => None,
                    _ => last(info)?,
                };
                Ok(row(info, caller, msg.as_ref(), self.flag))
            })
            .collect()
    }

    fn select<T>(&self, rows: Vec<(T, Value)>) -> Vec<(T, Value)> {
        let mut kept: Vec<(T, Value)> = rows
            .into_iter()
            .filter(|(_, r)| self.cond.matches(r))
            .collect();
        if !self.sort.is_empty() {
            kept.sort_by(|(_, a), (_, b)| cmp_rows(a, b, &self.sort));
        }
        kept.into_iter().skip(self.skip).take(self.limit).collect()
    }

    /// The client's flag bits ([`FLAG_COMPACT`], [`FLAG_LAST_MESSAGE`]),
    /// for [`row`].
    pub fn flag(&self) -> u32 {
        self.flag
    }

    /// The page size after defaults and the cap.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

fn compile_where(v: &Value, at: &str) -> Result<Cond, ErrorBody> {
    let Value::Object(map) = v else {
        return Err(bad(format!("{at} is not a JSON object")));
    };
    let mut parts = Vec::new();
    for (key, val) in map {
        match key.as_str() {
            "$and" | "$or" | "$nor" => {
                let Value::Array(items) = val else {
                    return Err(bad(format!("{at}.{key} is not an array")));
                };
                if items.is_empty() {
                    return Err(bad(format!("{at}.{key} is empty")));
                }
                let subs = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| compile_where(item, &format!("{at}.{key}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                parts.push(match key.as_str() {
                    "$and" => Cond::All(subs),
                    "$or" => Cond::Any(subs),
                    _ => Cond::Nor(subs),
                });
            }
            "" => return Err(bad(format!("{at} has an empty key"))),
            k if k.starts_with('$') => {
                return Err(bad(format!("{at}: operator {k} is not supported")));
            }
            field => compile_field(field, val, &format!("{at}.{field}"), &mut parts)?,
        }
    }
    Ok(Cond::All(parts))
}

fn compile_field(
    field: &str,
    val: &Value,
    at: &str,
    parts: &mut Vec<Cond>,
) -> Result<(), ErrorBody> {
    let ops = match val {
        Value::Object(m) if m.keys().any(|k| k.starts_with('$')) => m,
        // No operator: equality, Date objects and plain objects included.
        _ => {
            parts.push(Cond::Field(field.to_string(), Op::Eq(val.clone())));
            return Ok(());
        }
    };
    if let Some(k) = ops.keys().find(|k| !k.starts_with('$')) {
        return Err(bad(format!(
            "{at} mixes operators with the plain key {k:?}"
        )));
    }
    let options = match ops.get("$options") {
        None => "",
        Some(Value::String(s)) if ops.contains_key("$regex") => s.as_str(),
        Some(Value::String(_)) => return Err(bad(format!("{at}.$options without $regex"))),
        Some(_) => return Err(bad(format!("{at}.$options is not a string"))),
    };
    for (name, arg) in ops {
        let op_at = format!("{at}.{name}");
        let array = || match arg {
            Value::Array(items) => Ok(items.clone()),
            _ => Err(bad(format!("{op_at} is not an array"))),
        };
        let op = match name.as_str() {
            "$eq" => Op::Eq(arg.clone()),
            "$ne" => Op::Ne(arg.clone()),
            "$in" => Op::In(array()?),
            "$nin" => Op::Nin(array()?),
            "$all" => Op::All(array()?),
            "$size" => match arg.as_u64() {
                Some(n) => Op::Size(n as usize),
                None => return Err(bad(format!("{op_at} is not a non-negative integer"))),
            },
            "$exists" => match arg {
                Value::Bool(b) => Op::Exists(*b),
                _ => return Err(bad(format!("{op_at} is not true or false"))),
            },
            "$gt" => Op::Cmp(Cmp::Gt, scalar(arg, &op_at)?),
            "$gte" => Op::Cmp(Cmp::Gte, scalar(arg, &op_at)?),
            "$lt" => Op::Cmp(Cmp::Lt, scalar(arg, &op_at)?),
            "$lte" => Op::Cmp(Cmp::Lte, scalar(arg, &op_at)?),
            "$regex" => {
                let Value::String(p) = arg else {
                    return Err(bad(format!("{op_at} is not a string")));
                };
                let re =
                    pattern::Pattern::new(p, options).map_err(|e| bad(format!("{op_at}: {e}")))?;
                Op::Regex(re)
            }
            "$options" => continue,
            other => return Err(bad(format!("{at}: operator {other} is not supported"))),
        };
        parts.push(Cond::Field(field.to_string(), op));
    }
    Ok(())
}

fn scalar(v: &Value, at: &str) -> Result<Scalar, ErrorBody> {
    match v {
        Value::Number(n) => n.as_f64().map(Scalar::Num),
        Value::String(s) => Some(Scalar::Str(s.clone())),
        v if is_date(v) => date_ms(v).map(Scalar::Date),
        _ => None,
    }
    .ok_or_else(|| bad(format!("{at} is not a number, a string or a valid Date")))
}

fn parse_sort(text: &str) -> Result<Vec<SortKey>, ErrorBody> {
    text.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| {
            let (desc, path) = match k.strip_prefix('-') {
                Some(p) => (true, p),
                None => (false, k.strip_prefix('+').unwrap_or(k)),
            };
            if path.is_empty() || path.starts_with('$') || path.starts_with('-') {
                return Err(bad(format!("sort key {k:?} is not a key")));
            }
            Ok(SortKey {
                path: path.to_string(),
                desc,
            })
        })
        .collect()
}

fn pins(c: &Cond) -> Option<BTreeSet<String>> {
    match c {
        Cond::All(cs) => cs
            .iter()
            .filter_map(pins)
            .reduce(|a, b| a.intersection(&b).cloned().collect()),
        Cond::Any(cs) => cs
            .iter()
            .map(pins)
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .reduce(|a, b| a.union(&b).cloned().collect()),
        Cond::Field(path, op) if path == "objectId" => {
            let strings = |vs: &[Value]| -> BTreeSet<String> {
                vs.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            };
            match op {
                // A non-string never equals a row's objectId: the empty pin.
                Op::Eq(v) => Some(strings(std::slice::from_ref(v))),
                Op::In(vs) => Some(strings(vs)),
                _ => None,
            }
        }
        _ => None,
    }
}

impl Cond {
    fn matches(&self, row: &Value) -> bool {
        match self {
            Cond::All(cs) => cs.iter().all(|c| c.matches(row)),
            Cond::Any(cs) => cs.iter().any(|c| c.matches(row)),
            Cond::Nor(cs) => !cs.iter().any(|c| c.matches(row)),
            Cond::Field(path, op) => op.matches(lookup(row, path)),
        }
    }
}

impl Op {
    /// MongoDB's rules, which LeanCloud's storage follows: equality and
    /// ranges on an array match when an element does; `null` equals a
    /// missing key; `$ne` and `$nin` match a missing key; `$all []` matches
    /// nothing.
    fn matches(&self, field: Option<&Value>) -> bool {
        match self {
            Op::Eq(v) => eq_matches(field, v),
            Op::Ne(v) => !eq_matches(field, v),
            Op::In(vs) => vs.iter().any(|v| eq_matches(field, v)),
            Op::Nin(vs) => !vs.iter().any(|v| eq_matches(field, v)),
            Op::All(vs) => !vs.is_empty() && vs.iter().all(|v| eq_matches(field, v)),
            Op::Size(n) => matches!(field, Some(Value::Array(a)) if a.len() == *n),
            Op::Exists(want) => field.is_some() == *want,
            Op::Cmp(cmp, s) => any_element(field, |x| {
                s.compare(x).is_some_and(|o| match cmp {
                    Cmp::Gt => o == Ordering::Greater,
                    Cmp::Gte => o != Ordering::Less,
                    Cmp::Lt => o == Ordering::Less,
                    Cmp::Lte => o != Ordering::Greater,
                })
            }),
            Op::Regex(p) => any_element(field, |x| x.as_str().is_some_and(|t| p.is_match(t))),
        }
    }
}

impl Scalar {
    /// How `x` compares with this operand; `None` across types.
    fn compare(&self, x: &Value) -> Option<Ordering> {
        match self {
            Scalar::Num(n) => x.as_f64()?.partial_cmp(n),
            Scalar::Str(s) => Some(x.as_str()?.cmp(s.as_str())),
            Scalar::Date(d) => Some(date_ms(x)?.cmp(d)),
        }
    }
}

fn any_element(field: Option<&Value>, f: impl Fn(&Value) -> bool) -> bool {
    match field {
        None => false,
        Some(Value::Array(items)) => items.iter().any(f),
        Some(v) => f(v),
    }
}

fn eq_matches(field: Option<&Value>, v: &Value) -> bool {
    match field {
        None => v.is_null(),
        Some(f) => {
            same(f, v) || matches!(f, Value::Array(items) if items.iter().any(|e| same(e, v)))
        }
    }
}

/// Equal as LeanCloud compares: numbers by value (1 = 1.0), a Date object
/// with a Date or an ISO string (`createdAt` is a string in the row but a
/// date in LeanCloud's storage), anything else exactly.
fn same(a: &Value, b: &Value) -> bool {
    if is_date(a) || is_date(b) {
        return matches!((date_ms(a), date_ms(b)), (Some(x), Some(y)) if x == y);
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// The value at `path` in a row. A dotted path walks into objects. For the
/// older SDKs' `attr.foo` spelling, a row whose `attr` does not hold it
/// falls back to the top-level custom attribute `foo` (never a reserved
/// key: `attr.m` is not the member list).
fn lookup<'a>(row: &'a Value, path: &str) -> Option<&'a Value> {
    let obj = row.as_object()?;
    if let Some(v) = obj.get(path) {
        return Some(v);
    }
    let walk = |p: &str| {
        p.split('.')
            .try_fold(row, |v, seg| v.as_object().and_then(|o| o.get(seg)))
    };
    if let Some(v) = walk(path) {
        return Some(v);
    }
    let rest = path.strip_prefix("attr.")?;
    let first = rest.split('.').next().unwrap_or(rest);
    if RESERVED.contains(&first) {
        return None;
    }
    walk(rest)
}

fn cmp_rows(a: &Value, b: &Value, keys: &[SortKey]) -> Ordering {
    for k in keys {
        let o = match (present(a, &k.path), present(b, &k.path)) {
            (None, None) => Ordering::Equal,
            // Missing values go last in both directions.
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) if k.desc => cmp_values(x, y).reverse(),
            (Some(x), Some(y)) => cmp_values(x, y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// A sort key's value; `null` counts as missing.
fn present<'a>(row: &'a Value, path: &str) -> Option<&'a Value> {
    lookup(row, path).filter(|v| !v.is_null())
}

/// A total order for sorting: numbers, then strings, then dates, then
/// booleans, then anything else (by its JSON text).
fn cmp_values(x: &Value, y: &Value) -> Ordering {
    let rank = |v: &Value| match v {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        v if is_date(v) => 2,
        Value::Bool(_) => 3,
        _ => 4,
    };
    match (rank(x), rank(y)) {
        (0, 0) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (1, 1) => x.as_str().cmp(&y.as_str()),
        (2, 2) => date_ms(x).cmp(&date_ms(y)),
        (3, 3) => x.as_bool().cmp(&y.as_bool()),
        (4, 4) => x.to_string().cmp(&y.to_string()),
        (rx, ry) => rx.cmp(&ry),
    }
}

fn is_date(v: &Value) -> bool {
    v.get("__type").and_then(Value::as_str) == Some("Date")
}

/// Milliseconds since the epoch of a Date object or an ISO string.
fn date_ms(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => parse_iso(s),
        v if is_date(v) => parse_iso(v.get("iso")?.as_str()?),
        _ => None,
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fff…](Z|±HH:MM)`: what `Date.toJSON()`, Swift's
/// `LCDate` and [`iso_date`] write, plus offsets.
fn parse_iso(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        b.get(from..to)?.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let seps = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if seps.iter().any(|&(i, c)| b.get(i) != Some(&c)) || !matches!(b.get(10), Some(b'T' | b't')) {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > month_days[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || sec > 59
    {
        return None;
    }
    let mut i = 19;
    let mut ms = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &s[start..i.min(start + 3)];
        ms = format!("{digits:0<3}").parse::<i64>().ok()?;
    }
    let offset_min = match &b[i..] {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1, i + 3)?, num(i + 4, i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *sign == b'-' { -m } else { m }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((((days * 24 + h) * 60 + mi - offset_min) * 60 + sec) * 1000 + ms)
}

/// `$regex`: the `regex` crate, linear-time, with `\Q…\E` quoting.
mod pattern;

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
