//! Byte-exact key encodings of every tree (the table in the
//! [`store`](super) docs). Changing any of these is a schema change; the
//! test at the end pins each one byte for byte.

use crate::protocol::ConvId;

// ---- meta ----

/// The one `meta` key: the schema version, a big-endian u32.
pub const SCHEMA: &[u8] = b"schema";

/// A length-prefixed id, so that one id can never be a prefix of another.
pub fn id(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(1 + b.len());
    out.push(b.len().min(255) as u8);
    out.extend_from_slice(&b[..b.len().min(255)]);
    out
}

pub fn membership(client: &str, conv: ConvId) -> Vec<u8> {
    let mut k = id(client);
    k.extend_from_slice(&conv.0);
    k
}

/// Every message key of every conversation starts with this.
pub const MESSAGES: &[u8] = b"m";
/// Every patch key starts with this.
pub const PATCHES: &[u8] = b"u";
/// Every key of the system webhook queue starts with this.
pub const WEBHOOK_QUEUE: &[u8] = b"y";

pub fn message_prefix(conv: ConvId) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = b'm';
    k[1..].copy_from_slice(&conv.0);
    k
}

pub fn message(conv: ConvId, seq: u64) -> [u8; 21] {
    let mut k = [0u8; 21];
    k[..13].copy_from_slice(&message_prefix(conv));
    k[13..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub fn token(client: &str, token: &str) -> Vec<u8> {
    let mut k = vec![b'k'];
    k.extend_from_slice(&id(client));
    k.extend_from_slice(token.as_bytes());
    k
}

/// A patch (edit, recall, delete) at `ms`; time first so a scan from a
/// device's cursor finds what it has not been shown.
pub fn patch(ms: u64, conv: ConvId, seq: u64) -> [u8; 29] {
    let mut k = [0u8; 29];
    k[0] = b'u';
    k[1..9].copy_from_slice(&ms.to_be_bytes());
    k[9..21].copy_from_slice(&conv.0);
    k[21..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub fn read_patch(k: &[u8]) -> Option<(u64, ConvId, u64)> {
    if k.len() != 29 || k[0] != b'u' {
        return None;
    }
    Some((
        read_u64(&k[1..9])?,
        read_conv(&k[9..21])?,
        read_u64(&k[21..])?,
    ))
}

/// A client's message to a system conversation, queued for the webhook.
pub fn webhook(conv: ConvId, seq: u64) -> [u8; 21] {
    let mut k = message(conv, seq);
    k[0] = b'y';
    k
}

pub fn webhook_prefix(conv: ConvId) -> [u8; 13] {
    let mut k = message_prefix(conv);
    k[0] = b'y';
    k
}

pub fn read_webhook(k: &[u8]) -> Option<(ConvId, u64)> {
    if k.len() != 21 || k[0] != b'y' {
        return None;
    }
    Some((read_conv(&k[1..13])?, read_u64(&k[13..])?))
}

pub fn patch_cursor(client: &str, device: &str) -> Vec<u8> {
    let mut k = vec![b'p'];
    k.extend_from_slice(&id(client));
    k.extend_from_slice(&id(device));
    k
}

pub fn receipt(conv: ConvId, client: &str) -> Vec<u8> {
    let mut k = vec![b's'];
    k.extend_from_slice(&conv.0);
    k.extend_from_slice(&id(client));
    k
}

pub fn owed_receipt_prefix(client: &str) -> Vec<u8> {
    let mut k = vec![b'q'];
    k.extend_from_slice(&id(client));
    k
}

pub fn owed_receipt(client: &str, conv: ConvId) -> Vec<u8> {
    let mut k = owed_receipt_prefix(client);
    k.extend_from_slice(&conv.0);
    k
}

pub fn u64_pair(a: u64, b: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&a.to_be_bytes());
    v[8..].copy_from_slice(&b.to_be_bytes());
    v
}

pub fn read_u64_pair(v: &[u8]) -> Option<(u64, u64)> {
    if v.len() != 16 {
        return None;
    }
    Some((read_u64(&v[..8])?, read_u64(&v[8..])?))
}

pub fn device_cursor(client: &str, device: &str, conv: ConvId) -> Vec<u8> {
    let mut k = vec![b'd'];
    k.extend_from_slice(&id(client));
    k.extend_from_slice(&id(device));
    k.extend_from_slice(&conv.0);
    k
}

pub fn read_cursor(client: &str, conv: ConvId) -> Vec<u8> {
    let mut k = vec![b'r'];
    k.extend_from_slice(&id(client));
    k.extend_from_slice(&conv.0);
    k
}

/// Outbox ids big-endian, so the tree iterates in push order.
pub fn outbox(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// A dead letter keeps its outbox id, so an operator can tell records apart
/// across both trees.
pub fn dead_letter(id: u64) -> [u8; 8] {
    outbox(id)
}

// ---- sys ----

const SUBSCRIPTION: u8 = b's';
const ACKED: u8 = b'a';

pub fn subscription_prefix(conv: ConvId) -> [u8; 13] {
    conv_prefix(SUBSCRIPTION, conv)
}

/// The client id is the rest of the key, unprefixed, so subscriptions
/// sort by client id (LeanCloud's subscriber listing pages that way).
pub fn subscription(conv: ConvId, client: &str) -> Vec<u8> {
    let mut k = subscription_prefix(conv).to_vec();
    k.extend_from_slice(client.as_bytes());
    k
}

/// When the webhook took a client's message to a system conversation.
pub fn sys_acked(conv: ConvId, seq: u64) -> [u8; 21] {
    conv_seq(ACKED, conv, seq)
}

pub fn sys_acked_prefix(conv: ConvId) -> [u8; 13] {
    conv_prefix(ACKED, conv)
}

// ---- broadcasts ----

/// The last broadcast id handed out.
pub const NEXT_BROADCAST: &[u8] = b"n";
const BROADCAST: u8 = b'b';
const EXPIRY: u8 = b'e';
const BY_MESSAGE: u8 = b'i';
const BROADCAST_CURSOR: u8 = b'c';

pub fn broadcast(id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = BROADCAST;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

pub fn read_broadcast(k: &[u8]) -> Option<u64> {
    match k.split_first() {
        Some((&BROADCAST, id)) => read_u64(id),
        _ => None,
    }
}

/// Expiry first, so the sweep reads only what has expired.
pub fn broadcast_expiry(valid_till: u64, id: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = EXPIRY;
    k[1..9].copy_from_slice(&valid_till.to_be_bytes());
    k[9..].copy_from_slice(&id.to_be_bytes());
    k
}

/// Below every expiry key: where the sweep starts.
pub fn broadcast_expiry_start() -> Vec<u8> {
    vec![EXPIRY]
}

pub fn read_broadcast_expiry(k: &[u8]) -> Option<(u64, u64)> {
    if k.len() != 17 || k[0] != EXPIRY {
        return None;
    }
    Some((read_u64(&k[1..9])?, read_u64(&k[9..])?))
}

/// The broadcast a message `(conv, seq)` is.
pub fn broadcast_by_message(conv: ConvId, seq: u64) -> [u8; 21] {
    conv_seq(BY_MESSAGE, conv, seq)
}

pub fn broadcast_by_message_prefix(conv: ConvId) -> [u8; 13] {
    conv_prefix(BY_MESSAGE, conv)
}

/// A client's broadcast cursor; the id is length-prefixed like every
/// client id key, so one id is never a prefix of another.
pub fn broadcast_cursor(client: &str) -> Vec<u8> {
    let mut k = vec![BROADCAST_CURSOR];
    k.extend_from_slice(&id(client));
    k
}

// ---- nonces ----

/// `expires(8) nonce`, so expired nonces are a prefix range.
pub fn nonce(nonce: &str, expires: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + nonce.len());
    k.extend_from_slice(&expires.to_be_bytes());
    k.extend_from_slice(nonce.as_bytes());
    k
}

// ---- moderation ----

/// A conversation's blacklist entry: `b` conv(12) client.
pub const BLOCKED: u8 = b'b';
/// A conversation's shutup (muted member) entry: `s` conv(12) client.
pub const SHUTUP: u8 = b's';

/// `tag` conv(12) then the client id's bytes, unprefixed: the prefix is
/// fixed-length, so keys sort by client id within a list, as its pages do.
pub fn moderation(tag: u8, conv: ConvId, client: &str) -> Vec<u8> {
    let mut k = conv_prefix(tag, conv).to_vec();
    k.extend_from_slice(client.as_bytes());
    k
}

pub fn moderation_prefix(tag: u8, conv: ConvId) -> [u8; 13] {
    conv_prefix(tag, conv)
}

/// `(tag, conv, client)` of a `moderation` key.
pub fn read_moderation(k: &[u8]) -> Option<(u8, ConvId, &str)> {
    let tag = *k.first()?;
    if !(tag == BLOCKED || tag == SHUTUP) || k.len() <= 13 {
        return None;
    }
    let client = std::str::from_utf8(&k[13..]).ok()?;
    Some((tag, read_conv(&k[1..13])?, client))
}

// ---- installations ----

/// An installation record: `o` then the objectId's bytes.
pub const INST_RECORD: u8 = b'o';
/// A push token (APNs `deviceToken` or FCM/vendor `registrationId`) to its
/// installation: `t` token → objectId.
pub const INST_TOKEN: u8 = b't';
/// An `installationId` to its installation: `i` installationId → objectId.
pub const INST_IID: u8 = b'i';
/// A client bound to an installation: `c` id(client) objectId → empty.
pub const INST_CLIENT: u8 = b'c';

/// `tag` then the raw bytes: the tags are fixed-length, so one value can
/// never be a prefix of a key of another kind.
fn tagged(tag: u8, s: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + s.len());
    k.push(tag);
    k.extend_from_slice(s.as_bytes());
    k
}

pub fn installation(object_id: &str) -> Vec<u8> {
    tagged(INST_RECORD, object_id)
}

pub fn installation_token(token: &str) -> Vec<u8> {
    tagged(INST_TOKEN, token)
}

pub fn installation_iid(installation_id: &str) -> Vec<u8> {
    tagged(INST_IID, installation_id)
}

/// `c` id(client): the client's length prefix keeps `ab`'s keys out of `a`'s scan.
pub fn installation_client_prefix(client: &str) -> Vec<u8> {
    let mut k = vec![INST_CLIENT];
    k.extend_from_slice(&id(client));
    k
}

pub fn installation_client(client: &str, object_id: &str) -> Vec<u8> {
    let mut k = installation_client_prefix(client);
    k.extend_from_slice(object_id.as_bytes());
    k
}

// ---- shapes and readers ----

/// `tag` conv(12) seq(8).
fn conv_seq(tag: u8, conv: ConvId, seq: u64) -> [u8; 21] {
    let mut k = [0u8; 21];
    k[0] = tag;
    k[1..13].copy_from_slice(&conv.0);
    k[13..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn conv_prefix(tag: u8, conv: ConvId) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = tag;
    k[1..].copy_from_slice(&conv.0);
    k
}

pub fn read_conv(b: &[u8]) -> Option<ConvId> {
    Some(ConvId(b.try_into().ok()?))
}

pub fn read_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

pub fn read_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(b: u8) -> ConvId {
        ConvId([b; 12])
    }

    #[test]
    fn key_encodings_are_byte_exact() {
        let c = conv(0xAB);
        let seq7 = [0, 0, 0, 0, 0, 0, 0, 7];
        assert_eq!(SCHEMA, b"schema");
        assert_eq!(id("Tom"), b"\x03Tom");
        assert_eq!(
            membership("Tom", c),
            [b"\x03Tom".as_slice(), &[0xAB; 12]].concat()
        );
        // log
        assert_eq!(
            message(c, 0x0102),
            *[b"m".as_slice(), &[0xAB; 12], &[0, 0, 0, 0, 0, 0, 1, 2]]
                .concat()
                .as_slice()
        );
        assert_eq!(message_prefix(c)[..], message(c, 0)[..13]);
        assert_eq!(MESSAGES, &message(c, 1)[..1]);
        assert_eq!(token("Tom", "t1"), b"k\x03Tomt1");
        assert_eq!(
            patch(0x0102, c, 7).as_slice(),
            [
                b"u".as_slice(),
                &[0, 0, 0, 0, 0, 0, 1, 2],
                &[0xAB; 12],
                &[0, 0, 0, 0, 0, 0, 0, 7]
            ]
            .concat()
        );
        assert_eq!(PATCHES, &patch(1, c, 1)[..1]);
        assert_eq!(read_patch(&patch(9, c, 7)), Some((9, c, 7)));
        assert_eq!(webhook(c, 7)[0], b'y');
        assert_eq!(webhook(c, 7)[1..], message(c, 7)[1..]);
        assert_eq!(webhook_prefix(c)[..], webhook(c, 7)[..13]);
        assert_eq!(WEBHOOK_QUEUE, &webhook(c, 1)[..1]);
        assert_eq!(read_webhook(&webhook(c, 7)), Some((c, 7)));
        // cursors
        assert_eq!(
            device_cursor("Tom", "pc", c),
            [b"d\x03Tom\x02pc".as_slice(), &[0xAB; 12]].concat()
        );
        assert_eq!(
            read_cursor("Tom", c),
            [b"r\x03Tom".as_slice(), &[0xAB; 12]].concat()
        );
        assert_eq!(patch_cursor("Tom", "pc"), b"p\x03Tom\x02pc");
        // receipts
        assert_eq!(
            receipt(c, "Tom"),
            [b"s".as_slice(), &[0xAB; 12], b"\x03Tom"].concat()
        );
        assert_eq!(
            owed_receipt("Tom", c),
            [b"q\x03Tom".as_slice(), &[0xAB; 12]].concat()
        );
        assert_eq!(read_u64_pair(&u64_pair(1, 2)), Some((1, 2)));
        // outbox and dead letters
        assert_eq!(outbox(0x0102), [0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(outbox(u64::MAX), [0xFF; 8]);
        assert_eq!(read_u64(&outbox(77)), Some(77));
        assert_eq!(dead_letter(0x0102), [0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(dead_letter(u64::MAX), [0xFF; 8]);
        // sys
        assert_eq!(
            sys_acked(c, 7).as_slice(),
            [b"a".as_slice(), &[0xAB; 12], &seq7].concat()
        );
        assert_eq!(sys_acked_prefix(c)[..], sys_acked(c, 7)[..13]);
        assert_eq!(
            subscription(c, "Tom"),
            [b"s".as_slice(), &[0xAB; 12], b"Tom"].concat()
        );
        assert_eq!(subscription_prefix(c)[..], subscription(c, "Tom")[..13]);
        // broadcasts
        assert_eq!(broadcast(0x0102), *b"b\0\0\0\0\0\0\x01\x02");
        assert_eq!(read_broadcast(&broadcast(77)), Some(77));
        assert_eq!(read_broadcast(b"c\0\0\0\0\0\0\0\x01"), None);
        assert_eq!(
            broadcast_expiry(0x0102, 7).as_slice(),
            [b"e".as_slice(), &[0, 0, 0, 0, 0, 0, 1, 2], &seq7].concat()
        );
        assert_eq!(broadcast_expiry_start(), b"e");
        assert_eq!(read_broadcast_expiry(&broadcast_expiry(9, 7)), Some((9, 7)));
        assert_eq!(read_broadcast_expiry(&broadcast(7)), None);
        assert_eq!(
            broadcast_by_message(c, 7).as_slice(),
            [b"i".as_slice(), &[0xAB; 12], &seq7].concat()
        );
        assert_eq!(
            broadcast_by_message_prefix(c)[..],
            broadcast_by_message(c, 7)[..13]
        );
        assert_eq!(broadcast_cursor("Tom"), b"c\x03Tom");
        assert_eq!(NEXT_BROADCAST, b"n");
        // nonces
        assert_eq!(nonce("ab", 0x0102), b"\0\0\0\0\0\0\x01\x02ab");
        // moderation
        assert_eq!(
            moderation(BLOCKED, c, "Tom"),
            [b"b".as_slice(), &[0xAB; 12], b"Tom"].concat()
        );
        assert_eq!(
            moderation(SHUTUP, c, "Tom"),
            [b"s".as_slice(), &[0xAB; 12], b"Tom"].concat()
        );
        assert_eq!(
            moderation_prefix(SHUTUP, c)[..],
            moderation(SHUTUP, c, "x")[..13]
        );
        assert_eq!(
            read_moderation(&moderation(SHUTUP, c, "Tom")),
            Some((SHUTUP, c, "Tom"))
        );
        assert_eq!(read_moderation(&moderation_prefix(BLOCKED, c)), None);
        assert_eq!(read_moderation(&message(c, 1)), None);
        // installations
        assert_eq!(installation("5f3a"), b"o5f3a");
        assert_eq!(installation_token("ab01"), b"tab01");
        assert_eq!(installation_iid("d41d8"), b"id41d8");
        assert_eq!(installation_client_prefix("Tom"), b"c\x03Tom");
        assert_eq!(installation_client("Tom", "5f3a"), b"c\x03Tom5f3a");
        assert!(!installation_client("Tomy", "x").starts_with(&installation_client_prefix("Tom")));
    }

    #[test]
    fn keys_sort_numerically_across_byte_boundaries() {
        let c = conv(1);
        assert!(message(c, 255) < message(c, 256));
        assert!(message(c, u64::MAX) < message(conv(2), 0));
        assert!(outbox(255) < outbox(256));
        assert!(outbox(u64::MAX - 1) < outbox(u64::MAX));
        assert!(broadcast_expiry(255, u64::MAX) < broadcast_expiry(256, 0));
        assert!(broadcast(255) < broadcast(256));
        assert!(nonce("zz", 255) < nonce("aa", 256));
    }
}
