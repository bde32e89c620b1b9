//! LeanCloud commands as the engine's requests: each SDK command becomes
//! one `ClientFrame` (or none, or an answer the door gives itself), plus
//! the [`Pending`] its answer is shaped by. The field meanings are
//! LeanCloud's (docs/PROTOCOL.md, "The LeanCloud door").

use serde_json::{Map, Value};

use super::outbound::{self, Pending, Until};
use super::peer::Peer;
use super::proto::{
    AckCommand, BlacklistCommand, CommandType, ConvCommand, DirectCommand, GenericCommand,
    LogsCommand, OpType, PatchCommand, ReadCommand, logs_command::QueryDirection,
};
use crate::auth::ConvAction;
use crate::hub::Hub;
use crate::protocol::{
    Anchor, ClientFrame, Command, Content, ConvId, ConvKind, CreateConversation, Direction,
    EditMessage, ErrorBody, ErrorCode, HistoryQuery, MemberRole, OpSignature, SendMessage,
    parse_msg_id,
};

/// Where a command goes.
#[derive(Debug)]
pub(super) enum Inbound {
    /// To the peer's session, with what the answer should look like
    /// (`None`: the SDK waits for none).
    Engine(Vec<(Command, Option<Pending>)>),
    /// Acknowledgements, straight to the session.
    Frame(ClientFrame),
    /// Answered by the door off the engine: reads that are not one
    /// engine command (`local.rs`).
    Local(Local),
    /// Answered at once.
    Answer(Box<GenericCommand>),
    Nothing,
}

#[derive(Debug)]
pub(super) enum Local {
    Query(Box<ConvCommand>),
    Count(ConvId),
    Members(ConvId),
    IsMember(ConvId),
    Online(Vec<String>),
    Refresh,
}

/// The most history one `logs` asks for when it names no limit.
const DEFAULT_LOGS: u32 = 20;

fn cmd_type(cmd: &GenericCommand) -> Option<CommandType> {
    CommandType::try_from(cmd.cmd.unwrap_or(0)).ok()
}

fn op_type(cmd: &GenericCommand) -> Option<OpType> {
    cmd.op.and_then(|o| OpType::try_from(o).ok())
}

fn bad(code: ErrorCode, detail: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, detail)
}

fn conv_id(cid: Option<&str>) -> Result<ConvId, ErrorBody> {
    let cid = cid.ok_or_else(|| bad(ErrorCode::ConvApiFailed, "cid is required"))?;
    cid.parse()
        .map_err(|_| bad(ErrorCode::ConvNotFound, format!("no conversation {cid}")))
}

