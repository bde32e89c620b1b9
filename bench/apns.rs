//! The `push` scenario's APNs stand-in: HTTP/2 over TLS on 127.0.0.1:0
//! with a throwaway CA (written for the server's `push.extra_ca_file`),
//! answering 200 to `POST /3/device/<token>` as Apple does. It checks the
//! ES256 provider token against the key it generated, once per distinct
//! token (the server re-signs every 50 minutes, so that is one check per
//! run), checks `apns-topic`, counts requests and TCP connections, and
//! hands each accepted push to a sink the scenario sets.
//!
//! It runs on one worker thread of its own, whose CPU time is read apart
//! from the generator's: decrypting and parsing a push costs about what
//! sending it costs the server, and would otherwise hide in the
//! generator's figure.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::body::Incoming;
use hyper::{Request, Response};
use parking_lot::Mutex;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;

/// The provider token's `iss` and `kid`, and the app's topic.
pub const TEAM: &str = "BENCHTEAM1";
pub const KID: &str = "BENCHKEY01";
pub const TOPIC: &str = "com.example.bench";

/// Largest body read; APNs' own limit is 4096 bytes.
const MAX_BODY: usize = 8192;

/// What the scenario does with each accepted push: (device token, JSON body).
pub type Sink = Arc<dyn Fn(&str, &Value) + Send + Sync>;

/// Counters, the trusted key, and the sink.
struct State {
    connections: AtomicU64,
    requests: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    public_key: Vec<u8>,
    /// Provider tokens already verified: each is checked once.
    verified: Mutex<HashSet<String>>,
    /// The first rejection's reason, for the report.
    first_rejection: Mutex<Option<String>>,
    sink: Mutex<Option<Sink>>,
}

/// What the stand-in saw so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub connections: u64,
    pub requests: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Distinct provider tokens verified.
    pub provider_tokens: u64,
}

/// A running stand-in and the files the server's config names.
pub struct ApnsStandIn {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The throwaway CA, for `push.extra_ca_file`.
    pub ca_file: PathBuf,
    /// The `.p8` key (PKCS#8 P-256 PEM) the server signs provider tokens with.
    pub key_file: PathBuf,
    state: Arc<State>,
    /// The worker thread's id, for its CPU time.
    tids: Arc<Mutex<Vec<libc::pid_t>>>,
    rt: Option<tokio::runtime::Runtime>,
}

impl ApnsStandIn {
    /// Writes the CA and the `.p8` key into `dir`, binds 127.0.0.1:0 and
    /// serves on one thread of its own.
    pub fn start(dir: &Path) -> Result<ApnsStandIn> {
        let ca_key = rcgen::KeyPair::generate().context("CA key")?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tidings-bench APNs stand-in CA");
        let ca = ca_params.self_signed(&ca_key).context("CA certificate")?;
        let leaf_key = rcgen::KeyPair::generate().context("leaf key")?;
        let mut leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?;
        leaf_params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params
            .signed_by(&leaf_key, &ca, &ca_key)
            .context("leaf certificate")?;
        let ca_file = dir.join("apns-ca.pem");
        std::fs::write(&ca_file, ca.pem()).context("writing the CA")?;

        // Apple's `.p8` is a PKCS#8 P-256 key in PEM, which is what rcgen writes.
        let signing =
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("provider key")?;
        let key_file = dir.join(format!("AuthKey_{KID}.p8"));
        std::fs::write(&key_file, signing.serialize_pem()).context("writing the .p8")?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(leaf.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .context("TLS certificate")?;
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let tids: Arc<Mutex<Vec<libc::pid_t>>> = Arc::default();
        let t = tids.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("apns-standin")
            .on_thread_start(move || {
                // SAFETY: gettid has no preconditions.
                t.lock().push(unsafe { libc::gettid() });
            })
            .enable_all()
            .build()
            .context("starting the stand-in's runtime")?;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .context("binding the APNs stand-in")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            public_key: signing.public_key_raw().to_vec(),
            verified: Mutex::new(HashSet::new()),
            first_rejection: Mutex::new(None),
            sink: Mutex::new(None),
        });
        let st = state.clone();
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let _ = tcp.set_nodelay(true);
                st.connections.fetch_add(1, Ordering::Relaxed);
                let (acceptor, st) = (acceptor.clone(), st.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(handle(&st, req).await) }
                    });
                    // Apple allows about 1000 concurrent streams per connection.
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .max_concurrent_streams(1000)
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
                });
            }
        });
        Ok(ApnsStandIn {
            url: format!("https://127.0.0.1:{}", addr.port()),
            ca_file,
            key_file,
            state,
            tids,
            rt: Some(rt),
        })
    }

    /// Where accepted pushes go from now on.
    pub fn set_sink(&self, sink: Sink) {
        *self.state.sink.lock() = Some(sink);
    }

    pub fn counts(&self) -> Counts {
        let s = &self.state;
        Counts {
            connections: s.connections.load(Ordering::Relaxed),
            requests: s.requests.load(Ordering::Relaxed),
            accepted: s.accepted.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            provider_tokens: s.verified.lock().len() as u64,
        }
    }

    pub fn first_rejection(&self) -> Option<String> {
        self.state.first_rejection.lock().clone()
    }

    /// CPU seconds the stand-in's threads used so far.
    pub fn cpu_s(&self) -> f64 {
        self.tids
            .lock()
            .iter()
            .filter_map(|&tid| crate::sys::task_cpu_s(tid))
            .sum()
    }
}

