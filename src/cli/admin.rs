//! `tidings admin …`: the admin REST API from the command line, so an
//! operator needs no curl. The API's address and the credentials come from
//! the local server's data dir (`admin.addr`, `credentials.json`) unless
//! given; answers print as JSON lines, one per row for listings.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use reqwest::Method;
use serde_json::{Map, Value, json};
use tidings::admin::ADDR_FILE;
use tidings::auth::{CREDENTIALS_FILE, Credentials};
use tidings::config::{Config, duration};

use super::connect::Secret;
use super::output::emit;

/// An operator's call should fail fast when the server is not there.
const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub cmd: AdminCommand,
}

/// Where the API is and how to authenticate.
#[derive(Debug, clap::Args)]
pub struct Conn {
    /// Base URL of the admin API. Default: http://<data-dir>/admin.addr's address, else the config's admin.listen.
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// Application id. Default: the config's, else <data-dir>/credentials.json's.
    #[arg(long, global = true, value_name = "ID")]
    pub app_id: Option<String>,
    /// Master key. Default: the config's, else <data-dir>/credentials.json's.
    #[arg(long, global = true, value_name = "KEY")]
    pub master_key: Option<Secret>,
    /// Data dir of the local server, where the defaults above are looked up.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// System (service) conversations: official accounts and bots.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Broadcasts with a TTL: to every client, or to a system conversation's subscribers.
    #[command(subcommand)]
    Broadcast(BroadcastCommand),
    /// Clients' messages to system conversations (_SysMessage rows), oldest first.
    SysMessages(SysMessagesArgs),
    /// Message history as JSON lines, newest first (see --reversed).
    History(HistoryArgs),
    /// Replace a sent message's text in its sender's name; prints
    /// {"msg-id", "timestamp", "patch-timestamp"}.
    Edit {
        #[command(flatten)]
        msg: SentMessage,
        /// The new text (JSON text for typed messages).
        text: String,
    },
    /// Recall a sent message in its sender's name.
    Recall {
        #[command(flatten)]
        msg: SentMessage,
    },
    /// A client's unread messages: {"count"}.
    Unread {
        client: String,
        /// Only in this conversation.
        #[arg(long, value_name = "ID")]
        conv: Option<String>,
    },
    /// Whether a client is online, and on which devices.
    Online { client: String },
    /// Close every device of a client (4115 KICKED_BY_APP).
    Kick {
        client: String,
        /// Shown to the client; at most 20 characters.
        #[arg(long)]
        reason: Option<String>,
    },
    /// A client's registered push devices (installations bound at login).
    Devices { client: String },
    /// Send a test push to every device of a client, one attempt each, and
    /// print what each provider answered.
    Push {
        client: String,
        /// The push payload, a LeanCloud JSON object such as
        /// '{"alert":"hello","badge":"Increment"}'. Default: the [push] template.
        #[arg(long, value_name = "JSON", conflicts_with = "alert")]
        data: Option<String>,
        /// Shorthand for --data '{"alert": TEXT}'.
        #[arg(long, value_name = "TEXT")]
        alert: Option<String>,
    },
    /// Online and daily user counts.
    Stats,
    /// The Prometheus metrics, as text.
    Metrics,
    /// Exits 0 when the server is healthy.
    Health,
}

/// A sent message, named for the app's edit or recall.
#[derive(Debug, clap::Args)]
pub struct SentMessage {
    /// Its conversation (any kind).
    #[arg(long, value_name = "ID")]
    conv: String,
    /// The message's sender.
    #[arg(long, value_name = "CLIENT_ID")]
    from: String,
    /// Message ids may start with '-' (URL-safe base64).
    #[arg(value_name = "MSG_ID", allow_hyphen_values = true)]
    msg_id: String,
}

