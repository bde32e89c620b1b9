//! Tidings: a self-hosted instant-messaging server over QUIC that follows
//! LeanCloud IM's conventions.
//!
//! # Layout
//!
//! - [`protocol`]: frames, commands, replies, events and LeanCloud's error codes.
//! - [`codec`]: the only user of bincode.
//! - [`transport`]: QUIC endpoints, TLS identity and pinning, length-prefixed framing.
//! - [`auth`]: app credentials and HMAC-SHA1 login signatures.
//! - [`store`]: the only user of sled: trees, key encodings, records, durable flush,
//!   write-behind cursors.
//! - [`conversation`]: the lock-sharded conversation table and membership rules.
//! - [`message`]: the group-commit pipeline that orders, stores and fans out messages.
//! - [`filter`]: keyword filtering (aho-corasick, Unicode case-insensitive).
//! - [`http`]: the outbound HTTP client every caller shares (TLS, proxy and redirect policy).
//! - [`hooks`]: LeanCloud IM hooks over HTTP: before-hook chains and the after-hook outbox.
//! - [`hub`]: the shared state of a running server, handed to every session.
//! - [`session`]: one connection's login, commands, delivery and acks.
//! - [`server`]: start-up, the accept loop and graceful shutdown.
//! - [`admin`]: the admin REST API (LeanCloud's `/1.2/rtm`), `/healthz` and `/metrics`.
//! - [`broadcast`]: TTL'd broadcasts: the online fan-out in bounded steps, the login catch-up, the sweep.
//! - [`sysmsg`]: `_SysMessage`, clients' messages to system conversations: rows, query, webhook worker.
//! - [`metrics`]: process-wide counters and histograms for `/metrics`.
//! - [`client`]: the async client library used by the CLI, tests and bench.
//! - [`config`]: the documented configuration struct.

pub mod admin;
pub mod auth;
pub mod broadcast;
pub mod client;
pub mod wire;
// Kept until the store is merged; see wire::codec.
pub use wire::codec;
pub mod config;
pub mod conversation;
pub mod core;
pub mod filter;
pub mod guard;
pub mod hooks;
pub mod http;
pub mod hub;
pub mod message;
pub mod metrics;
pub mod pipeline;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod session;
pub mod store;
pub mod sysmsg;
pub mod transport;
pub mod util;
