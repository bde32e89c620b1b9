//! `_SysMessage`: clients' messages to system conversations, as LeanCloud's
//! class of that name shows them (ackAt, bin, conv, data, from, fromIp,
//! msgId, timestamp), the admin API's query over them, and the webhook that
//! carries them to the app (`[system] webhook_url`).
//!
//! They are the log entries of system conversations that have a device
//! (`LogEntry::origin()` is `Origin::Client`): the app's own sends and broadcasts have none. The
//! commit pipeline queues each for the webhook in the atomic batch that
//! stores it (`y` keys, [`Store::webhook_pending`]). The worker takes up to
//! [`BATCH_MAX`] at a time, oldest first per conversation, waits until they
//! are durable (a pipeline barrier) and POSTs them as one JSON array of
//! rows. A failed POST (no 2xx answer within `webhook_timeout_ms`) is
//! retried up to [`RETRIES`] times, after a quarter of the timeout, then
//! half, then all of it; then the batch is given up: logged, counted
//! (`tidings_sys_webhook_given_up_total`) and taken off the queue. One
//! batch at a time keeps each conversation's messages in order. What is
//! still queued at shutdown, a POST awaiting its answer included, goes out
//! after the next start: delivery is at least once. Without a webhook the
//! queue is emptied as it fills; the rows stay queryable.
//!
//! [`Store::webhook_pending`]: crate::store::Store::webhook_pending

mod rows;
mod webhook;

pub use rows::{Filter, query, row};
pub use webhook::{BATCH_MAX, RETRIES, Webhook, WebhookError, backoff, start};