impl Drop for ApnsStandIn {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

fn reply(status: u16, body: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(body.to_owned()));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    r
}

/// Apple's checks of a provider token (ES256, our `kid`, our team as
/// `iss`, `iat` within the hour), done once per distinct token.
fn check_provider_token(st: &State, auth: Option<&str>) -> Result<(), &'static str> {
    let jwt = auth
        .and_then(|a| a.strip_prefix("bearer "))
        .ok_or("MissingProviderToken")?;
    if st.verified.lock().contains(jwt) {
        return Ok(());
    }
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("InvalidProviderToken");
    };
    let decode = |p: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()
    };
    let (Some(header), Some(claims), Ok(sig)) = (decode(h), decode(c), URL_SAFE_NO_PAD.decode(s))
    else {
        return Err("InvalidProviderToken");
    };
    if header["alg"] != "ES256" || header["kid"] != KID || claims["iss"] != TEAM {
        return Err("InvalidProviderToken");
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &st.public_key)
        .verify(format!("{h}.{c}").as_bytes(), &sig)
        .map_err(|_| "InvalidProviderToken")?;
    let now = tidings::util::now_secs();
    let iat = claims["iat"].as_u64().ok_or("InvalidProviderToken")?;
    if iat + 3600 < now {
        return Err("ExpiredProviderToken");
    }
    st.verified.lock().insert(jwt.to_owned());
    Ok(())
}

