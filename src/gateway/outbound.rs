//! The engine's answers and events as LeanCloud commands: what each SDK
//! request expects back ([`reply`], keyed by the [`Pending`] the request
//! left) and the pushes ([`event`]). Pure: no socket, no clock but the
//! `now` a push is stamped with.

use super::proto::{
    AckCommand, BlacklistCommand, CommandType, ConvCommand, ConvMemberInfo, DirectCommand,
    ErrorCommand, GenericCommand, JsonObjectMessage, LogItem, LogsCommand, OpType, PatchCommand,
    PatchItem, RcpCommand, SessionCommand, UnreadCommand, UnreadTuple,
};
use crate::protocol::{
    Content, ConvId, ConversationInfo, ErrorBody, ErrorCode, Event, Message, Reason, Reply,
};
use crate::util::{iso_date, now_ms};

/// LeanCloud's `service` for IM; Swift and ObjC drop pushes without it.
const SERVICE_IM: i32 = 2;
/// `notificationType` of membership pushes: JS resumes
/// `/1.1/rtm/notifications` from the last one's `serverTs`.
const PERMANENT: i32 = 1;

/// What a request the door handed the engine expects as its answer.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Pending {
    /// `session/open`: `session/opened` with a session token.
    Open { i: Option<i32>, tag: Option<String> },
    /// `session/close`: `session/closed`.
    Close { i: Option<i32> },
    /// `conv/start`: `conv/started`.
    Started { i: Option<i32> },
    /// `conv/add` and `conv/remove` (join and quit too): `added`/`removed`
    /// with the members that went through.
    Members {
        i: Option<i32>,
        op: OpType,
        members: Vec<String>,
    },
    /// `conv/update`: `conv/updated` with the time.
    Updated { i: Option<i32> },
    /// Answered with the same command and operation, nothing else (mute).
    Same {
        i: Option<i32>,
        cmd: CommandType,
        op: OpType,
    },
    /// `direct`: `ack` with the message's id and time. `receipt`: the
    /// sender asked for receipts, so the peer remembers the message to
    /// name it in the `rcp` that says it arrived.
    Direct { i: Option<i32>, receipt: bool },
    /// `logs`: the page, oldest first, cut at `until` (`tt`/`tmid`).
    Logs {
        i: Option<i32>,
        until: Option<Until>,
    },
    /// `patch/modify`: `patch/modified`.
    Patched { i: Option<i32> },
    /// `conv/max_read`: the receipt timestamps.
    MaxRead { i: Option<i32> },
    /// Shutup and blacklist changes: `allowedPids`/`failedPids`, in the
    /// command's own message (`convMessage` or `blacklistMessage`).
    Partial {
        i: Option<i32>,
        cmd: CommandType,
        op: OpType,
    },
    /// Shutup and blacklist pages and checks: the clients (`m` or
    /// `blockedPids`) and where the next page starts.
    Page {
        i: Option<i32>,
        cmd: CommandType,
        op: OpType,
    },
}

/// Where a `logs` query stops (LeanCloud's `tt`, `tmid`, `ttIncluded`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Until {
    pub timestamp: u64,
    pub msg_id: Option<String>,
    pub included: bool,
    /// The query goes back in time (LeanCloud's default), so the end is
    /// older than the start.
    pub older: bool,
}

impl Pending {
    fn i(&self) -> Option<i32> {
        match self {
            Pending::Open { i, .. }
            | Pending::Close { i }
            | Pending::Started { i }
            | Pending::Members { i, .. }
            | Pending::Updated { i }
            | Pending::Same { i, .. }
            | Pending::Direct { i, .. }
            | Pending::Logs { i, .. }
            | Pending::Patched { i }
            | Pending::MaxRead { i }
            | Pending::Partial { i, .. }
            | Pending::Page { i, .. } => *i,
        }
    }
}

pub(super) fn command(cmd: CommandType, op: Option<OpType>, i: Option<i32>) -> GenericCommand {
    GenericCommand {
        cmd: Some(cmd as i32),
        op: op.map(|o| o as i32),
        i,
        ..Default::default()
    }
}

