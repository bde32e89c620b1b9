//! The wire protocol: what a client and the server say to each other.
//!
//! Every type here is encoded by [`crate::wire::codec`] and framed by
//! [`crate::transport::frame`]. `docs/PROTOCOL.md` is the prose version of
//! this file; keep them in step. New fields go at the end of a struct and new
//! variants at the end of an enum, because the encoding is positional.

pub mod codes;
pub mod hooks;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

pub use codes::ErrorCode;

/// ALPN protocol id for this wire format.
pub const ALPN: &[u8] = b"tidings/1";

/// A conversation id: 12 bytes shown as 24 lowercase hex digits, the shape of a
/// LeanCloud objectId, so ids survive an import from LeanCloud unchanged.
///
/// A temporary conversation's id says so, as LeanCloud's `_tmp:` ids do:
/// its first four bytes are [`TEMPORARY_MARK`], the next four its expiry
/// (Unix seconds, big-endian), the last four random; it is shown as
/// `_tmp:` and the last eight bytes in hex. Carrying the expiry in the id
/// lets every layer (the table's lookup, the door's rows, the sweeper) know
/// it without a lookup or a new record field, and a TTL never changes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConvId(pub [u8; 12]);

/// The first bytes of every temporary conversation's id. [`ConvId::random`]
/// never makes one; an id imported or created before temporary
/// conversations existed has it by chance with odds of 2^-32 each.
pub const TEMPORARY_MARK: [u8; 4] = *b"_tmp";
const TEMPORARY_PREFIX: &str = "_tmp:";

impl ConvId {
    pub fn random() -> Self {
        loop {
            let id = ConvId(rand::random());
            if !id.is_temporary() {
                return id;
            }
        }
    }

    /// A new temporary conversation's id, expiring at `expires_secs`.
    pub fn temporary(expires_secs: u32) -> Self {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&TEMPORARY_MARK);
        b[4..8].copy_from_slice(&expires_secs.to_be_bytes());
        b[8..].copy_from_slice(&rand::random::<[u8; 4]>());
        ConvId(b)
    }

    pub fn is_temporary(&self) -> bool {
        self.0[..4] == TEMPORARY_MARK
    }

    /// When a temporary conversation expires (Unix ms); `None` for others.
    pub fn expires_ms(&self) -> Option<u64> {
        self.is_temporary().then(|| {
            let secs = u32::from_be_bytes([self.0[4], self.0[5], self.0[6], self.0[7]]);
            u64::from(secs) * 1000
        })
    }

    /// A temporary conversation whose time is up at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms().is_some_and(|e| now_ms >= e)
    }
}

impl fmt::Display for ConvId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_temporary() {
            f.write_str(TEMPORARY_PREFIX)?;
            f.write_str(&hex::encode(&self.0[4..]))
        } else {
            f.write_str(&hex::encode(self.0))
        }
    }
}