async fn handle(st: &State, req: Request<Incoming>) -> Response<Body> {
    st.requests.fetch_add(1, Ordering::Relaxed);
    let resp = check_and_take(st, req).await;
    match resp {
        Ok(()) => {
            st.accepted.fetch_add(1, Ordering::Relaxed);
            let mut r = reply(200, "");
            r.headers_mut().insert(
                "apns-id",
                hyper::header::HeaderValue::from_static("00000000-0000-0000-0000-000000000001"),
            );
            r
        }
        Err((status, reason)) => {
            st.rejected.fetch_add(1, Ordering::Relaxed);
            let mut first = st.first_rejection.lock();
            if first.is_none() {
                *first = Some(format!("{status} {reason}"));
            }
            drop(first);
            reply(status, &format!(r#"{{"reason":"{reason}"}}"#))
        }
    }
}

/// Checks what APNs checks, then gives the push to the sink.
async fn check_and_take(st: &State, req: Request<Incoming>) -> Result<(), (u16, &'static str)> {
    if req.method() != hyper::Method::POST {
        return Err((405, "MethodNotAllowed"));
    }
    let token = req
        .uri()
        .path()
        .strip_prefix("/3/device/")
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .ok_or((400, "BadDeviceToken"))?;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    check_provider_token(st, header("authorization")).map_err(|r| (403, r))?;
    if header("apns-topic") != Some(TOPIC) {
        return Err((400, "DeviceTokenNotForTopic"));
    }
    let body = axum::body::to_bytes(Body::new(req.into_body()), MAX_BODY)
        .await
        .map_err(|_| (413, "PayloadTooLarge"))?;
    let json: Value = serde_json::from_slice(&body).map_err(|_| (400, "BadPayload"))?;
    if !json.get("aps").is_some_and(Value::is_object) {
        return Err((400, "PayloadEmpty"));
    }
    let sink = st.sink.lock().clone();
    if let Some(sink) = sink {
        sink(&token, &json);
    }
    Ok(())
}

/// Builds the `[push]` section a spawned server needs to push to `s`.
pub fn push_section(s: &ApnsStandIn, queue_capacity: u64) -> tidings::config::PushSection {
    use tidings::config::{ApnsSection, PushSection};
    PushSection {
        enabled: true,
        extra_ca_file: Some(s.ca_file.clone()),
        queue_capacity,
        max_retries: 3,
        retry_base_ms: 100,
        apns: vec![ApnsSection {
            team_id: TEAM.into(),
            key_id: KID.into(),
            key_file: s.key_file.clone(),
            topic: TOPIC.into(),
            endpoint: s.url.clone(),
            sandbox_endpoint: format!("{}/sandbox", s.url),
            ..ApnsSection::default()
        }],
        ..PushSection::default()
    }
}

/// The config file's text: just `[push]`; the rest comes from the
/// environment as for every spawned server.
pub fn config_toml(push: &tidings::config::PushSection) -> Result<String> {
    #[derive(serde::Serialize)]
    struct File<'a> {
        push: &'a tidings::config::PushSection,
    }
    toml::to_string(&File { push }).map_err(|e| anyhow!("writing the push config: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings::push::{Outcome, Platform, Providers, PushJob};

    fn job(token: &str) -> PushJob {
        PushJob {
            token: token.into(),
            platform: Platform::Ios,
            payload: serde_json::json!({"aps": {"alert": "hi"}, "bench": "00"}),
            sandbox: false,
            team_id: None,
            collapse_id: None,
            expires_at: tidings::util::now_secs() + 3600,
            msg_id: "m".into(),
            conv_id: "c".into(),
            from: "a".into(),
            badge: None,
            apns_priority: None,
            apns_push_type: None,
        }
    }

    /// The server's own APNs client trusts the stand-in's CA, signs with the
    /// `.p8` it wrote, and many concurrent pushes share one connection.
    #[test]
    fn the_servers_apns_client_pushes_through_one_connection() {
        let dir = std::env::temp_dir().join(format!("tb-apns-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = ApnsStandIn::start(&dir).unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        let n = seen.clone();
        s.set_sink(Arc::new(move |token, body| {
            assert_eq!(token, "abcdef01");
            assert_eq!(body["bench"], "00");
            n.fetch_add(1, Ordering::Relaxed);
        }));
        let cfg = push_section(&s, 1000);
        // The config file round-trips through the server's own parser.
        let text = config_toml(&cfg).unwrap();
        let parsed: tidings::config::Config = toml::from_str(&text).unwrap();
        assert_eq!(parsed.push, cfg);

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let p = Providers::new(&cfg).unwrap();
        rt.block_on(async {
            // One push first, so the connection exists before the burst.
            assert_eq!(p.send(&job("abcdef01")).await, Outcome::Delivered);
            let j = job("abcdef01");
            let all = futures_util::future::join_all((0..200).map(|_| p.send(&j))).await;
            assert!(all.iter().all(|o| *o == Outcome::Delivered), "{all:?}");
            let mut bad = job("not-hex");
            bad.token = "zz".into();
            assert!(!matches!(p.send(&bad).await, Outcome::Delivered));
        });
        let c = s.counts();
        assert_eq!(seen.load(Ordering::Relaxed), 201);
        assert_eq!(
            (c.connections, c.accepted, c.rejected, c.provider_tokens),
            (1, 201, 1, 1)
        );
        // Its worker thread's CPU is readable (in 10 ms ticks, so maybe 0 yet).
        let tids = s.tids.lock().clone();
        assert!(!tids.is_empty());
        assert!(tids.iter().all(|&t| crate::sys::task_cpu_s(t).is_some()));
        assert!(s.cpu_s() >= 0.0);
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