impl SentMessage {
    fn path(&self) -> String {
        format!(
            "/1.2/rtm/conversations/{}/messages/{}",
            seg(&self.conv),
            seg(&self.msg_id)
        )
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum ServiceCommand {
    /// Create one; prints {"objectId", "createdAt"}.
    Create {
        #[arg(long)]
        name: Option<String>,
        /// Custom attributes, a JSON object.
        #[arg(long, value_name = "JSON")]
        attr: Option<String>,
    },
    /// List them, oldest first.
    List {
        #[arg(long)]
        skip: Option<usize>,
        #[arg(long)]
        limit: Option<usize>,
    },
    Get {
        id: String,
    },
    /// Change the name or the attributes.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// Replaces the attributes: a JSON object.
        #[arg(long, value_name = "JSON")]
        attr: Option<String>,
    },
    /// Delete it with its subscriptions and history.
    Delete {
        id: String,
    },
    Subscribe {
        id: String,
        #[arg(required = true)]
        clients: Vec<String>,
    },
    Unsubscribe {
        id: String,
        #[arg(required = true)]
        clients: Vec<String>,
    },
    /// Subscribers by client id, one JSON line each.
    Subscribers {
        id: String,
        #[arg(long)]
        limit: Option<usize>,
        /// Start after this client id.
        #[arg(long, value_name = "CLIENT_ID")]
        after: Option<String>,
    },
    /// Send to some subscribers; prints {"msg-id", "timestamp"}.
    Send {
        id: String,
        /// The sender shown to the receivers.
        #[arg(long, value_name = "CLIENT_ID")]
        from: String,
        /// A receiver (up to 20; repeat the flag or separate with commas).
        #[arg(
            long = "to",
            value_name = "CLIENT_ID",
            required = true,
            value_delimiter = ','
        )]
        to: Vec<String>,
        /// Not stored; only receivers online now get it.
        #[arg(long)]
        transient: bool,
        /// Push payload, a JSON object.
        #[arg(long, value_name = "JSON")]
        push_data: Option<String>,
        /// Message text (JSON text for typed messages).
        text: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum BroadcastCommand {
    /// Send one; prints {"msg-id", "timestamp"}.
    Send {
        /// The system conversation it belongs to (its history shows it).
        #[arg(long, value_name = "ID")]
        conv: String,
        /// The sender shown to the receivers.
        #[arg(long, value_name = "CLIENT_ID")]
        from: String,
        /// Only the conversation's subscribers (default: every client).
        #[arg(long)]
        subscribers: bool,
        /// Expiry, ms since the epoch (default and at most a month ahead).
        #[arg(long, value_name = "MS", conflicts_with = "ttl")]
        valid_till: Option<u64>,
        /// Expiry from now: seconds (3600) or a duration (1h, 30m).
        #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
        ttl: Option<Duration>,
        /// Not stored: only the clients online now get it.
        #[arg(long, conflicts_with = "subscribers")]
        transient: bool,
        /// Push payload: a JSON object, or an alert text.
        #[arg(long, value_name = "JSON|TEXT")]
        push: Option<String>,
        /// Message text (JSON text for typed messages).
        text: String,
    },
    /// The unexpired ones, newest first.
    List {
        /// Only this system conversation's.
        #[arg(long, value_name = "ID")]
        conv: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        skip: Option<usize>,
    },
    /// Stop one: nobody gets it at login any more (it stays in history).
    Delete {
        /// Message ids may start with '-' (URL-safe base64).
        #[arg(value_name = "MSG_ID", allow_hyphen_values = true)]
        msg_id: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct SysMessagesArgs {
    /// Only this system conversation's.
    #[arg(long, value_name = "ID")]
    pub conv: Option<String>,
    /// Only this client's.
    #[arg(long, value_name = "CLIENT_ID")]
    pub from: Option<String>,
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub skip: Option<usize>,
    /// Newest first.
    #[arg(long)]
    pub newest_first: bool,
}

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("whose").required(true).args(["conv", "client", "service", "all"]))]
pub struct HistoryArgs {
    /// Every conversation's messages (the whole app).
    #[arg(long)]
    pub all: bool,
    /// A conversation's messages.
    #[arg(long, value_name = "ID")]
    pub conv: Option<String>,
    /// What a client sent.
    #[arg(long, value_name = "CLIENT_ID")]
    pub client: Option<String>,
    /// What a system conversation sent one subscriber (with --subscriber).
    #[arg(long, value_name = "ID", requires = "subscriber")]
    pub service: Option<String>,
    #[arg(long, value_name = "CLIENT_ID", requires = "service")]
    pub subscriber: Option<String>,
    #[arg(long)]
    pub limit: Option<usize>,
    /// Oldest first.
    #[arg(long)]
    pub reversed: bool,
    /// Start at this message (LeanCloud's msgid).
    #[arg(long, value_name = "MSGID", allow_hyphen_values = true)]
    pub msgid: Option<String>,
    /// Start at this time, ms (LeanCloud's timestamp).
    #[arg(long, value_name = "MS")]
    pub timestamp: Option<u64>,
    /// Stop at this message.
    #[arg(long, value_name = "MSGID", allow_hyphen_values = true)]
    pub till_msgid: Option<String>,
    /// Stop at this time, ms.
    #[arg(long, value_name = "MS")]
    pub till_timestamp: Option<u64>,
    #[arg(long)]
    pub include_start: bool,
    #[arg(long)]
    pub include_stop: bool,
}

pub async fn run(args: AdminArgs, config: &Config) -> anyhow::Result<()> {
    let api = Api::new(&args.conn, config)?;
    match args.cmd {
        AdminCommand::Service(cmd) => service(&api, cmd).await,
        AdminCommand::Broadcast(cmd) => broadcast(&api, cmd).await,
        AdminCommand::SysMessages(a) => sys_messages(&api, a).await,
        AdminCommand::History(h) => history(&api, h).await,
        AdminCommand::Edit { msg, text } => {
            let body = json!({"from_client": msg.from, "message": text});
            emit(&api.call(Method::PUT, &msg.path(), Some(body)).await?)
        }
        AdminCommand::Recall { msg } => {
            let path = format!("{}/recall", msg.path());
            let body = json!({"from_client": msg.from});
            emit(&api.call(Method::PUT, &path, Some(body)).await?)
        }
        AdminCommand::Unread { client, conv } => {
            let q = query(&[("conv_id", conv)]);
            let path = format!("/1.2/rtm/clients/{}/unread-count{q}", seg(&client));
            emit(&api.call(Method::GET, &path, None).await?)
        }
        AdminCommand::Online { client } => {
            let path = format!("/1.2/rtm/clients/{}/online", seg(&client));
            emit(&api.call(Method::GET, &path, None).await?)
        }
        AdminCommand::Kick { client, reason } => {
            let path = format!("/1.2/rtm/clients/{}/kick", seg(&client));
            let body = reason.map_or_else(|| json!({}), |r| json!({ "reason": r }));
            emit(&api.call(Method::POST, &path, Some(body)).await?)
        }
        AdminCommand::Devices { client } => {
            let path = format!("/1.2/rtm/clients/{}/devices", seg(&client));
            emit(&api.call(Method::GET, &path, None).await?)
        }
        AdminCommand::Push {
            client,
            data,
            alert,
        } => {
            let path = format!("/1.2/rtm/clients/{}/push", seg(&client));
            let body = match (data, alert) {
                (Some(d), _) => object("--data", &d)?,
                (None, Some(a)) => json!({ "alert": a }),
                (None, None) => json!({}),
            };
            emit(&api.call(Method::POST, &path, Some(body)).await?)
        }
        AdminCommand::Stats => emit(&api.call(Method::GET, "/1.2/rtm/stats", None).await?),
        AdminCommand::Metrics => {
            let text = api.text("/metrics").await?;
            print!("{text}");
            Ok(())
        }
        AdminCommand::Health => emit(&api.call(Method::GET, "/healthz", None).await?),
    }
}

fn object(flag: &str, text: &str) -> anyhow::Result<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => bail!("{flag} must be a JSON object"),
    }
}