/// What every push carries: the IM service, the client it is for and the
/// server's time.
pub(super) fn stamp_push(cmd: &mut GenericCommand, client: &str) {
    cmd.service = Some(SERVICE_IM);
    cmd.peer_id = Some(client.to_owned());
    cmd.server_ts = Some(ms(now_ms()));
}

/// A refusal: `cmd=error` with the request's `i`.
pub(super) fn error(i: Option<i32>, e: &ErrorBody) -> GenericCommand {
    GenericCommand {
        error_message: Some(error_command(e.clone(), Vec::new())),
        ..command(CommandType::Error, None, i)
    }
}

/// An error as LeanCloud carries it, for the clients `pids` it concerns
/// (`failedPids` entries) or none (an `error` answer).
fn error_command(e: ErrorBody, pids: Vec<String>) -> ErrorCommand {
    ErrorCommand {
        code: i32::from(e.code),
        reason: e.reason,
        detail: (!e.detail.is_empty()).then_some(e.detail),
        pids,
        ..Default::default()
    }
}

pub(super) fn error_code(i: Option<i32>, code: ErrorCode, detail: &str) -> GenericCommand {
    error(i, &ErrorBody::new(code, detail))
}

pub(super) fn session_closed(i: Option<i32>, code: i32, reason: &str) -> GenericCommand {
    GenericCommand {
        session_message: Some(SessionCommand {
            code: Some(code),
            reason: Some(reason.to_owned()),
            ..Default::default()
        }),
        ..command(CommandType::Session, Some(OpType::Closed), i)
    }
}

/// `session/opened` (or `refreshed`) with a session token the SDK
/// reconnects with.
pub(super) fn opened(p: &Pending, client: &str, token: &str, ttl_secs: u64) -> GenericCommand {
    session_token(p.i(), OpType::Opened, client, token, ttl_secs)
}

pub(super) fn session_token(
    i: Option<i32>,
    op: OpType,
    client: &str,
    token: &str,
    ttl_secs: u64,
) -> GenericCommand {
    GenericCommand {
        peer_id: Some(client.to_owned()),
        server_ts: Some(ms(now_ms())),
        session_message: Some(SessionCommand {
            st: Some(token.to_owned()),
            st_ttl: Some(i32::try_from(ttl_secs).unwrap_or(i32::MAX)),
            ..Default::default()
        }),
        ..command(CommandType::Session, Some(op), i)
    }
}

