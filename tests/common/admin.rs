//! The admin REST API from a test's side: real HTTP (reqwest) against a
//! `TestServer`'s admin listener, with its app id and master key.

use reqwest::Method;
use serde_json::{Value, json};

use super::{TestServer, WAIT};

/// One answer: the status and the body as JSON (`Value::String` holding the
/// text when it is not JSON, e.g. `/metrics`).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub content_type: String,
}

impl Answer {
    /// The body of a call that must have succeeded with `status`.
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.body);
        self.body
    }

    /// The `{code, error}` of a call that must have failed with `status`.
    pub fn error(self, status: u16) -> (u64, String) {
        assert_eq!(self.status, status, "unexpected answer: {}", self.body);
        let code = self.body["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no code in {}", self.body));
        let error = self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error text in {}", self.body));
        (code, error.to_owned())
    }
}

/// `path?k=v&…`, percent-encoded (reqwest's `query` is a feature we leave off).
pub fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", q.join("&"))
    }
}

pub struct Admin {
    pub http: reqwest::Client,
    pub base: String,
    pub app_id: String,
    pub master_key: String,
}

/// reqwest is built without a default crypto provider; ring is ours.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(super::WAIT)
        .build()
        .expect("HTTP client")
}

impl Admin {
    pub fn of(s: &TestServer) -> Admin {
        let r = s.running();
        let addr = r.admin_addr().expect("admin API on");
        Admin {
            http: http_client(),
            base: format!("http://{addr}"),
            app_id: r.credentials().app_id.clone(),
            master_key: r.credentials().master_key.clone(),
        }
    }

    /// A request with no credentials.
    pub fn bare(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// A request with the master-key headers.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.bare(method, path)
            .header("X-LC-Id", &self.app_id)
            .header("X-LC-Key", format!("{},master", self.master_key))
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let resp = req.send().await.expect("admin API answers");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            body,
            content_type,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.request(Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(Method::POST, path).json(&body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(Method::PUT, path).json(&body)).await
    }

    /// Creates a system conversation; returns its id.
    pub async fn create_service(&self, name: &str) -> String {
        let body = self
            .post("/1.2/rtm/service-conversations", json!({ "name": name }))
            .await
            .expect(201);
        body["objectId"].as_str().expect("objectId").to_owned()
    }

    /// A new service conversation with these subscribers; its id.
    pub async fn service_with(&self, name: &str, subscribers: &[&str]) -> String {
        let id = self.create_service(name).await;
        for c in subscribers {
            self.subscribe(&id, c).await;
        }
        id
    }

    pub async fn subscribe(&self, conv: &str, client: &str) {
        let path = format!("/1.2/rtm/service-conversations/{conv}/subscribers");
        let body = self.post(&path, json!({ "client_id": client })).await;
        assert_eq!(body.expect(200), json!({}));
    }

    /// Sends through `conv` to `to`; returns `(msg-id, timestamp)`.
    pub async fn send_to(&self, conv: &str, from: &str, to: &[&str], text: &str) -> (String, u64) {
        let path = format!("/1.2/rtm/service-conversations/{conv}/messages");
        let body = self
            .post(
                &path,
                json!({ "from_client": from, "to_clients": to, "message": text }),
            )
            .await
            .expect(200);
        (
            body["msg-id"].as_str().expect("msg-id").to_owned(),
            body["timestamp"].as_u64().expect("timestamp"),
        )
    }
    /// A broadcast to `conv`'s subscribers; returns `(msg-id, timestamp)`.
    pub async fn broadcast_to_subscribers(
        &self,
        conv: &str,
        from: &str,
        text: &str,
    ) -> (String, u64) {
        let path = format!("/1.2/rtm/service-conversations/{conv}/broadcasts");
        let body = self
            .post(&path, json!({ "from_client": from, "message": text }))
            .await
            .expect(200);
        (
            body["msg-id"].as_str().expect("msg-id").to_owned(),
            body["timestamp"].as_u64().expect("timestamp"),
        )
    }

    /// A broadcast to every client, belonging to `conv`, with the fields of
    /// `extra` (`valid_till`, `transient`, `push`) added; returns
    /// `(msg-id, timestamp)`.
    pub async fn broadcast(
        &self,
        conv: &str,
        from: &str,
        text: &str,
        extra: Value,
    ) -> (String, u64) {
        let mut body = json!({ "from_client": from, "conv_id": conv, "message": text });
        if let (Value::Object(b), Value::Object(x)) = (&mut body, extra) {
            b.extend(x);
        }
        let body = self.post("/1.2/rtm/broadcasts", body).await.expect(200);
        (
            body["msg-id"].as_str().expect("msg-id").to_owned(),
            body["timestamp"].as_u64().expect("timestamp"),
        )
    }
}

/// Runs `tidings admin --data-dir DIR ARGS…` (the real binary, bounded by
/// `WAIT`); whether it succeeded, its stdout and its stderr.
pub async fn admin_cli(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    data_dir_cli(&["admin"], dir, args).await
}

/// Runs `tidings COMMAND… --data-dir DIR ARGS…`, the real binary (at most
/// `WAIT`); whether it succeeded, its stdout and its stderr.
pub async fn data_dir_cli(
    command: &[&str],
    dir: &std::path::Path,
    args: &[&str],
) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidings"));
    cmd.args(command)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("TIDINGS_CONFIG")
        .kill_on_drop(true);
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("the CLI finishes")
        .expect("the CLI runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
