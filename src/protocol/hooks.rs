//! Hook names: LeanCloud's, plus Skygear Chat's after-event names as aliases
//! so hook code written for either finds its hook.

use crate::protocol::ErrorCode;

/// Every hook Tidings can call. The LeanCloud name is the cloud function's
/// name and the last segment of its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// Before delivery: may change content, bin and toPeers, or drop the message.
    MessageReceived,
    /// After delivery; the answer is ignored.
    MessageSent,
    /// When some receivers are offline, before push: may change offlinePeers,
    /// pushMessage, skip, force.
    ReceiversOffline,
    /// Before an edit or recall is delivered: may change it or drop it.
    MessageUpdate,
    /// Before a conversation is created: may reject it.
    ConversationStart,
    /// After a conversation is created.
    ConversationStarted,
    /// Before members join or are added: may reject it.
    ConversationAdd,
    /// After members joined or were added.
    ConversationAdded,
    /// Before members are removed (not when leaving): may reject it.
    ConversationRemove,
    /// After members left or were removed.
    ConversationRemoved,
    /// Before name, attr or mute change: may change attr and mute, or reject.
    ConversationUpdate,
    /// After a login.
    ClientOnline,
    /// After a logout or a lost connection.
    ClientOffline,
    /// After a message is deleted (Skygear's `after_message_deleted`).
    MessageDeleted,
    /// After a conversation is deleted (Skygear's `after_conversation_deleted`).
    ConversationDeleted,
    /// After a client starts typing (Skygear's `typing_started`).
    TypingStarted,
    /// After an edit or recall is stored (Skygear's `after_message_updated`).
    MessageUpdated,
    /// After name, attr or mute changed (Skygear's `after_conversation_updated`).
    ConversationUpdated,
}

/// Name, Skygear alias, before/after.
const TABLE: [(Hook, &str, Option<&str>, bool); Hook::COUNT] = [
    (Hook::MessageReceived, "_messageReceived", None, true),
    (
        Hook::MessageSent,
        "_messageSent",
        Some("after_message_sent"),
        false,
    ),
    (Hook::ReceiversOffline, "_receiversOffline", None, true),
    (Hook::MessageUpdate, "_messageUpdate", None, true),
    (Hook::ConversationStart, "_conversationStart", None, true),
    (
        Hook::ConversationStarted,
        "_conversationStarted",
        Some("after_conversation_created"),
        false,
    ),
    (Hook::ConversationAdd, "_conversationAdd", None, true),
    (
        Hook::ConversationAdded,
        "_conversationAdded",
        Some("after_users_added_to_conversation"),
        false,
    ),
    (Hook::ConversationRemove, "_conversationRemove", None, true),
    (
        Hook::ConversationRemoved,
        "_conversationRemoved",
        Some("after_users_removed_from_conversation"),
        false,
    ),
    (Hook::ConversationUpdate, "_conversationUpdate", None, true),
    (Hook::ClientOnline, "_clientOnline", None, false),
    (Hook::ClientOffline, "_clientOffline", None, false),
    (
        Hook::MessageDeleted,
        "_messageDeleted",
        Some("after_message_deleted"),
        false,
    ),
    (
        Hook::ConversationDeleted,
        "_conversationDeleted",
        Some("after_conversation_deleted"),
        false,
    ),
    (
        Hook::TypingStarted,
        "_typingStarted",
        Some("typing_started"),
        false,
    ),
    (
        Hook::MessageUpdated,
        "_messageUpdated",
        Some("after_message_updated"),
        false,
    ),
    (
        Hook::ConversationUpdated,
        "_conversationUpdated",
        Some("after_conversation_updated"),
        false,
    ),
];

impl Hook {
    pub const COUNT: usize = 18;

    /// Every hook, in declaration order.
    pub const ALL: [Hook; Hook::COUNT] = {
        let mut all = [Hook::MessageReceived; Hook::COUNT];
        let mut i = 0;
        while i < Hook::COUNT {
            all[i] = TABLE[i].0;
            i += 1;
        }
        all
    };