/// The answer to a request, from the engine's reply and what the request
/// left. `None`: nothing to say.
pub(super) fn reply(
    p: Pending,
    result: Result<Reply, ErrorBody>,
    client: &str,
) -> Option<GenericCommand> {
    let i = p.i();
    let reply = match result {
        Ok(r) => r,
        Err(e) if matches!(p, Pending::Direct { .. }) => {
            // JS reads a refused send from the ack's code.
            return Some(GenericCommand {
                ack_message: Some(AckCommand {
                    code: Some(i32::from(e.code)),
                    reason: Some(if e.detail.is_empty() {
                        e.reason
                    } else {
                        e.detail
                    }),
                    ..Default::default()
                }),
                ..command(CommandType::Ack, None, i)
            });
        }
        // LeanCloud answers an add naming a blocked client as a partial
        // success; Tidings refuses the whole add, so every named client
        // failed (the SDKs read `failedPids`).
        Err(e) if e.code == ErrorCode::ConvBlacklisted.code() => {
            if let Pending::Members { op, members, .. } = p {
                return Some(GenericCommand {
                    conv_message: Some(ConvCommand {
                        failed_pids: vec![error_command(e, members)],
                        ..Default::default()
                    }),
                    ..command(CommandType::Conv, Some(op), i)
                });
            }
            return Some(error(i, &e));
        }
        Err(e) => return Some(error(i, &e)),
    };
    let conv = |op: OpType, c: ConvCommand| GenericCommand {
        conv_message: Some(c),
        ..command(CommandType::Conv, Some(op), i)
    };
    let out = match (p, reply) {
        (Pending::Close { .. }, _) => command(CommandType::Session, Some(OpType::Closed), i),
        (Pending::Started { .. }, Reply::Conversation(info)) => {
            conv(OpType::Started, started(&info))
        }
        (Pending::Members { op, members, .. }, _) => conv(
            op,
            ConvCommand {
                allowed_pids: members,
                ..Default::default()
            },
        ),
        (Pending::Updated { .. }, _) => conv(
            OpType::Updated,
            ConvCommand {
                udate: Some(iso_date(now_ms())),
                ..Default::default()
            },
        ),
        (Pending::Same { cmd, op, .. }, _) => command(cmd, Some(op), i),
        (
            Pending::Direct { .. },
            Reply::Sent {
                msg_id, timestamp, ..
            },
        ) => GenericCommand {
            ack_message: Some(AckCommand {
                uid: Some(msg_id),
                t: Some(ms(timestamp)),
                ..Default::default()
            }),
            ..command(CommandType::Ack, None, i)
        },
        (Pending::Logs { until, .. }, Reply::History { mut messages, .. }) => {
            messages.sort_by_key(|m| m.seq);
            if let Some(u) = until {
                messages.retain(|m| before_until(m, &u));
            }
            GenericCommand {
                logs_message: Some(LogsCommand {
                    logs: messages.iter().map(log_item).collect(),
                    ..Default::default()
                }),
                ..command(CommandType::Logs, None, i)
            }
        }
        (Pending::Patched { .. }, Reply::Updated { msg }) => GenericCommand {
            patch_message: Some(PatchCommand {
                last_patch_time: Some(ms(msg.updated_at.unwrap_or_else(now_ms))),
                ..Default::default()
            }),
            ..command(CommandType::Patch, Some(OpType::Modified), i)
        },
        (
            Pending::MaxRead { .. },
            Reply::Receipts {
                last_delivered_at,
                last_read_at,
            },
        ) => conv(
            OpType::MaxRead,
            ConvCommand {
                max_ack_timestamp: last_delivered_at.map(ms),
                max_read_timestamp: last_read_at.map(ms),
                ..Default::default()
            },
        ),
        (Pending::Partial { cmd, op, .. }, Reply::Partial { allowed, failed }) => {
            let failed: Vec<ErrorCommand> = failed
                .into_iter()
                .map(|f| error_command(f.error, f.clients))
                .collect();
            let mut out = command(cmd, Some(op), i);
            if cmd == CommandType::Blacklist {
                out.blacklist_message = Some(BlacklistCommand {
                    allowed_pids: allowed,
                    failed_pids: failed,
                    ..Default::default()
                });
            } else {
                out.conv_message = Some(ConvCommand {
                    allowed_pids: allowed,
                    failed_pids: failed,
                    ..Default::default()
                });
            }
            out
        }
        (Pending::Page { cmd, op, .. }, Reply::Clients { clients, next }) => {
            let mut out = command(cmd, Some(op), i);
            if cmd == CommandType::Blacklist {
                out.blacklist_message = Some(BlacklistCommand {
                    blocked_pids: clients,
                    next,
                    ..Default::default()
                });
            } else {
                out.conv_message = Some(ConvCommand {
                    m: clients,
                    next,
                    ..Default::default()
                });
            }
            out
        }
        (p, r) => {
            tracing::error!(client, pending = ?p, reply = ?r, "an answer of the wrong kind");
            error_code(i, ErrorCode::InternalError, "unexpected answer")
        }
    };
    Some(out)
}

/// Whether `m` lies on the near side of a `logs` query's end.
fn before_until(m: &Message, u: &Until) -> bool {
    if u.msg_id.as_deref() == Some(m.msg_id.as_str()) {
        return u.included;
    }
    match (m.timestamp.cmp(&u.timestamp), u.older) {
        (std::cmp::Ordering::Equal, _) => u.included,
        (std::cmp::Ordering::Greater, older) => older,
        (std::cmp::Ordering::Less, older) => !older,
    }
}

fn started(info: &ConversationInfo) -> ConvCommand {
    ConvCommand {
        cid: Some(info.id.to_string()),
        cdate: Some(iso_date(info.created_at)),
        unique_id: info.unique.then(|| info.id.to_string()),
        temp_conv_ttl: super::query::ttl_left(info.id)
            .map(|t| i32::try_from(t).unwrap_or(i32::MAX)),
        ..Default::default()
    }
}