/// `report/upload` of type `token`: the Swift and ObjC SDKs send the APNs
/// token this way when it arrives after `session/open`, so the device is
/// bound to the client now rather than at the next login. The SDK only
/// waits for `uploaded`; a device not registered yet binds nothing (as at
/// login).
fn report(hub: &Hub, peer: &Peer, r: super::proto::ReportCommand) {
    let Some(token) = r
        .data
        .filter(|t| !t.is_empty() && r.r#type.as_deref() == Some("token"))
    else {
        return;
    };
    if let Err(e) = hub
        .store
        .installation_bind_named(&token, &peer.client, crate::util::now_ms())
    {
        tracing::warn!(client = %peer.client, error = %e, "reported push token not bound");
    }
}

/// Translates one command of a logged-in peer.
pub(super) fn translate(hub: &Hub, peer: &Peer, cmd: GenericCommand) -> Inbound {
    let i = cmd.i;
    match route(hub, peer, cmd) {
        Ok(inbound) => inbound,
        Err(e) => Inbound::Answer(Box::new(outbound::error(i, &e))),
    }
}

fn route(hub: &Hub, peer: &Peer, cmd: GenericCommand) -> Result<Inbound, ErrorBody> {
    let i = cmd.i;
    let op = op_type(&cmd);
    let engine = |c: Command, p: Pending| Ok(Inbound::Engine(vec![(c, Some(p))]));
    match (cmd_type(&cmd), op) {
        (Some(CommandType::Session), Some(OpType::Close)) => {
            engine(Command::Logout, Pending::Close { i })
        }
        (Some(CommandType::Session), Some(OpType::Refresh)) => Ok(Inbound::Local(Local::Refresh)),
        (Some(CommandType::Session), Some(OpType::Query)) => Ok(Inbound::Local(Local::Online(
            cmd.session_message
                .map(|s| s.session_peer_ids)
                .unwrap_or_default(),
        ))),
        (Some(CommandType::Session), Some(OpType::Open)) => Err(bad(
            ErrorCode::DuplicatedLogin,
            "this client is already logged in on this socket",
        )),
        (Some(CommandType::Conv), Some(op)) => {
            conv(hub, peer, op, i, cmd.conv_message.unwrap_or_default())
        }
        (Some(CommandType::Direct), _) => {
            let d = cmd.direct_message.unwrap_or_default();
            let m = send(d)?;
            let receipt = m.receipt && !m.transient;
            engine(Command::Send(m), Pending::Direct { i, receipt })
        }
        (Some(CommandType::Ack), _) => Ok(ack(peer, cmd.ack_message.unwrap_or_default())),
        (Some(CommandType::Read), _) => Ok(read(cmd.read_message.unwrap_or_default())),
        (Some(CommandType::Logs), _) => logs(i, cmd.logs_message.unwrap_or_default()),
        (Some(CommandType::Blacklist), Some(op)) => {
            blacklist(hub, peer, op, i, cmd.blacklist_message.unwrap_or_default())
        }
        (Some(CommandType::Patch), Some(OpType::Modify)) => {
            patch(i, cmd.patch_message.unwrap_or_default())
        }
        (Some(CommandType::Report), Some(OpType::Upload)) => {
            report(hub, peer, cmd.report_message.unwrap_or_default());
            Ok(Inbound::Answer(Box::new(outbound::command(
                CommandType::Report,
                Some(OpType::Uploaded),
                i,
            ))))
        }
        // Java's push channel on the IM socket: nobody waits for an answer.
        (Some(CommandType::Login), _) => Ok(Inbound::Nothing),
        (kind, op) => Err(bad(
            ErrorCode::UnparseableRawMsg,
            format!(
                "command {} / {} is not supported",
                name(kind),
                op.map_or("none", |o| o.as_str_name())
            ),
        )),
    }
}

fn name(kind: Option<CommandType>) -> &'static str {
    kind.map_or("unknown", |k| k.as_str_name())
}

