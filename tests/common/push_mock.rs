//! A local stand-in for Apple's and Google's push servers, and for a push
//! gateway: HTTP/2 over TLS on 127.0.0.1 with a certificate from a test CA
//! that the client trusts through `push.extra_ca_file`.
//!
//! It checks what the real ones check — APNs provider tokens (ES256 with
//! the test's own key), the OAuth assertion (RS256), FCM's bearer token —
//! records every request, counts TCP connections, and answers from a
//! per-route script (200 when the script is empty).
//!
//! Routes: `/3/device/<token>` (APNs production) and
//! `/sandbox/3/device/<token>` (APNs sandbox, so one server plays both),
//! `/token` (OAuth), `/v1/projects/<id>/messages:send` (FCM),
//! `/_matrix/push/v1/notify` and `/api/push` (gateways).

#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use parking_lot::Mutex;
use ring::signature::{ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

/// The APNs teams and key ids [`PushMock::apns_key`] is used with, and the
/// app's topic.
pub const TEAM: &str = "TEAM000001";
pub const KID: &str = "KEY0000001";
pub const TEAM2: &str = "TEAM000002";
pub const KID2: &str = "KEY0000002";
pub const TOPIC: &str = "com.example.app";

/// The service account [`PushMock::service_account`] writes, and its key.
const SA_EMAIL: &str = "push@test-proj.iam.gserviceaccount.com";
const RSA_KEY: &str = include_str!("../fixtures/push_test_rsa_key.pem");

/// The OAuth scope FCM needs.
const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// Which route a request took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Apns,
    ApnsSandbox,
    Token,
    Fcm,
    Matrix,
    Gorush,
    Other,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub route: Route,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The APNs `kid` whose key verified the request's provider token.
    pub kid: Option<String>,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<u64>,
}

impl Reply {
    pub fn new(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.to_owned(),
            retry_after: None,
        }
    }
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

/// What the mock knows and saw.
#[derive(Default)]
pub struct State {
    pub connections: AtomicUsize,
    pub token_requests: AtomicUsize,
    pub requests: Mutex<Vec<Recorded>>,
    scripts: Mutex<HashMap<Route, VecDeque<Reply>>>,
    /// APNs `kid` → (team id, raw P-256 public key).
    apns_keys: Mutex<HashMap<String, (String, Vec<u8>)>>,
    /// The service account's email and RSA public key (PKCS#1 DER).
    oauth: Mutex<Option<(String, Vec<u8>)>>,
    access_tokens: Mutex<HashSet<String>>,
    token_url: Mutex<String>,
    /// Connections must present a client certificate from the test CA
    /// (APNs certificate auth); requests then need no provider token.
    client_auth: bool,
}