fn log_item(m: &Message) -> LogItem {
    let (data, bin) = match &m.content {
        Content::Text(t) => (t.clone(), None),
        Content::Binary(b) => {
            use base64::Engine;
            (
                base64::engine::general_purpose::STANDARD.encode(b),
                Some(true),
            )
        }
    };
    LogItem {
        from: Some(m.from.clone()),
        data: Some(data),
        timestamp: Some(ms(m.timestamp)),
        msg_id: Some(m.msg_id.clone()),
        patch_timestamp: m.updated_at.map(ms),
        mention_all: m.mention_all.then_some(true),
        mention_pids: m.mention_list.clone(),
        bin,
        ..Default::default()
    }
}

/// A push for an event, or `None` when LeanCloud has no such push.
pub(super) fn event(ev: Event) -> Option<GenericCommand> {
    let conv = |op: OpType, c: ConvCommand| GenericCommand {
        conv_message: Some(c),
        notification_type: Some(PERMANENT),
        ..command(CommandType::Conv, Some(op), None)
    };
    let by = |cid: ConvId, by: String, m: Vec<String>| ConvCommand {
        cid: Some(cid.to_string()),
        init_by: Some(by),
        m,
        ..Default::default()
    };
    Some(match ev {
        Event::Message { msg, .. } => GenericCommand {
            direct_message: Some(direct(&msg)),
            ..command(CommandType::Direct, None, None)
        },
        Event::Unread { items } => GenericCommand {
            unread_message: Some(UnreadCommand {
                convs: items
                    .into_iter()
                    .map(|u| {
                        let mut t = UnreadTuple {
                            cid: u.conv.to_string(),
                            unread: i32::try_from(u.count).unwrap_or(i32::MAX),
                            ..Default::default()
                        };
                        if let Some(m) = u.last_message {
                            t.mid = Some(m.msg_id.clone());
                            t.timestamp = Some(ms(m.timestamp));
                            t.from = Some(m.from.clone());
                            t.patch_timestamp = m.updated_at.map(ms);
                            t.mentioned = Some(m.mentioned);
                            match m.content {
                                Content::Text(s) => t.data = Some(s),
                                Content::Binary(b) => t.binary_msg = Some(b),
                            }
                        }
                        t
                    })
                    .collect(),
                notif_time: Some(ms(now_ms())),
            }),
            ..command(CommandType::Unread, None, None)
        },
        Event::MembersJoined {
            conv: c,
            members,
            by: b,
        } => conv(OpType::MembersJoined, by(c, b, members)),
        Event::MembersLeft {
            conv: c,
            members,
            by: b,
        } => conv(OpType::MembersLeft, by(c, b, members)),
        Event::Invited { conv: c, by: b } => conv(OpType::Joined, by(c, b, Vec::new())),
        Event::Kicked { conv: c, by: b } | Event::ConversationDeleted { conv: c, by: b } => {
            conv(OpType::Left, by(c, b, Vec::new()))
        }
        Event::ConversationUpdated {
            conv: c,
            by: b,
            name,
            attr,
        } => {
            let mut changed = attr
                .as_deref()
                .and_then(|a| {
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(a).ok()
                })
                .unwrap_or_default();
            if let Some(n) = name {
                changed.insert("name".into(), n.into());
            }
            let data = serde_json::Value::Object(changed).to_string();
            let mut cmd = by(c, b, Vec::new());
            cmd.attr = Some(JsonObjectMessage { data: data.clone() });
            cmd.attr_modified = Some(JsonObjectMessage { data });
            cmd.udate = Some(iso_date(now_ms()));
            conv(OpType::Updated, cmd)
        }
        Event::Shutuped { conv: c, by: b } => conv(OpType::Shutuped, by(c, b, Vec::new())),
        Event::Unshutuped { conv: c, by: b } => conv(OpType::Unshutuped, by(c, b, Vec::new())),
        Event::MembersShutuped {
            conv: c,
            members,
            by: b,
        } => conv(OpType::MembersShutuped, by(c, b, members)),
        Event::MembersUnshutuped {
            conv: c,
            members,
            by: b,
        } => conv(OpType::MembersUnshutuped, by(c, b, members)),
        Event::Blocked { conv: c, by: b } => conv(OpType::Blocked, by(c, b, Vec::new())),
        Event::Unblocked { conv: c, by: b } => conv(OpType::Unblocked, by(c, b, Vec::new())),
        Event::MembersBlocked {
            conv: c,
            members,
            by: b,
        } => conv(OpType::MembersBlocked, by(c, b, members)),
        Event::MembersUnblocked {
            conv: c,
            members,
            by: b,
        } => conv(OpType::MembersUnblocked, by(c, b, members)),
        Event::MemberInfoChanged {
            conv: c,
            member,
            role,
            by: b,
        } => {
            let mut cmd = by(c, b, Vec::new());
            cmd.info = Some(ConvMemberInfo {
                pid: Some(member),
                role: Some(role.as_str().to_owned()),
                ..Default::default()
            });
            conv(OpType::MemberInfoChanged, cmd)
        }
        Event::MessageUpdated { msg, reason } => patch(&msg, false, reason),
        Event::MessageRecalled { msg, reason } => patch(&msg, true, reason),
        Event::LastDeliveredAt { conv, by, at } => rcp(conv, by, at, false),
        Event::LastReadAt { conv, by, at } => rcp(conv, by, at, true),
        // Said by the door itself (`session/closed`), or not LeanCloud's.
        Event::Conflict { .. }
        | Event::Closing { .. }
        | Event::SyncDone { .. }
        | Event::SyncSkipped { .. }
        | Event::ReadUpdated { .. }
        | Event::MessageDeleted { .. }
        | Event::Typing { .. } => return None,
    })
}