    /// Position in [`Hook::ALL`], for per-hook arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The LeanCloud name, e.g. `_messageReceived`.
    pub fn name(self) -> &'static str {
        TABLE[self.index()].1
    }

    /// Skygear Chat's name for the same event, if it has one.
    pub fn skygear_alias(self) -> Option<&'static str> {
        TABLE[self.index()].2
    }

    /// A LeanCloud name or a Skygear alias; exact, case-sensitive.
    pub fn from_name(name: &str) -> Option<Hook> {
        TABLE
            .iter()
            .find(|(_, n, alias, _)| *n == name || *alias == Some(name))
            .map(|(h, ..)| *h)
    }

    /// Why `name` is not a hook, for error messages.
    pub fn unknown_reason(name: &str) -> String {
        format!(
            "unknown hook {name:?}; expected one of {}",
            TABLE.iter().map(|t| t.1).collect::<Vec<_>>().join(", ")
        )
    }

    /// Hooks whose answer matters: their endpoints run in order as a chain
    /// while the caller waits. `_receiversOffline` does not hold up delivery
    /// but its answer shapes the push, so it is one of them.
    pub fn is_before(self) -> bool {
        TABLE[self.index()].3
    }

    /// The LeanCloud error a rejection by this hook is reported as, and the
    /// default code when the hook gives none.
    pub fn reject_error(self) -> ErrorCode {
        match self {
            Hook::MessageUpdate => ErrorCode::UpdateRejectedByApp,
            Hook::ConversationStart
            | Hook::ConversationAdd
            | Hook::ConversationRemove
            | Hook::ConversationUpdate => ErrorCode::ConvRejectedByApp,
            _ => ErrorCode::MessageRejectedByApp,
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_declaration_order() {
        for (i, (h, ..)) in TABLE.iter().enumerate() {
            assert_eq!(h.index(), i, "{h:?}");
            assert_eq!(Hook::ALL[i], *h);
        }
    }

    #[test]
    fn names_round_trip_and_aliases_resolve() {
        for h in Hook::ALL {
            assert_eq!(Hook::from_name(h.name()), Some(h));
            if let Some(a) = h.skygear_alias() {
                assert_eq!(Hook::from_name(a), Some(h));
                assert!(!h.is_before(), "Skygear hooks all run after: {h}");
            }
        }
        assert_eq!(
            Hook::from_name("after_message_sent"),
            Some(Hook::MessageSent)
        );
        assert_eq!(
            Hook::from_name("after_conversation_created"),
            Some(Hook::ConversationStarted)
        );
        assert_eq!(
            Hook::from_name("after_users_added_to_conversation"),
            Some(Hook::ConversationAdded)
        );
        assert_eq!(
            Hook::from_name("after_users_removed_from_conversation"),
            Some(Hook::ConversationRemoved)
        );
        assert_eq!(
            Hook::from_name("after_message_deleted"),
            Some(Hook::MessageDeleted)
        );
        assert_eq!(
            Hook::from_name("after_conversation_deleted"),
            Some(Hook::ConversationDeleted)
        );
        assert_eq!(Hook::from_name("typing_started"), Some(Hook::TypingStarted));
        // LeanCloud's before-hooks `_messageUpdate`/`_conversationUpdate`
        // are not these: Skygear's run after the change is stored.
        assert_eq!(
            Hook::from_name("after_message_updated"),
            Some(Hook::MessageUpdated)
        );
        assert_eq!(
            Hook::from_name("after_conversation_updated"),
            Some(Hook::ConversationUpdated)
        );
        assert_eq!(
            Hook::from_name("_messageUpdated"),
            Some(Hook::MessageUpdated)
        );
        assert_eq!(Hook::from_name("messageReceived"), None);
        assert_eq!(Hook::from_name("_MessageReceived"), None);
        assert!(Hook::unknown_reason("_nope").contains("_messageReceived"));
    }

    #[test]
    fn before_hooks_are_the_seven_leancloud_ones() {
        let before: Vec<&str> = Hook::ALL
            .iter()
            .filter(|h| h.is_before())
            .map(|h| h.name())
            .collect();
        assert_eq!(
            before,
            [
                "_messageReceived",
                "_receiversOffline",
                "_messageUpdate",
                "_conversationStart",
                "_conversationAdd",
                "_conversationRemove",
                "_conversationUpdate"
            ]
        );
        assert_eq!(Hook::MessageReceived.reject_error().code(), 4402);
        assert_eq!(Hook::MessageUpdate.reject_error().code(), 4405);
        assert_eq!(Hook::ConversationAdd.reject_error().code(), 4305);
    }
}