async fn service(api: &Api, cmd: ServiceCommand) -> anyhow::Result<()> {
    const SC: &str = "/1.2/rtm/service-conversations";
    match cmd {
        ServiceCommand::Create { name, attr } => {
            let mut body = Map::new();
            if let Some(n) = name {
                body.insert("name".into(), Value::String(n));
            }
            if let Some(a) = attr {
                body.insert("attr".into(), object("--attr", &a)?);
            }
            emit(
                &api.call(Method::POST, SC, Some(Value::Object(body)))
                    .await?,
            )
        }
        ServiceCommand::List { skip, limit } => {
            let q = query(&[
                ("skip", skip.map(|s| s.to_string())),
                ("limit", limit.map(|l| l.to_string())),
            ]);
            let answer = api.call(Method::GET, &format!("{SC}{q}"), None).await?;
            lines(&answer["results"])
        }
        ServiceCommand::Get { id } => emit(
            &api.call(Method::GET, &format!("{SC}/{}", seg(&id)), None)
                .await?,
        ),
        ServiceCommand::Update { id, name, attr } => {
            let mut body = Map::new();
            if let Some(n) = name {
                body.insert("name".into(), Value::String(n));
            }
            if let Some(a) = attr {
                body.insert("attr".into(), object("--attr", &a)?);
            }
            if body.is_empty() {
                bail!("nothing to update: pass --name or --attr");
            }
            let path = format!("{SC}/{}", seg(&id));
            emit(
                &api.call(Method::PUT, &path, Some(Value::Object(body)))
                    .await?,
            )
        }
        ServiceCommand::Delete { id } => emit(
            &api.call(Method::DELETE, &format!("{SC}/{}", seg(&id)), None)
                .await?,
        ),
        ServiceCommand::Subscribe { id, clients } => {
            let path = format!("{SC}/{}/subscribers", seg(&id));
            for c in clients {
                api.call(Method::POST, &path, Some(json!({ "client_id": c })))
                    .await
                    .with_context(|| format!("subscribing {c}"))?;
                emit(&json!({ "subscribed": c }))?;
            }
            Ok(())
        }
        ServiceCommand::Unsubscribe { id, clients } => {
            for c in clients {
                let path = format!("{SC}/{}/subscribers/{}", seg(&id), seg(&c));
                api.call(Method::DELETE, &path, None)
                    .await
                    .with_context(|| format!("unsubscribing {c}"))?;
                emit(&json!({ "unsubscribed": c }))?;
            }
            Ok(())
        }
        ServiceCommand::Subscribers { id, limit, after } => {
            let q = query(&[
                ("limit", limit.map(|l| l.to_string())),
                ("client_id", after),
            ]);
            let path = format!("{SC}/{}/subscribers{q}", seg(&id));
            lines(&api.call(Method::GET, &path, None).await?)
        }
        ServiceCommand::Send {
            id,
            from,
            to,
            transient,
            push_data,
            text,
        } => {
            let mut body = json!({
                "from_client": from,
                "to_clients": to,
                "message": text,
                "transient": transient,
            });
            if let Some(p) = push_data {
                body["push_data"] = object("--push-data", &p)?;
            }
            let path = format!("{SC}/{}/messages", seg(&id));
            emit(&api.call(Method::POST, &path, Some(body)).await?)
        }
    }
}