/// A running stand-in.
pub struct PushMock {
    pub addr: SocketAddr,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The test CA, for `push.extra_ca_file`.
    pub ca_file: PathBuf,
    pub state: Arc<State>,
    pub dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl PushMock {
    pub async fn start() -> PushMock {
        Self::start_with(false).await
    }

    /// A stand-in for APNs with certificate auth: the TLS handshake
    /// requires a client certificate issued by [`Self::client_cert`].
    pub async fn start_with_client_auth() -> PushMock {
        Self::start_with(true).await
    }

    /// A client certificate from the test CA, written as PEM files
    /// (certificate, key).
    pub fn client_cert(&self, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let cert_path = self.dir.path().join(format!("{name}.crt"));
        let key_path = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    async fn start_with(client_auth: bool) -> PushMock {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tidings push test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        leaf_params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut tls = builder
            .with_single_cert(
                vec![CertificateDer::from(leaf.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("https://127.0.0.1:{}", addr.port());
        let state = Arc::new(State {
            client_auth,
            ..State::default()
        });
        *state.token_url.lock() = format!("{url}/token");
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(handle(&st, req).await) }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .max_concurrent_streams(1000)
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
                });
            }
        });
        PushMock {
            addr,
            url,
            ca_file,
            state,
            dir,
            ca,
            ca_key,
        }
    }

    /// Trusts provider tokens signed by `public_key` (raw P-256) as `kid`
    /// of `team`.
    pub fn trust_apns_key(&self, team: &str, kid: &str, public_key: &[u8]) {
        self.state
            .apns_keys
            .lock()
            .insert(kid.to_owned(), (team.to_owned(), public_key.to_vec()));
    }

    /// Trusts OAuth assertions from `email` signed by `rsa_public`
    /// (PKCS#1 DER).
    pub fn trust_service_account(&self, email: &str, rsa_public: &[u8]) {
        *self.state.oauth.lock() = Some((email.to_owned(), rsa_public.to_vec()));
    }

    /// Writes an Apple-layout `.p8` (PKCS#8 P-256 with its public key), has
    /// the stand-in trust it as `kid` of `team`, and gives the
    /// `[[push.apns]]` section (for [`TOPIC`]) that points here; the
    /// sandbox host is the `/sandbox` prefix.
    pub fn apns_key(&self, team: &str, kid: &str) -> tidings::config::ApnsSection {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let path = self.dir.path().join(format!("AuthKey_{kid}.p8"));
        std::fs::write(&path, key.serialize_pem()).unwrap();
        self.trust_apns_key(team, kid, key.public_key_raw());
        tidings::config::ApnsSection {
            team_id: team.into(),
            key_id: kid.into(),
            key_file: path,
            topic: TOPIC.into(),
            endpoint: self.url.clone(),
            sandbox_endpoint: format!("{}/sandbox", self.url),
            ..tidings::config::ApnsSection::default()
        }
    }

    /// Writes a service-account key file (`[push.fcm]`) whose `token_uri`
    /// is this stand-in, and trusts its key.
    pub fn service_account(&self) -> PathBuf {
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(RSA_KEY.as_bytes())
            .map(|k: rustls::pki_types::PrivatePkcs8KeyDer| k.secret_pkcs8_der().to_vec())
            .unwrap();
        let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
        self.trust_service_account(SA_EMAIL, pair.public().as_ref());
        let path = self.dir.path().join("service-account.json");
        let sa = json!({
            "type": "service_account",
            "project_id": "test-proj",
            "client_email": SA_EMAIL,
            "private_key": RSA_KEY,
            "token_uri": format!("{}/token", self.url),
        });
        std::fs::write(&path, sa.to_string()).unwrap();
        path
    }

    /// Queues answers for `route`, used in order before the default 200.
    pub fn script(&self, route: Route, replies: impl IntoIterator<Item = Reply>) {
        self.state
            .scripts
            .lock()
            .entry(route)
            .or_default()
            .extend(replies);
    }

    /// Every access token issued so far stops working (FCM then answers 401).
    pub fn revoke_access_tokens(&self) {
        self.state.access_tokens.lock().clear();
    }

    pub fn requests(&self, route: Route) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .iter()
            .filter(|r| r.route == route)
            .cloned()
            .collect()
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }
}

fn reply(status: u16, body: impl Into<String>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.into())))
        .unwrap()
}

fn scripted(st: &State, route: Route) -> Option<Response<Full<Bytes>>> {
    let r = st.scripts.lock().get_mut(&route)?.pop_front()?;
    let mut resp = reply(r.status, r.body);
    if let Some(s) = r.retry_after {
        resp.headers_mut()
            .insert("retry-after", s.to_string().parse().unwrap());
    }
    Some(resp)
}

/// The parts of a compact JWS, decoded, with the signed text.
fn split_jwt(jwt: &str) -> Option<(Value, Value, String, Vec<u8>)> {
    let mut parts = jwt.split('.');
    let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
    Some((header, claims, format!("{h}.{c}"), sig))
}

/// Apple's check of a provider token: ES256 by a known key, `iss` that
/// key's team, `iat` within the last hour. The `kid` on success.
fn check_apns_token(st: &State, auth: Option<&str>) -> Result<String, &'static str> {
    let jwt = auth
        .and_then(|a| a.strip_prefix("bearer "))
        .ok_or("MissingProviderToken")?;
    let (header, claims, signed, sig) = split_jwt(jwt).ok_or("InvalidProviderToken")?;
    if header["alg"] != "ES256" {
        return Err("InvalidProviderToken");
    }
    let kid = header["kid"].as_str().ok_or("InvalidProviderToken")?;
    let (team, key) = st
        .apns_keys
        .lock()
        .get(kid)
        .cloned()
        .ok_or("InvalidProviderToken")?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key)
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| "InvalidProviderToken")?;
    if claims["iss"] != team.as_str() {
        return Err("InvalidProviderToken");
    }
    let iat = claims["iat"].as_u64().ok_or("InvalidProviderToken")?;
    if iat + 3600 < now_secs() {
        return Err("ExpiredProviderToken");
    }
    Ok(kid.to_owned())
}