impl fmt::Debug for ConvId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConvId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_ids_round_trip_and_reject_others() {
        let conv = ConvId([0xAB; 12]);
        let id = msg_id(conv, 300);
        assert_eq!(id.len(), 27);
        assert_eq!(parse_msg_id(&id), Some((conv, 300)));
        assert_eq!(parse_msg_id("Ab3dEfGhIjKlMnOpQrSt"), None);
        assert_eq!(parse_msg_id(&format!("{id}A")), None);
        assert_eq!(parse_msg_id(""), None);
    }

    #[test]
    fn temporary_ids_say_so_and_carry_their_expiry() {
        let id = ConvId::temporary(1_800_000_000);
        let shown = id.to_string();
        assert!(
            shown.starts_with("_tmp:") && shown.len() == 5 + 16,
            "{shown}"
        );
        assert_eq!(shown.parse::<ConvId>().ok(), Some(id));
        assert_eq!(id.expires_ms(), Some(1_800_000_000_000));
        assert!(!id.expired(1_799_999_999_999));
        assert!(id.expired(1_800_000_000_000));
        // One spelling: the plain hex of a temporary id is refused.
        assert!(hex::encode(id.0).parse::<ConvId>().is_err());
        assert!("_tmp:zz".parse::<ConvId>().is_err());
        let normal = ConvId::random();
        assert!(!normal.is_temporary() && normal.expires_ms().is_none());
        assert!(!normal.expired(u64::MAX));
        assert_eq!(normal.to_string().parse::<ConvId>().ok(), Some(normal));
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a conversation id is 24 hex digits, or _tmp: and 16 for a temporary one")]
pub struct BadConvId;

impl FromStr for ConvId {
    type Err = BadConvId;
    fn from_str(s: &str) -> Result<Self, BadConvId> {
        let mut out = [0u8; 12];
        match s.strip_prefix(TEMPORARY_PREFIX) {
            Some(rest) => {
                out[..4].copy_from_slice(&TEMPORARY_MARK);
                hex::decode_to_slice(rest, &mut out[4..]).map_err(|_| BadConvId)?;
            }
            None => {
                hex::decode_to_slice(s, &mut out).map_err(|_| BadConvId)?;
                // One spelling per id: a temporary one is always `_tmp:`.
                if ConvId(out).is_temporary() {
                    return Err(BadConvId);
                }
            }
        }
        Ok(ConvId(out))
    }
}

/// A stored message's id: its conversation and seq, base64url without
/// padding (27 characters). Deriving it means no id index to write per
/// message; the position it reveals is in the message anyway.
pub fn msg_id(conv: ConvId, seq: u64) -> String {
    use base64::Engine;
    let mut raw = [0u8; 20];
    raw[..12].copy_from_slice(&conv.0);
    raw[12..].copy_from_slice(&seq.to_be_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// The conversation and seq a stored message's id names; `None` for any
/// other string (transient messages have random ids).
pub fn parse_msg_id(id: &str) -> Option<(ConvId, u64)> {
    use base64::Engine;
    let mut raw = [0u8; 20];
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode_slice(id, &mut raw)
        .ok()?;
    if n != 20 || id.len() != 27 {
        return None;
    }
    let conv = ConvId(raw[..12].try_into().ok()?);
    Some((conv, u64::from_be_bytes(raw[12..].try_into().ok()?)))
}

/// Client → server, on the connection's one bidirectional stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// A command that expects exactly one [`ServerFrame::Response`] with the same id.
    Request { id: u64, cmd: Command },
    /// Cumulative acknowledgement: this device has every message of `conv` up to `seq`.
    Ack { acks: Vec<(ConvId, u64)> },
    /// Keeps the session inside the idle timeout; no answer.
    Ping,
    /// The caller started or stopped typing in `conv`. Best sent as a QUIC
    /// datagram; never answered, dropped when not allowed.
    Typing { conv: ConvId, started: bool },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Login(Login),
    /// A proactive logout (`_clientOffline` closeCode 1); the server closes the connection after answering.
    Logout,
    CreateConversation(CreateConversation),
    GetConversation {
        conv: ConvId,
    },
    /// The caller's conversations, most recently active first.
    ListConversations {
        limit: u32,
    },
    /// Signed as an `invite` of the caller alone.
    Join {
        conv: ConvId,
        sig: Option<OpSignature>,
    },
    /// Signed as a `kick` of the caller alone; unsigned is always accepted.
    Leave {
        conv: ConvId,
        sig: Option<OpSignature>,
    },
    /// Signed as an `invite` of `members`.
    AddMembers {
        conv: ConvId,
        members: Vec<String>,
        sig: Option<OpSignature>,
    },
    /// Signed as a `kick` of `members`.
    RemoveMembers {
        conv: ConvId,
        members: Vec<String>,
        sig: Option<OpSignature>,
    },
    /// `attr` is a JSON object as text; it replaces the custom attributes whole.
    UpdateConversation {
        conv: ConvId,
        name: Option<String>,
        attr: Option<String>,
    },
    /// Owner only: make members managers, or take that back.
    SetManagers {
        conv: ConvId,
        add: Vec<String>,
        remove: Vec<String>,
    },
    Mute {
        conv: ConvId,
    },
    Unmute {
        conv: ConvId,
    },
    Send(SendMessage),
    /// Marks the conversation read up to `seq` (the newest message when `None`)
    /// for every device of the caller.
    Read {
        conv: ConvId,
        seq: Option<u64>,
    },
    History(HistoryQuery),
    /// Replaces a message's content and mentions; the sender only.
    EditMessage(EditMessage),
    /// Replaces a message with the recalled marker; the sender only.
    RecallMessage {
        conv: ConvId,
        msg_id: String,
    },
    /// Removes a message from history for everyone; the sender or a manager.
    DeleteMessage {
        conv: ConvId,
        msg_id: String,
    },
    /// Deletes the conversation and its history; the owner or a manager.
    DeleteConversation {
        conv: ConvId,
    },
    /// When the other member last received and read the caller's messages.
    Receipts {
        conv: ConvId,
    },
    /// Drops the caller's will message, if it has one.
    ClearWill,
    /// LeanCloud's `conv/add_shutup`: the owner or a manager mutes members
    /// (they may not send here until unmuted). Answered with `Partial`.
    AddShutup {
        conv: ConvId,
        members: Vec<String>,
    },
    /// LeanCloud's `conv/remove_shutup`. Answered with `Partial`.
    RemoveShutup {
        conv: ConvId,
        members: Vec<String>,
    },
    /// LeanCloud's `conv/query_shutup`: a page of the muted clients, in
    /// client-id order. `limit` 0 means 10; at most 100. Answered with `Clients`.
    QueryShutup {
        conv: ConvId,
        limit: u32,
        next: Option<String>,
    },
    /// LeanCloud's `conv/check_shutup`: which of `members` are muted
    /// (`Clients`, `next` always `None`).
    CheckShutup {
        conv: ConvId,
        members: Vec<String>,
    },
    /// LeanCloud's `blacklist/block`: the owner or a manager blocks clients;
    /// members among them are removed, and none may join or be added until
    /// unblocked. Answered with `Partial`.
    Block {
        conv: ConvId,
        members: Vec<String>,
    },
    /// LeanCloud's `blacklist/unblock`. Answered with `Partial`.
    Unblock {
        conv: ConvId,
        members: Vec<String>,
    },
    /// LeanCloud's `blacklist/query`: a page of the blocked clients, as
    /// `QueryShutup`. Answered with `Clients`.
    QueryBlocked {
        conv: ConvId,
        limit: u32,
        next: Option<String>,
    },
    /// LeanCloud's `blacklist/check_block`: which of `members` are blocked.
    CheckBlocked {
        conv: ConvId,
        members: Vec<String>,
    },
    /// LeanCloud's `conv/member_info_update`: the owner makes a member a
    /// manager or a manager a plain member (the same list `SetManagers`
    /// edits). `Owner` is refused with 5130; the owner's own role never changes.
    SetMemberRole {
        conv: ConvId,
        member: String,
        role: MemberRole,
    },
    /// Every member's role (LeanCloud's `_ConversationMemberInfo` rows).
    /// Answered with `MemberRoles`.
    MemberRoles {
        conv: ConvId,
    },
}

/// LeanCloud's conversation member roles (`ConversationMemberRole`): the
/// owner is the creator, managers are `ConversationInfo::managers`,
/// everyone else is a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberRole {
    Owner,
    Manager,
    Member,
}

impl MemberRole {
    /// LeanCloud's spelling (`Owner`, `Manager`, `Member`).
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Owner => "Owner",
            MemberRole::Manager => "Manager",
            MemberRole::Member => "Member",
        }
    }
}