async fn broadcast(api: &Api, cmd: BroadcastCommand) -> anyhow::Result<()> {
    match cmd {
        BroadcastCommand::Send {
            conv,
            from,
            subscribers,
            valid_till,
            ttl,
            transient,
            push,
            text,
        } => {
            let mut body = json!({ "from_client": from, "message": text });
            let valid_till = match ttl {
                Some(ttl) => {
                    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                    Some(tidings::util::now_ms().saturating_add(ms))
                }
                None => valid_till,
            };
            if let Some(t) = valid_till {
                body["valid_till"] = json!(t);
            }
            if let Some(p) = push {
                body["push"] = Value::String(p);
            }
            let path = if subscribers {
                format!("/1.2/rtm/service-conversations/{}/broadcasts", seg(&conv))
            } else {
                body["conv_id"] = Value::String(conv);
                body["transient"] = Value::Bool(transient);
                "/1.2/rtm/broadcasts".to_owned()
            };
            emit(&api.call(Method::POST, &path, Some(body)).await?)
        }
        BroadcastCommand::List { conv, limit, skip } => {
            let q = query(&[
                ("conv_id", conv),
                ("limit", limit.map(|l| l.to_string())),
                ("skip", skip.map(|s| s.to_string())),
            ]);
            lines(
                &api.call(Method::GET, &format!("/1.2/rtm/broadcasts{q}"), None)
                    .await?,
            )
        }
        BroadcastCommand::Delete { msg_id } => {
            let path = format!("/1.2/rtm/broadcasts/{}", seg(&msg_id));
            emit(&api.call(Method::DELETE, &path, None).await?)
        }
    }
}

async fn sys_messages(api: &Api, a: SysMessagesArgs) -> anyhow::Result<()> {
    let mut filter = Map::new();
    if let Some(c) = a.conv {
        filter.insert("conv".into(), Value::String(c));
    }
    if let Some(f) = a.from {
        filter.insert("from".into(), Value::String(f));
    }
    let q = query(&[
        (
            "where",
            (!filter.is_empty()).then(|| Value::Object(filter).to_string()),
        ),
        ("limit", a.limit.map(|l| l.to_string())),
        ("skip", a.skip.map(|s| s.to_string())),
        ("order", a.newest_first.then(|| "-createdAt".to_owned())),
    ]);
    let answer = api
        .call(Method::GET, &format!("/1.1/classes/_SysMessage{q}"), None)
        .await?;
    lines(&answer["results"])
}

