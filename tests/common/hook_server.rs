//! A scriptable stand-in for a LeanEngine app, for hook tests: an axum server
//! on 127.0.0.1 that takes `POST /1.1/functions/{name}` (and
//! `/{lane}/1.1/functions/{name}`, so one server can be several endpoints of
//! a chain), records every call into a channel the test awaits with a
//! timeout, and answers as a closure set by the test says.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use parking_lot::RwLock;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::WAIT;

/// One hook call as the server received it.
#[derive(Debug, Clone)]
pub struct HookCall {
    /// The hook's name, the last segment of the URL.
    pub name: String,
    /// The path segment before `/1.1/functions`, empty for the plain route.
    pub lane: String,
    pub headers: HeaderMap,
    /// The request body as JSON, or a JSON string holding it when it is not JSON.
    pub body: Value,
}

impl HookCall {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    pub fn param(&self, key: &str) -> &Value {
        &self.body[key]
    }
}

/// What the server answers to one call.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// Waited before answering (the call is recorded first).
    pub delay: Duration,
}

impl Answer {
    /// LeanEngine's success: HTTP 200 with `{"result": result}`.
    pub fn result(result: Value) -> Answer {
        Answer::raw(200, json!({ "result": result }).to_string())
    }

    /// `{"result": {}}`: go on unchanged.
    pub fn ok() -> Answer {
        Answer::result(json!({}))
    }

    /// `{reject: true, code, detail}`, the conversation hooks' refusal.
    pub fn reject(code: i64, detail: &str) -> Answer {
        Answer::result(json!({ "reject": true, "code": code, "detail": detail }))
    }

    /// Any status and body, taken as is.
    pub fn raw(status: u16, body: impl Into<String>) -> Answer {
        Answer {
            status,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn after(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }
}

type Script = Arc<dyn Fn(&HookCall) -> Answer + Send + Sync>;

#[derive(Clone)]
struct App {
    script: Arc<RwLock<Script>>,
    calls: mpsc::UnboundedSender<HookCall>,
}

pub struct HookServer {
    addr: SocketAddr,
    script: Arc<RwLock<Script>>,
    rx: mpsc::UnboundedReceiver<HookCall>,
    /// Received and not yet taken by a `next*` call, oldest first.
    buffered: VecDeque<HookCall>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HookServer {
    /// A server on a free loopback port that answers `{"result": {}}` to all.
    pub async fn start() -> HookServer {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// A server on `addr` (e.g. a port handed out earlier).
    pub async fn start_on(addr: SocketAddr) -> HookServer {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("hook server binds {addr}: {e}"));
        let addr = listener.local_addr().unwrap();
        let script: Script = Arc::new(|_: &HookCall| Answer::ok());
        let script = Arc::new(RwLock::new(script));
        let (tx, rx) = mpsc::unbounded_channel();
        let app = App {
            script: script.clone(),
            calls: tx,
        };
        let router = Router::new()
            .route("/1.1/functions/{name}", post(handle))
            .route("/{lane}/1.1/functions/{name}", post(handle))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    r#"{"code":1,"error":"not a hook path"}"#,
                )
            })
            .with_state(app);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        HookServer {
            addr,
            script,
            rx,
            buffered: VecDeque::new(),
            task,
        }
    }

    /// Like [`HookServer::start`], answering with `script` from the start.
    pub async fn scripted(
        script: impl Fn(&HookCall) -> Answer + Send + Sync + 'static,
    ) -> HookServer {
        let s = Self::start().await;
        s.set_script(script);
        s
    }

    /// Replaces how calls are answered, from the next call on.
    pub fn set_script(&self, script: impl Fn(&HookCall) -> Answer + Send + Sync + 'static) {
        *self.script.write() = Arc::new(script);
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `hooks.base_url` pointing here.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A full hook URL on lane `lane`, for `[hooks.hook.<name>] urls`.
    pub fn endpoint(&self, lane: &str, hook: &str) -> String {
        format!("http://{}/{lane}/1.1/functions/{hook}", self.addr)
    }

    /// The oldest call to `hook` not yet taken, waiting at most `WAIT`.
    pub async fn next(&mut self, hook: &str) -> HookCall {
        self.next_where(hook, |_| true).await
    }

    /// The oldest call to `hook` matching `pred` not yet taken, waiting at
    /// most `WAIT`. Calls it skips stay for later `next*` calls.
    pub async fn next_where(&mut self, hook: &str, pred: impl Fn(&HookCall) -> bool) -> HookCall {
        let matches = |c: &HookCall| c.name == hook && pred(c);
        if let Some(i) = self.buffered.iter().position(matches) {
            return self.buffered.remove(i).unwrap();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(c)) if matches(&c) => return c,
                Ok(Some(c)) => self.buffered.push_back(c),
                Ok(None) => unreachable!("the server holds the sender"),
                Err(_) => panic!(
                    "no matching {hook} call within {WAIT:?}; got only {:?}",
                    self.buffered
                        .iter()
                        .map(|c| (&c.name, &c.body))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// How many calls to `hook` were received and not yet taken, without
    /// waiting and without taking them.
    pub fn count_now(&mut self, hook: &str) -> usize {
        while let Ok(c) = self.rx.try_recv() {
            self.buffered.push_back(c);
        }
        self.buffered.iter().filter(|c| c.name == hook).count()
    }

    /// Every call received so far and not yet taken, oldest first, without waiting.
    pub fn take_all(&mut self) -> Vec<HookCall> {
        while let Ok(c) = self.rx.try_recv() {
            self.buffered.push_back(c);
        }
        self.buffered.drain(..).collect()
    }
}

async fn handle(
    State(app): State<App>,
    Path(path): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = HookCall {
        name: path.get("name").cloned().unwrap_or_default(),
        lane: path.get("lane").cloned().unwrap_or_default(),
        headers,
        body: serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
    };
    let script = app.script.read().clone();
    let answer = script(&call);
    // Recorded before answering, so a before-hook's call is in the channel
    // by the time the request it held up is answered.
    let _ = app.calls.send(call);
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let status = StatusCode::from_u16(answer.status).expect("valid status");
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        answer.body,
    )
        .into_response()
}