/// Google's check of a jwt-bearer grant: RS256 by the service account's
/// key, its email as `iss`, the FCM scope, this endpoint as `aud`.
fn check_assertion(st: &State, form: &str) -> bool {
    let mut grant = None;
    let mut assertion = None;
    for pair in form.split('&') {
        match pair.split_once('=') {
            Some(("grant_type", v)) => grant = Some(v),
            Some(("assertion", v)) => assertion = Some(v),
            _ => {}
        }
    }
    if grant != Some("urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer") {
        return false;
    }
    let Some((header, claims, signed, sig)) = assertion.and_then(split_jwt) else {
        return false;
    };
    let Some((email, key)) = st.oauth.lock().clone() else {
        return false;
    };
    let now = now_secs();
    header["alg"] == "RS256"
        && UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &key)
            .verify(signed.as_bytes(), &sig)
            .is_ok()
        && claims["iss"] == email.as_str()
        && claims["scope"] == FCM_SCOPE
        && claims["aud"] == st.token_url.lock().as_str()
        && claims["exp"]
            .as_u64()
            .is_some_and(|e| e > now && e <= now + 3600 + 60)
}

async fn handle(st: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => return reply(400, "{}"),
    };
    let route = if path.starts_with("/3/device/") {
        Route::Apns
    } else if path.starts_with("/sandbox/3/device/") {
        Route::ApnsSandbox
    } else if path == "/token" {
        Route::Token
    } else if path.starts_with("/v1/projects/") && path.ends_with("/messages:send") {
        Route::Fcm
    } else if path == "/_matrix/push/v1/notify" {
        Route::Matrix
    } else if path == "/api/push" {
        Route::Gorush
    } else {
        Route::Other
    };
    let mut rec = Recorded {
        route,
        path,
        headers,
        body,
        kid: None,
    };
    let resp = match route {
        Route::Apns | Route::ApnsSandbox if st.client_auth => {
            scripted(st, route).unwrap_or_else(|| reply(200, ""))
        }
        Route::Apns | Route::ApnsSandbox => {
            match check_apns_token(st, rec.header("authorization")) {
                Ok(kid) => {
                    rec.kid = Some(kid);
                    scripted(st, route).unwrap_or_else(|| {
                        let mut r = reply(200, "");
                        r.headers_mut().insert(
                            "apns-id",
                            "00000000-0000-0000-0000-000000000001".parse().unwrap(),
                        );
                        r
                    })
                }
                Err(reason) => reply(403, json!({ "reason": reason }).to_string()),
            }
        }
        Route::Token => {
            st.token_requests.fetch_add(1, Ordering::SeqCst);
            if !check_assertion(st, &String::from_utf8_lossy(&rec.body)) {
                reply(400, r#"{"error":"invalid_grant"}"#)
            } else if let Some(r) = scripted(st, route) {
                r
            } else {
                let n = st.token_requests.load(Ordering::SeqCst);
                let token = format!("ya29.local-{n}");
                st.access_tokens.lock().insert(token.clone());
                reply(
                    200,
                    json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})
                        .to_string(),
                )
            }
        }
        Route::Fcm => {
            let ok = rec
                .header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .is_some_and(|t| st.access_tokens.lock().contains(t));
            if !ok {
                reply(401, r#"{"error":{"code":401,"status":"UNAUTHENTICATED"}}"#)
            } else {
                scripted(st, route)
                    .unwrap_or_else(|| reply(200, r#"{"name":"projects/test-proj/messages/0:1"}"#))
            }
        }
        Route::Matrix => scripted(st, route).unwrap_or_else(|| reply(200, r#"{"rejected":[]}"#)),
        Route::Gorush => scripted(st, route)
            .unwrap_or_else(|| reply(200, r#"{"counts":1,"logs":[],"success":"ok"}"#)),
        Route::Other => reply(404, "{}"),
    };
    st.requests.lock().push(rec);
    resp
}