fn conv(
    hub: &Hub,
    peer: &Peer,
    op: OpType,
    i: Option<i32>,
    c: ConvCommand,
) -> Result<Inbound, ErrorBody> {
    let one = |cmd: Command, p: Pending| Ok(Inbound::Engine(vec![(cmd, Some(p))]));
    let cid = || conv_id(c.cid.as_deref());
    match op {
        OpType::Start => {
            let (name, attr) = split_attr(c.attr.as_ref().map(|a| a.data.as_str()), None)?;
            let kind = if c.transient == Some(true) {
                ConvKind::ChatRoom
            } else if c.temp_conv == Some(true) {
                ConvKind::Temporary
            } else {
                ConvKind::Normal
            };
            let create = CreateConversation {
                sig: signature(c.t, c.n, c.s),
                members: c.m,
                name,
                attr,
                unique: c.unique == Some(true),
                kind,
                // Zero or less is "the default", as an absent one.
                ttl_secs: c
                    .temp_conv_ttl
                    .and_then(|t| u32::try_from(t).ok())
                    .filter(|t| *t > 0),
            };
            one(Command::CreateConversation(create), Pending::Started { i })
        }
        OpType::Add | OpType::Remove => {
            let conv = cid()?;
            let adding = op == OpType::Add;
            let alone = c.m.len() == 1 && c.m[0] == peer.client;
            let sig = signature(c.t, c.n, c.s);
            let cmd = match (adding, alone) {
                (true, true) => Command::Join { conv, sig },
                (false, true) => Command::Leave { conv, sig },
                (true, false) => Command::AddMembers {
                    conv,
                    members: c.m.clone(),
                    sig,
                },
                (false, false) => Command::RemoveMembers {
                    conv,
                    members: c.m.clone(),
                    sig,
                },
            };
            let op = if adding {
                OpType::Added
            } else {
                OpType::Removed
            };
            one(
                cmd,
                Pending::Members {
                    i,
                    op,
                    members: c.m,
                },
            )
        }
        OpType::Update => {
            let conv = cid()?;
            let current = hub
                .convs
                .get(&conv)
                .and_then(|cv| cv.state.read().rec.attr.clone());
            let (name, attr) =
                split_attr(c.attr.as_ref().map(|a| a.data.as_str()), current.as_deref())?;
            one(
                Command::UpdateConversation { conv, name, attr },
                Pending::Updated { i },
            )
        }
        OpType::Mute => one(
            Command::Mute { conv: cid()? },
            Pending::Same {
                i,
                cmd: CommandType::Conv,
                op,
            },
        ),
        OpType::Unmute => one(
            Command::Unmute { conv: cid()? },
            Pending::Same {
                i,
                cmd: CommandType::Conv,
                op,
            },
        ),
        OpType::MaxRead => one(Command::Receipts { conv: cid()? }, Pending::MaxRead { i }),
        OpType::Query => Ok(Inbound::Local(Local::Query(Box::new(c)))),
        OpType::Count => Ok(Inbound::Local(Local::Count(cid()?))),
        OpType::Members => Ok(Inbound::Local(Local::Members(cid()?))),
        OpType::IsMember => Ok(Inbound::Local(Local::IsMember(cid()?))),
        OpType::AddShutup | OpType::RemoveShutup => {
            let (conv, members) = (cid()?, c.m);
            let (cmd, done) = if op == OpType::AddShutup {
                (Command::AddShutup { conv, members }, OpType::ShutupAdded)
            } else {
                (
                    Command::RemoveShutup { conv, members },
                    OpType::ShutupRemoved,
                )
            };
            one(
                cmd,
                Pending::Partial {
                    i,
                    cmd: CommandType::Conv,
                    op: done,
                },
            )
        }
        OpType::QueryShutup => one(
            Command::QueryShutup {
                conv: cid()?,
                limit: page_limit(c.limit),
                next: c.next,
            },
            Pending::Page {
                i,
                cmd: CommandType::Conv,
                op: OpType::ShutupResult,
            },
        ),
        OpType::CheckShutup => one(
            Command::CheckShutup {
                conv: cid()?,
                members: c.m,
            },
            Pending::Page {
                i,
                cmd: CommandType::Conv,
                op: OpType::CheckResult,
            },
        ),
        OpType::MemberInfoUpdate => {
            let conv = cid()?;
            let info = c.info.unwrap_or_default();
            let member = c
                .target_client_id
                .or(info.pid)
                .ok_or_else(|| bad(ErrorCode::ConvApiFailed, "targetClientId is required"))?;
            let role = match info.role.as_deref() {
                Some("Owner") => MemberRole::Owner,
                Some("Manager") => MemberRole::Manager,
                Some("Member") => MemberRole::Member,
                other => {
                    return Err(bad(
                        ErrorCode::ConvApiFailed,
                        format!("unknown role {other:?}"),
                    ));
                }
            };
            one(
                Command::SetMemberRole { conv, member, role },
                Pending::Same {
                    i,
                    cmd: CommandType::Conv,
                    op: OpType::MemberInfoUpdated,
                },
            )
        }
        other => Err(bad(
            ErrorCode::ConvApiFailed,
            format!("conv/{} is not supported", other.as_str_name()),
        )),
    }
}

/// An operation's signature as the SDKs send it (`t`, `n`, `s`), when it
/// has one. The checks take the digits of `t` as sent.
fn signature(t: Option<i64>, n: Option<String>, s: Option<String>) -> Option<OpSignature> {
    Some(OpSignature {
        timestamp: u64::try_from(t?).ok()?,
        nonce: n.unwrap_or_default(),
        signature: s?,
    })
}