fn direct(m: &Message) -> DirectCommand {
    let mut d = DirectCommand {
        id: Some(m.msg_id.clone()),
        cid: Some(m.conv.to_string()),
        from_peer_id: Some(m.from.clone()),
        timestamp: Some(ms(m.timestamp)),
        transient: m.transient.then_some(true),
        patch_timestamp: m.updated_at.map(ms),
        mention_pids: m.mention_list.clone(),
        mention_all: m.mention_all.then_some(true),
        ..Default::default()
    };
    match &m.content {
        Content::Text(s) => d.msg = Some(s.clone()),
        Content::Binary(b) => d.binary_msg = Some(b.clone()),
    }
    d
}

fn patch(m: &Message, recall: bool, reason: Option<Reason>) -> GenericCommand {
    let mut item = PatchItem {
        cid: Some(m.conv.to_string()),
        mid: Some(m.msg_id.clone()),
        timestamp: Some(ms(m.timestamp)),
        recall: Some(recall),
        patch_timestamp: Some(ms(m.updated_at.unwrap_or_else(now_ms))),
        from: Some(m.from.clone()),
        mention_all: Some(m.mention_all),
        mention_pids: m.mention_list.clone(),
        ..Default::default()
    };
    match &m.content {
        Content::Text(s) => item.data = Some(s.clone()),
        Content::Binary(b) => item.binary_msg = Some(b.clone()),
    }
    if let Some(r) = reason {
        item.patch_code = Some(i64::from(r.code));
        item.patch_reason = Some(r.detail);
    }
    GenericCommand {
        patch_message: Some(PatchCommand {
            patches: vec![item],
            ..Default::default()
        }),
        ..command(CommandType::Patch, Some(OpType::Modify), None)
    }
}

/// A receipt push; `id` names the message it is for (the SDKs mark that
/// message delivered), or none for the conversation's timestamps alone.
pub(super) fn rcp(conv: ConvId, by: String, at: u64, read: bool) -> GenericCommand {
    rcp_for(conv, None, by, at, read)
}

pub(super) fn rcp_for(
    conv: ConvId,
    id: Option<String>,
    by: String,
    at: u64,
    read: bool,
) -> GenericCommand {
    GenericCommand {
        rcp_message: Some(RcpCommand {
            id,
            cid: Some(conv.to_string()),
            t: Some(ms(at)),
            read: Some(read),
            from: Some(by),
        }),
        ..command(CommandType::Rcp, None, None)
    }
}

/// Milliseconds as protobuf's int64 (ours are far below its limit).
pub(super) fn ms(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}
