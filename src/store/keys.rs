//! Byte-exact key encodings. Changing any of these is a schema change.

use crate::protocol::ConvId;

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

pub fn read_conv(b: &[u8]) -> Option<ConvId> {
    Some(ConvId(b.try_into().ok()?))
}

pub fn read_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

pub fn read_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.try_into().ok()?))
}