/// A page size the SDK sent (0 or none: the server's default).
fn page_limit(limit: Option<i32>) -> u32 {
    limit.and_then(|l| u32::try_from(l).ok()).unwrap_or(0)
}

/// `blacklist/*`: block and unblock clients in a conversation, list and
/// check them.
fn blacklist(
    hub: &Hub,
    peer: &Peer,
    op: OpType,
    i: Option<i32>,
    b: BlacklistCommand,
) -> Result<Inbound, ErrorBody> {
    let conv = conv_id(b.src_cid.as_deref())?;
    let action = match op {
        OpType::Block => Some(ConvAction::BlockClients),
        OpType::Unblock => Some(ConvAction::UnblockClients),
        _ => None,
    };
    // Block and Unblock carry no signature on the QUIC door yet: the
    // door checks LeanCloud's here (`auth.blacklist_signatures`).
    if let Some(action) = action {
        let caller = peer.caller();
        let sig = signature(b.t, b.n.clone(), b.s.clone());
        crate::conversation::ops::check_signature(
            hub,
            &caller,
            Some(conv),
            &b.to_pids,
            action,
            sig.as_ref(),
        )?;
    }
    let members = b.to_pids;
    let (cmd, pending) = match op {
        OpType::Block => (
            Command::Block { conv, members },
            Pending::Partial {
                i,
                cmd: CommandType::Blacklist,
                op: OpType::Blocked,
            },
        ),
        OpType::Unblock => (
            Command::Unblock { conv, members },
            Pending::Partial {
                i,
                cmd: CommandType::Blacklist,
                op: OpType::Unblocked,
            },
        ),
        OpType::Query => (
            Command::QueryBlocked {
                conv,
                limit: page_limit(b.limit),
                next: b.next,
            },
            Pending::Page {
                i,
                cmd: CommandType::Blacklist,
                op: OpType::QueryResult,
            },
        ),
        OpType::CheckBlock => (
            Command::CheckBlocked { conv, members },
            Pending::Page {
                i,
                cmd: CommandType::Blacklist,
                op: OpType::CheckResult,
            },
        ),
        other => {
            return Err(bad(
                ErrorCode::ConvApiFailed,
                format!("blacklist/{} is not supported", other.as_str_name()),
            ));
        }
    };
    Ok(Inbound::Engine(vec![(cmd, Some(pending))]))
}

/// LeanCloud's `attr` JSON: `name` is the name, every other key a custom
/// attribute. Keys may be paths (`color.text`, JS `conversation.set`),
/// set inside `current` (the stored attributes) for an update. `attr` is
/// `None` when nothing but the name changed.
fn split_attr(
    data: Option<&str>,
    current: Option<&str>,
) -> Result<(Option<String>, Option<String>), ErrorBody> {
    let Some(data) = data else {
        return Ok((None, None));
    };
    let changed: Map<String, Value> = serde_json::from_str(data).map_err(|e| {
        bad(
            ErrorCode::ConvApiFailed,
            format!("attr must be a JSON object: {e}"),
        )
    })?;
    let mut name = None;
    let mut attrs: Map<String, Value> = current
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_default();
    let mut touched = false;
    for (k, v) in changed {
        if k == "name" {
            name = Some(match v {
                Value::String(s) => s,
                other => other.to_string(),
            });
            continue;
        }
        touched = true;
        // Older SDKs prefix custom attributes with `attr.`.
        let path = k.strip_prefix("attr.").unwrap_or(&k);
        set_path(&mut attrs, path, v);
    }
    Ok((name, touched.then(|| Value::Object(attrs).to_string())))
}

fn set_path(map: &mut Map<String, Value>, path: &str, v: Value) {
    match path.split_once('.') {
        None => {
            map.insert(path.to_owned(), v);
        }
        Some((head, rest)) => {
            let child = map
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            if let Value::Object(m) = child {
                set_path(m, rest, v);
            }
        }
    }
}

