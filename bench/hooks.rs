//! The `hooks` scenario's local hook endpoint: a no-op LeanEngine-style app
//! server that answers every `POST /1.1/functions/:name` with
//! `{"result":{}}` and counts the calls per hook name. It runs on a small
//! tokio runtime of its own, so it does not take the generator's workers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use parking_lot::Mutex;
use serde_json::{Value, json};

/// Calls per hook name.
type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

pub struct HookServer {
    pub addr: SocketAddr,
    counts: Counts,
    rt: Option<tokio::runtime::Runtime>,
}

impl HookServer {
    /// Binds 127.0.0.1:0 and serves on one worker thread of its own.
    pub fn start() -> Result<HookServer> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("hook-server")
            .enable_all()
            .build()
            .context("starting the hook server's runtime")?;
        let counts = Counts::default();
        let app = Router::new()
            .route("/1.1/functions/{name}", post(answer))
            .with_state(counts.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .context("binding the hook server")?;
        let addr = listener.local_addr()?;
        rt.spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("tidings-bench: hook server: {e}");
            }
        });
        Ok(HookServer {
            addr,
            counts,
            rt: Some(rt),
        })
    }

    /// The base URL to give the server as `TIDINGS_HOOKS_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().clone()
    }

    pub fn calls(&self, name: &str) -> u64 {
        self.counts.lock().get(name).copied().unwrap_or(0)
    }
}

impl Drop for HookServer {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Counts the call and answers as a hook that changes nothing.
async fn answer(
    State(counts): State<Counts>,
    Path(name): Path<String>,
    _body: axum::body::Bytes,
) -> Json<Value> {
    *counts.lock().entry(name).or_insert(0) += 1;
    Json(json!({"result": {}}))
}
