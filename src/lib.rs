//! Tidings: a self-hosted instant-messaging server over QUIC that follows
//! LeanCloud IM's conventions.
//!
//! # Layout: follow one message
//!
//! 1. [`server`] accepts a QUIC connection ([`transport`]) and gives it to
//!    the QUIC door, [`session::run`], which reads length-prefixed frames
//!    ([`wire::frame`], [`wire::codec`]) as [`protocol::ClientFrame`]s.
//! 2. [`session`]'s engine logs the client in, then each request goes
//!    through its dispatch table to a feature; a send joins its
//!    conversation's send lane, which keeps one conversation's sends in order.
//! 3. [`message`]`::send` validates ([`core::validate`]), runs the
//!    `_messageReceived` hook ([`hooks`]) and the keyword filter
//!    ([`filter`]), and submits a draft to the [`pipeline`].
//! 4. [`pipeline`]'s commit thread plans a group ([`core::ordering`]:
//!    seqs, timestamps, idempotency tokens, patches), writes and flushes it
//!    to the [`store`], then answers the senders.
//! 5. Its fan-out finds the audience ([`core::conversation`]), encodes each
//!    frame once ([`core::outbound`]) and hands it to the online devices
//!    through the [`registry`]; after-hooks go to the hook outbox, and
//!    members with no online device get an offline push through [`notify`]
//!    (content rules, per-provider queues) and [`push`] (the providers).
//! 6. The receiving session writes it and tracks it until acked
//!    ([`core::delivery`]), resending it from the log after the ack timeout.
//!    A chat room's message is neither acked nor tracked: its own fan-out
//!    thread hands it straight to each QUIC connection's writer.
//! 7. The receiver's ack moves its device cursor ([`store`]) and the
//!    sender's delivery receipt ([`core::receipts`], [`message`]).
//!
//! Around that path: [`conversation`] (create, members, settings, system
//! conversations), [`broadcast`] (TTL'd broadcasts), [`sysmsg`]
//! (`_SysMessage`), [`admin`] (the `/1.2/rtm` REST API, `/healthz`,
//! `/metrics`), [`guard`] (quotas and per-address limits), [`auth`]
//! (signatures), [`http`] (the one outbound HTTP client), [`push`] (APNs,
//! FCM and push-gateway providers, on their own HTTP/2 clients), [`metrics`],
//! [`config`], [`util`]. [`hub`] only holds the handles every feature
//! shares. [`client`] is the client library the CLI, tests and bench use.
//!
//! # The layer rule
//!
//! Imports point down only: doors (`server`, `admin`, `session`) →
//! features (`broadcast`, `sysmsg`, `message`, `conversation`) → `hub` →
//! runtime services (`pipeline`, `notify`, `registry`) → the sans-IO `core` →
//! adapters (`hooks`, `push`, `guard`, `transport`, `auth`, `store`, `filter`,
//! `http`, `metrics`) → vocabulary (`config`, `wire`, `protocol`, `util`).
//! `tests/layers.rs` enforces it; `docs/ARCHITECTURE.md` explains it.

pub mod admin;
pub mod auth;
pub mod broadcast;
pub mod client;
pub mod config;
pub mod conversation;
pub mod core;
pub mod filter;
pub mod gateway;
pub mod guard;
pub mod hooks;
pub mod http;
pub mod hub;
pub mod message;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod protocol;
pub mod push;
pub mod registry;
pub mod server;
pub mod session;
pub mod store;
pub mod sysmsg;
pub mod transport;
pub mod util;
pub mod wire;