fn content(msg: Option<String>, binary: Option<Vec<u8>>) -> Result<Content, ErrorBody> {
    match (msg, binary) {
        (_, Some(b)) => Ok(Content::Binary(b)),
        (Some(m), None) => Ok(Content::Text(m)),
        (None, None) => Err(bad(
            ErrorCode::InvalidMessagingTarget,
            "a message needs msg or binaryMsg",
        )),
    }
}

fn send(d: DirectCommand) -> Result<SendMessage, ErrorBody> {
    Ok(SendMessage {
        conv: conv_id(d.cid.as_deref())?,
        content: content(d.msg, d.binary_msg)?,
        mention_list: d.mention_pids,
        mention_all: d.mention_all == Some(true),
        receipt: d.r == Some(true),
        transient: d.transient == Some(true),
        will: d.will == Some(true),
        push_data: d.push_data,
        token: d.dt,
    })
}

/// Delivery acks in the three shapes the SDKs send: a message id (Swift,
/// ObjC, Java), a range of timestamps (JS), or push-channel ids (ignored:
/// that channel is not this door's).
fn ack(peer: &Peer, a: AckCommand) -> Inbound {
    let Some(Ok(conv)) = a.cid.as_deref().map(str::parse::<ConvId>) else {
        return Inbound::Nothing;
    };
    let by_id = a
        .mid
        .as_deref()
        .and_then(parse_msg_id)
        .filter(|(c, _)| *c == conv)
        .map(|(_, s)| s);
    let tots = a.tots.and_then(|t| u64::try_from(t).ok());
    match peer.acked(conv, by_id, tots) {
        Some(seq) => Inbound::Frame(ClientFrame::Ack {
            acks: vec![(conv, seq)],
        }),
        None => Inbound::Nothing,
    }
}

/// `read`: each conversation read up to a message (or all of it). The JS
/// SDK sends it without `i`: nobody waits for the answer.
fn read(r: ReadCommand) -> Inbound {
    let mut out = Vec::new();
    let tuples = r.convs.into_iter().map(|t| (t.cid, t.mid));
    let bare = r.cid.into_iter().chain(r.cids).map(|c| (c, None));
    for (cid, mid) in tuples.chain(bare) {
        let Ok(conv) = cid.parse::<ConvId>() else {
            continue;
        };
        let seq = mid
            .as_deref()
            .and_then(parse_msg_id)
            .filter(|(c, _)| *c == conv)
            .map(|(_, s)| s);
        out.push((Command::Read { conv, seq }, None));
    }
    Inbound::Engine(out)
}

fn logs(i: Option<i32>, l: LogsCommand) -> Result<Inbound, ErrorBody> {
    let conv = conv_id(l.cid.as_deref())?;
    let newer = l.direction == Some(QueryDirection::New as i32);
    let anchor = match (l.mid, l.t.and_then(|t| u64::try_from(t).ok())) {
        (Some(mid), _) if !mid.is_empty() => Anchor::MsgId(mid),
        (_, Some(t)) if t > 0 => Anchor::Timestamp(t),
        _ if newer => Anchor::Earliest,
        _ => Anchor::Latest,
    };
    let limit =
        l.l.or(l.limit)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_LOGS);
    let until = match (
        l.tt.and_then(|t| u64::try_from(t).ok()).filter(|t| *t > 0),
        l.tmid,
    ) {
        (None, None) => None,
        (tt, tmid) => Some(Until {
            timestamp: tt.unwrap_or(0),
            msg_id: tmid.filter(|m| !m.is_empty()),
            included: l.tt_included == Some(true),
            older: !newer,
        }),
    };
    let q = HistoryQuery {
        conv,
        anchor,
        direction: if newer {
            Direction::After
        } else {
            Direction::Before
        },
        inclusive: l.t_included == Some(true),
        limit,
        lctype: l.lctype,
    };
    Ok(Inbound::Engine(vec![(
        Command::History(q),
        Some(Pending::Logs { i, until }),
    )]))
}

