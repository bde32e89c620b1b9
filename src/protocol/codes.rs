//! LeanCloud's error and close codes (see `shared/LEANCLOUD-REFERENCE.md`).
//! A session-level code also closes the QUIC connection with that code.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    AppNotAvailable = 4100,
    DuplicatedLogin = 4101,
    SignatureFailed = 4102,
    InvalidLogin = 4103,
    SessionRequired = 4105,
    ReadTimeout = 4107,
    LoginTimeout = 4108,
    FrameTooLong = 4109,
    SessionConflict = 4111,
    /// A session token (`st`, the LeanCloud door) that is unknown or
    /// expired: the SDK logs in again with a signature.
    SessionTokenExpired = 4112,
    /// More IM clients on one LeanCloud socket than
    /// `gateway.max_clients_per_socket`.
    AppQuotaExceeded = 4113,
    UnparseableRawMsg = 4114,
    KickedByApp = 4115,
    /// A client's sends over `quotas.messages_per_sec` (and its burst).
    MessageSentQuotaExceeded = 4116,
    /// Any other quota or rate limit (`[quotas]`, per-address login limits);
    /// not a LeanCloud code, chosen next to MESSAGE_SENT_QUOTA_EXCEEDED.
    QuotaExceeded = 4117,
    InternalError = 4200,
    SendMessageTimeout = 4201,
    /// Server shutting down; not a LeanCloud code, chosen next to INTERNAL_ERROR.
    ServerShutdown = 4202,
    ConvApiFailed = 4301,
    /// A conversation operation without the valid signature
    /// `auth.conversation_signatures` asks for.
    ConvSignatureFailed = 4302,
    ConvNotFound = 4303,
    ConvFull = 4304,
    ConvRejectedByApp = 4305,
    /// A muted ("shutup") member's send, and a change the caller's role may
    /// not make to that client (e.g. muting the owner). LeanCloud's SDKs
    /// name no narrower code for either.
    ConvNotAllowed = 4308,
    /// Blocked in the conversation: may not join or be added.
    ConvBlacklisted = 4315,
    /// An operation only ordinary conversations have (changing a
    /// temporary conversation's members or attributes).
    NormalConvRequired = 4314,
    /// A temporary conversation past its TTL.
    TemporaryConvExpired = 4323,
    NeedOwner = 4324,
    /// Not a member of the conversation (LeanCloud has no narrower public code).
    InvalidMessagingTarget = 4401,
    MessageRejectedByApp = 4402,
    OwnershipRequired = 4403,
    MessageNotFound = 4404,
    UpdateRejectedByApp = 4405,
    EditDisabled = 4406,
    RecallDisabled = 4407,
    ModifiedByCensorship = 4408,
    /// LeanCloud's OWNER_PROMOTION_NOT_ALLOWED: a role update to Owner.
    OwnerPromotionNotAllowed = 5130,
}

impl ErrorCode {
    pub fn reason(self) -> &'static str {
        use ErrorCode::*;
        match self {
            AppNotAvailable => "APP_NOT_AVAILABLE",
            DuplicatedLogin => "DUPLICATED_LOGIN",
            SignatureFailed => "SIGNATURE_FAILED",
            InvalidLogin => "INVALID_LOGIN",
            SessionRequired => "SESSION_REQUIRED",
            ReadTimeout => "READ_TIMEOUT",
            LoginTimeout => "LOGIN_TIMEOUT",
            FrameTooLong => "FRAME_TOO_LONG",
            SessionConflict => "SESSION_CONFLICT",
            SessionTokenExpired => "SESSION_TOKEN_EXPIRED",
            AppQuotaExceeded => "APP_QUOTA_EXCEEDED",
            UnparseableRawMsg => "UNPARSEABLE_RAW_MSG",
            KickedByApp => "KICKED_BY_APP",
            MessageSentQuotaExceeded => "MESSAGE_SENT_QUOTA_EXCEEDED",
            QuotaExceeded => "QUOTA_EXCEEDED",
            InternalError => "INTERNAL_ERROR",
            SendMessageTimeout => "SEND_MESSAGE_TIMEOUT",
            ServerShutdown => "SERVER_SHUTDOWN",
            ConvApiFailed => "CONVERSATION_API_FAILED",
            ConvSignatureFailed => "CONVERSATION_SIGNATURE_FAILED",
            ConvNotFound => "CONVERSATION_NOT_FOUND",
            ConvFull => "CONVERSATION_FULL",
            ConvRejectedByApp => "CONVERSATION_REJECTED_BY_APP",
            ConvNotAllowed => "CONVERSATION_NOT_ALLOWED",
            ConvBlacklisted => "CONVERSATION_BLACKLISTED",
            NormalConvRequired => "NORMAL_CONVERSATION_REQUIRED",
            TemporaryConvExpired => "TEMPORARY_CONVERSATION_EXPIRED",
            NeedOwner => "CONVERSATION_NEED_OWNER",
            InvalidMessagingTarget => "INVALID_MESSAGING_TARGET",
            MessageRejectedByApp => "MESSAGE_REJECTED_BY_APP",
            OwnershipRequired => "OWNERSHIP_REQUIRED",
            MessageNotFound => "MESSAGE_NOT_FOUND",
            UpdateRejectedByApp => "UPDATE_REJECTED_BY_APP",
            EditDisabled => "MESSAGE_EDIT_DISABLED",
            RecallDisabled => "MESSAGE_RECALL_DISABLED",
            ModifiedByCensorship => "MESSAGE_MODIFIED_BY_CENSORSHIP",
            OwnerPromotionNotAllowed => "OWNER_PROMOTION_NOT_ALLOWED",
        }
    }

    pub fn code(self) -> u16 {
        self as u16
    }
}

/// `_clientOffline` close codes.
pub mod close {
    pub const LOGOUT: u8 = 1;
    pub const CONNECTION_LOST: u8 = 2;
    pub const TAG_CONFLICT: u8 = 3;
    pub const KICKED: u8 = 4;
}