/// One member and its role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub client: String,
    pub role: MemberRole,
}

/// The clients a batch operation refused for one reason (LeanCloud's
/// `failedPids` entry: an `ErrorCommand` with its `pids`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedClients {
    pub error: ErrorBody,
    pub clients: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditMessage {
    pub conv: ConvId,
    pub msg_id: String,
    pub content: Content,
    pub mention_list: Vec<String>,
    pub mention_all: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Login {
    pub app_id: String,
    pub client_id: String,
    /// Devices sharing a non-empty tag exclude each other (LeanCloud's `<clientId, tag>` rule).
    pub tag: Option<String>,
    /// Names the device whose delivery cursor this session resumes; defaults to the tag, then "default".
    pub device_id: Option<String>,
    /// LeanCloud's `isReconnect`: on a tag conflict the newcomer gives way instead of kicking.
    pub reconnect: bool,
    /// Seconds since the Unix epoch.
    pub timestamp: u64,
    pub nonce: String,
    /// `hex(HMAC-SHA1(master_key, "appid:clientid::timestamp:nonce"))`.
    pub signature: String,
    pub sync: SyncMode,
    /// The push device to bind to this client: an APNs or FCM token, or a
    /// LeanCloud installationId (looked up in that order among the
    /// registrations, `POST /1.1/installations`). Logout unbinds it.
    pub device_token: Option<String>,
}

/// LeanCloud's two offline-sync modes, chosen per login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncMode {
    /// The server pushes up to `sync.push_limit` missed messages per conversation.
    Push,
    /// The server sends `<conversation, unreadCount, lastMessage>` and the client pulls history.
    Pull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConvKind {
    Normal,
    /// No stored member list: the members are whoever is online in it; no offline delivery.
    ChatRoom,
    /// Official accounts and bots; created through the admin API.
    System,
    /// LeanCloud's temporary conversation: fixed members, gone (4323) after
    /// its TTL, which its id carries ([`ConvId::temporary`]).
    Temporary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateConversation {
    /// Other members; the creator is always added.
    pub members: Vec<String>,
    pub name: Option<String>,
    /// JSON object as text.
    pub attr: Option<String>,
    /// Reuse the existing unique conversation with exactly these members.
    pub unique: bool,
    pub kind: ConvKind,
    /// Signed over `members` exactly as sent (see [`OpSignature`]).
    pub sig: Option<OpSignature>,
    /// A temporary conversation's time to live in seconds; `None` is
    /// `limits.temporary_ttl_secs`. Ignored for other kinds.
    pub ttl_secs: Option<u32>,
}

/// LeanCloud's conversation-operation signature: what an app server's
/// signature factory returns, required when `auth.conversation_signatures`
/// (or, for blacklists, `auth.blacklist_signatures`) is on.
/// `signature` is `hex(HMAC-SHA1(master_key, message))`, the message being
/// `appid:clientid:sorted_member_ids:timestamp:nonce` for a create and
/// `appid:clientid:convid:sorted_member_ids:timestamp:nonce:action` for the
/// rest (action `invite`, `kick`, `conversation-block-clients` or
/// `conversation-unblock-clients`); see `crate::auth::conversation_message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpSignature {
    /// Seconds or milliseconds since the Unix epoch (above 10^12 is ms).
    pub timestamp: u64,
    pub nonce: String,
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    Text(String),
    Binary(Vec<u8>),
}

impl Content {
    pub fn len(&self) -> usize {
        match self {
            Content::Text(s) => s.len(),
            Content::Binary(b) => b.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendMessage {
    pub conv: ConvId,
    pub content: Content,
    pub mention_list: Vec<String>,
    pub mention_all: bool,
    pub receipt: bool,
    /// Not stored, not redelivered, reaches only online members.
    pub transient: bool,
    pub will: bool,
    /// Push payload (JSON text), kept with the message for push delivery.
    pub push_data: Option<String>,
    /// Idempotency token: a resend with the same token returns the first answer.
    pub token: Option<String>,
}

impl SendMessage {
    /// A plain text message with every option off.
    pub fn text(conv: ConvId, text: impl Into<String>) -> Self {
        SendMessage {
            conv,
            content: Content::Text(text.into()),
            mention_list: Vec::new(),
            mention_all: false,
            receipt: false,
            transient: false,
            will: false,
            push_data: None,
            token: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Anchor {
    /// The newest end of the conversation.
    Latest,
    /// The oldest end of the conversation.
    Earliest,
    MsgId(String),
    /// Milliseconds since the Unix epoch.
    Timestamp(u64),
    Seq(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// Older than the anchor.
    Before,
    /// Newer than the anchor.
    After,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryQuery {
    pub conv: ConvId,
    pub anchor: Anchor,
    pub direction: Direction,
    /// Whether the anchor message itself is included.
    pub inclusive: bool,
    /// At most `history.max_limit` (1000).
    pub limit: u32,
    /// Only typed messages with this `_lctype` (see `client::typed`).
    pub lctype: Option<i32>,
}

/// Server → client. Responses and events share the stream, so events are
/// seen in the order the server produced them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerFrame {
    Response {
        id: u64,
        result: Result<Reply, ErrorBody>,
    },
    Event(Event),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    LoggedIn {
        /// Server time in milliseconds.
        server_time: u64,
        /// The device id this session acknowledges for.
        device_id: String,
    },
    Ok,
    Conversation(ConversationInfo),
    Conversations(Vec<ConversationInfo>),
    Sent {
        msg_id: String,
        seq: u64,
        timestamp: u64,
        /// True when an idempotency token matched an earlier send.
        duplicate: bool,
    },
    History {
        /// Oldest first.
        messages: Vec<Message>,
        /// More messages lie beyond the returned page in the query's direction.
        more: bool,
    },
    /// An edit or recall: the message as now stored.
    Updated {
        msg: Message,
    },
    /// Milliseconds since the epoch; `None` until it first happened.
    Receipts {
        last_delivered_at: Option<u64>,
        last_read_at: Option<u64>,
    },
    /// A batch that may succeed for some clients only (LeanCloud's
    /// `allowedPids` / `failedPids`): shutup and blacklist changes.
    Partial {
        allowed: Vec<String>,
        failed: Vec<FailedClients>,
    },
    /// A page of client ids; `next` is where the next page starts (`None`
    /// on the last page).
    Clients {
        clients: Vec<String>,
        next: Option<String>,
    },
    /// Every member with its role: the owner first, then managers, then members.
    MemberRoles {
        members: Vec<MemberInfo>,
    },
}

/// A failed request. `code` is LeanCloud's (4xxx) where one exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: u16,
    pub reason: String,
    pub detail: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        ErrorBody {
            code: code as u16,
            reason: code.reason().to_string(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.detail)
    }
}

impl std::error::Error for ErrorBody {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationInfo {
    pub id: ConvId,
    pub kind: ConvKind,
    pub name: Option<String>,
    /// JSON object as text.
    pub attr: Option<String>,
    pub creator: String,
    /// Empty for chat rooms, whose members are not stored.
    pub members: Vec<String>,
    pub managers: Vec<String>,
    /// Whether the caller muted it.
    pub muted: bool,
    pub unique: bool,
    pub created_at: u64,
    pub updated_at: u64,
    pub last_message_at: Option<u64>,
    pub last_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub conv: ConvId,
    pub msg_id: String,
    /// Position in the conversation, from 1, gap-free for stored messages; 0 for transient ones.
    pub seq: u64,
    pub from: String,
    /// Milliseconds since the Unix epoch, never decreasing within a conversation.
    pub timestamp: u64,
    pub content: Content,
    pub mention_list: Vec<String>,
    pub mention_all: bool,
    pub receipt: bool,
    pub transient: bool,
    pub will: bool,
    pub push_data: Option<String>,
    /// Set per receiver: its client id is in `mention_list`, or `mention_all`.
    pub mentioned: bool,
    /// Set per receiver: `mention_all`.
    pub mentioned_all: bool,
    /// When it was last edited or recalled (ms); `None` if never.
    pub updated_at: Option<u64>,
    /// Recalled: `content` is the recalled marker ([`RECALLED_CONTENT`]).
    pub recalled: bool,
}

/// What a recalled message's content becomes: LeanCloud's RecalledMessage
/// type, so LeanCloud-style typed-message code renders it.
pub const RECALLED_CONTENT: &str = r#"{"_lctype":-127}"#;

impl Message {
    /// A stored message with every option off; `msg_id` derived from `(conv, seq)`.
    pub fn new(
        conv: ConvId,
        seq: u64,
        from: impl Into<String>,
        timestamp: u64,
        content: Content,
    ) -> Message {
        Message {
            conv,
            msg_id: msg_id(conv, seq),
            seq,
            from: from.into(),
            timestamp,
            content,
            mention_list: Vec::new(),
            mention_all: false,
            receipt: false,
            transient: false,
            will: false,
            push_data: None,
            mentioned: false,
            mentioned_all: false,
            updated_at: None,
            recalled: false,
        }
    }

    /// This message as `client` receives it: the mention flags are per receiver.
    pub fn for_receiver(mut self, client: &str) -> Message {
        self.mentioned_all = self.mention_all;
        self.mentioned = self.mention_all || self.mention_list.iter().any(|m| m == client);
        self
    }
}

/// Why a message changed. Positive codes come from the app's hooks,
/// negative ones from the server (-4408: keyword filter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: i32,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnreadItem {
    pub conv: ConvId,
    pub count: u64,
    pub last_message: Option<Message>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// A new message, or a redelivery of one this device has not acked.
    Message {
        msg: Message,
        redelivered: bool,
        /// From a chat room: not acknowledged (LeanCloud's SDKs do not ack
        /// them either), never sent again; a room has no offline delivery.
        chat_room: bool,
    },
    /// This device lost its `<clientId, tag>` to a newer login (closeCode 3, 4111).
    Conflict {
        code: u16,
        reason: String,
    },
    /// Pull-mode sync at login: conversations with unread messages.
    Unread {
        items: Vec<UnreadItem>,
    },
    /// Push-mode sync finished; `skipped` counts missed messages beyond the per-conversation limit, left for history.
    SyncDone {
        conversations: u32,
        messages: u32,
        skipped: u64,
    },
    /// Another device of this client read the conversation up to `seq`.
    ReadUpdated {
        conv: ConvId,
        seq: u64,
    },
    MembersJoined {
        conv: ConvId,
        members: Vec<String>,
        by: String,
    },
    MembersLeft {
        conv: ConvId,
        members: Vec<String>,
        by: String,
    },
    /// The caller was added to a conversation.
    Invited {
        conv: ConvId,
        by: String,
    },
    /// The caller was removed from a conversation.
    Kicked {
        conv: ConvId,
        by: String,
    },
    ConversationUpdated {
        conv: ConvId,
        by: String,
        name: Option<String>,
        attr: Option<String>,
    },
    /// The server is closing this connection; the QUIC close carries the same code.
    Closing {
        code: u16,
        reason: String,
    },
    /// LeanCloud's MESSAGE_UPDATE: an edit, or the server or a hook changed
    /// the caller's message (`reason` set then).
    MessageUpdated {
        msg: Message,
        reason: Option<Reason>,
    },
    /// LeanCloud's MESSAGE_RECALL: `msg` carries the recalled marker.
    MessageRecalled {
        msg: Message,
        reason: Option<Reason>,
    },
    /// The message was removed from history.
    MessageDeleted {
        conv: ConvId,
        msg_id: String,
        seq: u64,
        by: String,
    },
    ConversationDeleted {
        conv: ConvId,
        by: String,
    },
    /// Receipt: `by` has received the caller's messages sent up to `at` (ms).
    LastDeliveredAt {
        conv: ConvId,
        by: String,
        at: u64,
    },
    /// Receipt: `by` has read the caller's messages sent up to `at` (ms).
    LastReadAt {
        conv: ConvId,
        by: String,
        at: u64,
    },
    /// `from` started or stopped typing; sent as a datagram when it fits.
    Typing {
        conv: ConvId,
        from: String,
        started: bool,
    },
    /// The login's offline sync (`what`: "messages" or "patches") could not
    /// run, e.g. while the server's store is failing: what was missed is
    /// still in history and comes with the next login's sync. Last in the
    /// enum so earlier variants keep their wire tags.
    SyncSkipped {
        what: String,
        code: u16,
        reason: String,
    },
    /// LeanCloud's `conv/shutuped`: the caller was muted in `conv`.
    Shutuped {
        conv: ConvId,
        by: String,
    },
    /// LeanCloud's `conv/unshutuped`: the caller may send in `conv` again.
    Unshutuped {
        conv: ConvId,
        by: String,
    },
    /// LeanCloud's `conv/members_shutuped`, to everyone in the conversation.
    MembersShutuped {
        conv: ConvId,
        members: Vec<String>,
        by: String,
    },
    /// LeanCloud's `conv/members_unshutuped`.
    MembersUnshutuped {
        conv: ConvId,
        members: Vec<String>,
        by: String,
    },
    /// LeanCloud's `conv/blocked`: the caller was blocked in `conv` (and
    /// removed, with `Kicked`, if it was a member).
    Blocked {
        conv: ConvId,
        by: String,
    },
    /// LeanCloud's `conv/unblocked`.
    Unblocked {
        conv: ConvId,
        by: String,
    },
    /// LeanCloud's `conv/members_blocked`, to everyone left in the conversation.
    MembersBlocked {
        conv: ConvId,
        members: Vec<String>,
        by: String,
    },
    /// LeanCloud's `conv/members_unblocked`.
    MembersUnblocked {
        conv: ConvId,
        members: Vec<String>,
        by: String,
    },
    /// LeanCloud's `conv/member_info_changed`: `member`'s role is now `role`.
    MemberInfoChanged {
        conv: ConvId,
        member: String,
        role: MemberRole,
        by: String,
    },
}