/// `patch/modify`: an edit, or a recall. The SDKs send one patch at a time.
fn patch(i: Option<i32>, p: PatchCommand) -> Result<Inbound, ErrorBody> {
    let Some(item) = p.patches.into_iter().next() else {
        return Err(bad(ErrorCode::MessageNotFound, "no patch in patch/modify"));
    };
    let conv = conv_id(item.cid.as_deref())?;
    let msg_id = item
        .mid
        .ok_or_else(|| bad(ErrorCode::MessageNotFound, "mid is required"))?;
    let cmd = if item.recall == Some(true) {
        Command::RecallMessage { conv, msg_id }
    } else {
        Command::EditMessage(EditMessage {
            conv,
            msg_id,
            content: content(item.data, item.binary_msg)?,
            mention_list: item.mention_pids,
            mention_all: item.mention_all == Some(true),
        })
    };
    Ok(Inbound::Engine(vec![(cmd, Some(Pending::Patched { i }))]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_splits_the_name_and_sets_paths_in_the_stored_attributes() {
        let (name, attr) = split_attr(Some(r#"{"name":"a&b","type":"private"}"#), None).unwrap();
        assert_eq!(name.as_deref(), Some("a&b"));
        assert_eq!(attr.as_deref(), Some(r#"{"type":"private"}"#));
        let (name, attr) = split_attr(
            Some(r##"{"color.text":"#333","attr.pinned":true}"##),
            Some(r##"{"color":{"text":"#000","bg":"#DDD"},"type":"private"}"##),
        )
        .unwrap();
        assert_eq!(name, None);
        assert_eq!(
            attr.as_deref(),
            Some(r##"{"color":{"bg":"#DDD","text":"#333"},"pinned":true,"type":"private"}"##)
        );
        assert_eq!(
            split_attr(Some(r#"{"name":"x"}"#), Some("{}")).unwrap(),
            (Some("x".into()), None)
        );
        assert_eq!(split_attr(Some("[1]"), None).unwrap_err().code, 4301);
    }

    #[test]
    fn logs_map_to_history_queries() {
        let conv = ConvId([7; 12]);
        let l = LogsCommand {
            cid: Some(conv.to_string()),
            l: Some(10),
            t: Some(1_700_000_000_000),
            tt: Some(1_600_000_000_000),
            ..Default::default()
        };
        let Inbound::Engine(cmds) = logs(Some(4), l).unwrap() else {
            panic!()
        };
        let (Command::History(q), Some(Pending::Logs { i, until })) = &cmds[0] else {
            panic!()
        };
        assert_eq!(*i, Some(4));
        assert_eq!(q.anchor, Anchor::Timestamp(1_700_000_000_000));
        assert_eq!(q.direction, Direction::Before);
        assert_eq!(q.limit, 10);
        let u = until.as_ref().unwrap();
        assert!(u.older && !u.included && u.timestamp == 1_600_000_000_000);
        let newest = LogsCommand {
            cid: Some(conv.to_string()),
            ..Default::default()
        };
        let Inbound::Engine(cmds) = logs(None, newest).unwrap() else {
            panic!()
        };
        let (Command::History(q), _) = &cmds[0] else {
            panic!()
        };
        assert_eq!((q.anchor.clone(), q.limit), (Anchor::Latest, DEFAULT_LOGS));
        assert_eq!(logs(None, LogsCommand::default()).unwrap_err().code, 4301);
    }

    #[test]
    fn read_takes_every_shape() {
        let a = ConvId([1; 12]);
        let b = ConvId([2; 12]);
        let r = ReadCommand {
            cid: Some(a.to_string()),
            convs: vec![super::super::proto::ReadTuple {
                cid: b.to_string(),
                mid: Some(crate::protocol::msg_id(b, 9)),
                timestamp: None,
            }],
            ..Default::default()
        };
        let Inbound::Engine(cmds) = read(r) else {
            panic!()
        };
        let got: Vec<_> = cmds.into_iter().map(|(c, p)| (c, p.is_none())).collect();
        assert_eq!(
            got,
            vec![
                (
                    Command::Read {
                        conv: b,
                        seq: Some(9)
                    },
                    true
                ),
                (Command::Read { conv: a, seq: None }, true),
            ]
        );
    }
}