async fn history(api: &Api, h: HistoryArgs) -> anyhow::Result<()> {
    let path = match (&h.conv, &h.client, &h.service, &h.subscriber) {
        (Some(c), ..) => format!("/1.2/rtm/conversations/{}/messages", seg(c)),
        (None, Some(c), ..) => format!("/1.2/rtm/clients/{}/messages", seg(c)),
        (None, None, Some(s), Some(c)) => format!(
            "/1.2/rtm/service-conversations/{}/subscribers/{}/messages",
            seg(s),
            seg(c)
        ),
        _ if h.all => "/1.2/rtm/messages".to_owned(),
        _ => bail!("pass --all, --conv, --client, or --service with --subscriber"),
    };
    let flag = |b: bool| b.then(|| "true".to_owned());
    let q = query(&[
        ("limit", h.limit.map(|l| l.to_string())),
        ("reversed", flag(h.reversed)),
        ("msgid", h.msgid),
        ("timestamp", h.timestamp.map(|t| t.to_string())),
        ("till_msgid", h.till_msgid),
        ("till_timestamp", h.till_timestamp.map(|t| t.to_string())),
        ("include_start", flag(h.include_start)),
        ("include_stop", flag(h.include_stop)),
    ]);
    lines(&api.call(Method::GET, &format!("{path}{q}"), None).await?)
}

/// Each element of a JSON array on its own line.
fn lines(v: &Value) -> anyhow::Result<()> {
    match v {
        Value::Array(items) => items.iter().try_for_each(emit),
        other => emit(other),
    }
}

/// A path segment, percent-encoded (client ids may hold any character).
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `?k=v&…` of the parameters that are set, or nothing.
fn query(params: &[(&str, Option<String>)]) -> String {
    let set: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", seg(v))))
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!("?{}", set.join("&"))
    }
}

pub(super) struct Api {
    http: reqwest::Client,
    base: String,
    app_id: String,
    master_key: String,
}

impl Api {
    pub(super) fn new(conn: &Conn, config: &Config) -> anyhow::Result<Api> {
        let data_dir = conn
            .data_dir
            .clone()
            .unwrap_or_else(|| config.server.data_dir.clone());
        let base = match &conn.url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", admin_addr(&data_dir, config)?),
        };
        let (app_id, master_key) = credentials(conn, config, &data_dir)?;
        Ok(Api {
            http: http_client()?,
            base,
            app_id,
            master_key,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, String)> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method, &url)
            .header("X-LC-Id", &self.app_id)
            .header("X-LC-Key", format!("{},master", self.master_key));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("calling {url} (is the server running?)"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.context("reading the answer")?;
        Ok((status, text))
    }

    /// The JSON answer of a successful call; an error answer becomes the error.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, text) = self.send(method, path, body).await?;
        let v: Value =
            serde_json::from_str(&text).map_err(|_| anyhow!("HTTP {status}, not JSON: {text}"))?;
        if !(200..300).contains(&status) {
            match (v["code"].as_u64(), v["error"].as_str()) {
                (Some(code), Some(error)) => bail!("HTTP {status}: {code} {error}"),
                _ => bail!("HTTP {status}: {text}"),
            }
        }
        Ok(v)
    }

    async fn text(&self, path: &str) -> anyhow::Result<String> {
        let (status, text) = self.send(Method::GET, path, None).await?;
        if status != 200 {
            bail!("HTTP {status}: {text}");
        }
        Ok(text)
    }
}

/// The running server's admin address from the data dir, else the config's.
fn admin_addr(data_dir: &Path, config: &Config) -> anyhow::Result<SocketAddr> {
    let file = data_dir.join(ADDR_FILE);
    let addr = match std::fs::read_to_string(&file) {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("{} does not hold an address; pass --url", file.display()))?,
        Err(_) => config.admin.listen,
    };
    // A wildcard bind is reached through loopback.
    Ok(match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    })
}

/// Flags first, then the config, then the data dir: the server's precedence.
fn credentials(conn: &Conn, config: &Config, data_dir: &Path) -> anyhow::Result<(String, String)> {
    let stored = || Credentials::load(data_dir).ok();
    let app_id = conn
        .app_id
        .clone()
        .or_else(|| config.auth.app_id.clone())
        .or_else(|| stored().map(|c| c.app_id));
    let key = conn
        .master_key
        .as_ref()
        .map(|k| k.0.clone())
        .or_else(|| config.auth.master_key.clone())
        .or_else(|| stored().map(|c| c.master_key));
    match (app_id, key) {
        (Some(a), Some(k)) => Ok((a, k)),
        _ => bail!(
            "the admin API needs the app id and master key: pass --app-id and --master-key, \
             or start the server once so {} exists (or pass --data-dir)",
            data_dir.join(CREDENTIALS_FILE).display()
        ),
    }
}

/// The server's own HTTP client settings, so an https URL (a TLS proxy in
/// front of the API) works too.
fn http_client() -> anyhow::Result<reqwest::Client> {
    tidings::http::client(TIMEOUT, Some(TIMEOUT)).map_err(|e| anyhow!("HTTP client: {e}"))
}

#[cfg(test)]
mod tests;
