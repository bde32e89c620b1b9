//! Offline push end to end, the test's side: a real server whose `[push]`
//! points at local stand-ins for APNs, FCM (with Google's OAuth) and a push
//! gateway (`push_mock.rs`), one stand-in per provider so each one's TCP
//! connections can be counted apart; devices registered through the
//! installation REST API as the SDKs do and bound at a real login; bounded
//! waits on what the stand-ins received.
//!
//! Include beside `mod common;` and `#[path = "common/push_mock.rs"] mod
//! push_mock;`.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};
use tidings::client::{Client, Events};
use tidings::config::{Config, FcmSection, PushSection, WebhookFormat};
pub use tidings::util::now_secs;

use crate::common::admin::Admin;
use crate::common::rest::{Rest, android_body, swift_batch};
use crate::common::{TestServer, WAIT, eventually, poll_for, until};
use crate::lc::Lc;
pub use crate::push_mock::{KID, KID2, TEAM, TEAM2, TOPIC};
use crate::push_mock::{PushMock, Recorded, Route};

/// The `[push] template` of these tests: every variable, and the badge
/// counter.
pub const TEMPLATE: &str = r#"{"alert":"New message from ${fromClientId} in ${convId}","badge":"Increment","at":"${timestamp}"}"#;

/// Which providers a server gets.
#[derive(Debug, Clone, Copy)]
pub struct Providers {
    pub apns: bool,
    pub fcm: bool,
    pub webhook: Option<WebhookFormat>,
}

impl Providers {
    /// APNs (two teams) and FCM.
    pub const NATIVE: Providers = Providers {
        apns: true,
        fcm: true,
        webhook: None,
    };

    /// Only a push gateway, which then takes iOS and Android alike.
    pub fn gateway(format: WebhookFormat) -> Providers {
        Providers {
            apns: false,
            fcm: false,
            webhook: Some(format),
        }
    }
}

/// A server with push on, and the stand-ins it talks to.
pub struct PushEnv {
    pub s: TestServer,
    /// APNs, both teams; the sandbox host is its `/sandbox` prefix.
    pub apns: PushMock,
    /// Google's OAuth token endpoint and FCM v1.
    pub fcm: PushMock,
    /// The push gateway (`[push.webhook]`), when configured.
    pub gw: PushMock,
    /// The installation REST API with the app key (what the SDKs use).
    pub app: Rest,
    /// The same with the master key.
    pub master: Rest,
}

/// A lowercase 64-hex APNs device token, distinct per `n`.
pub fn token(n: u32) -> String {
    format!("{n:08x}{}", "ab".repeat(28))
}

/// The JSON object a push payload string holds (FCM's `data.payload`).
pub fn parse(s: &Value) -> Value {
    serde_json::from_str(s.as_str().unwrap_or_else(|| panic!("not a string: {s}")))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

impl PushEnv {
    /// A server with `providers`, [`TEMPLATE`], fast retries and the
    /// gateway door on, changed by `tweak`.
    pub async fn start(providers: Providers, tweak: impl FnOnce(&mut Config)) -> PushEnv {
        let apns = PushMock::start().await;
        let fcm = PushMock::start().await;
        let gw = PushMock::start().await;
        // One bundle of the three stand-ins' CAs for `extra_ca_file`.
        let bundle = apns.dir.path().join("cas.pem");
        let mut pem = String::new();
        for m in [&apns, &fcm, &gw] {
            pem.push_str(&std::fs::read_to_string(&m.ca_file).unwrap());
        }
        std::fs::write(&bundle, pem).unwrap();
        let mut push = PushSection {
            enabled: true,
            template: TEMPLATE.into(),
            extra_ca_file: Some(bundle),
            retry_base_ms: 50,
            max_retries: 3,
            ..PushSection::default()
        };
        if providers.apns {
            push.apns = vec![apns.apns_key(TEAM, KID), apns.apns_key(TEAM2, KID2)];
        }
        if providers.fcm {
            push.fcm = FcmSection {
                service_account_file: Some(fcm.service_account()),
                endpoint: fcm.url.clone(),
            };
        }
        if let Some(format) = providers.webhook {
            push.webhook.format = format;
            push.webhook.url = Some(match format {
                WebhookFormat::Matrix => format!("{}/_matrix/push/v1/notify", gw.url),
                WebhookFormat::Gorush => format!("{}/api/push", gw.url),
            });
        }
        let s = TestServer::start_with(|c| {
            c.gateway.enabled = true;
            c.gateway.listen = "127.0.0.1:0".parse().unwrap();
            c.push = push;
            tweak(c);
        })
        .await;
        let app = Rest::app(&s);
        let master = Rest::master(&s);
        PushEnv {
            s,
            apns,
            fcm,
            gw,
            app,
            master,
        }
    }

    pub fn admin(&self) -> Admin {
        Admin::of(&self.s)
    }

    // ------------------------------------------------------- devices ----

    /// Registers an iPhone as the Swift SDK does (`batch/save`), with
    /// `apnsTeamId` = `team`; its objectId.
    pub async fn register_ios(&self, token: &str, team: &str) -> String {
        let body = swift_batch(token, team, "in-1");
        let (st, body) = self.app.post("/1.1/batch/save", body).await;
        assert_eq!(st, 200, "batch/save: {body}");
        body["in-1"]["objectId"]
            .as_str()
            .unwrap_or_else(|| panic!("no objectId in {body}"))
            .to_owned()
    }

    /// Registers an Android phone as the Java SDK does: the installation,
    /// then its FCM token with a PUT; its objectId.
    pub async fn register_android(&self, iid: &str, registration_id: &str) -> String {
        let (st, body) = self.app.post("/1.1/installations", android_body(iid)).await;
        assert!(st == 201 || st == 200, "installations: {st} {body}");
        let id = body["objectId"].as_str().expect("objectId").to_owned();
        let (st, body) = self
            .app
            .put(
                &format!("/1.1/installations/{id}"),
                json!({"vendor": "fcm", "registrationId": registration_id}),
            )
            .await;
        assert_eq!(st, 200, "PUT installation: {body}");
        id
    }

    /// Logs `client` in over QUIC naming `device` (a token or an
    /// installationId), which binds it.
    pub async fn connect_naming(&self, client: &str, device: &str) -> (Client, Events) {
        let mut opts = self.s.options(client);
        opts.device_token = Some(device.to_owned());
        self.s.connect_with(opts).await
    }

    /// [`PushEnv::connect_naming`], then drops the connection (not a
    /// logout, so the binding stays) and waits until the server has the
    /// client offline.
    pub async fn bind_offline(&self, client: &str, device: &str) {
        let (c, _ev) = self.connect_naming(client, device).await;
        c.abort();
        self.wait_offline(client).await;
    }

    /// An iPhone registered and bound to `client`, who is then offline;
    /// its objectId.
    pub async fn offline_ios(&self, client: &str, token: &str) -> String {
        let id = self.register_ios(token, TEAM).await;
        self.bind_offline(client, token).await;
        id
    }

    /// An Android phone registered and bound to `client`, who is then
    /// offline; its objectId.
    pub async fn offline_android(&self, client: &str, registration_id: &str) -> String {
        let iid = format!("iid-{registration_id}");
        let id = self.register_android(&iid, registration_id).await;
        self.bind_offline(client, &iid).await;
        id
    }

    /// `n` clients `{prefix}{i}` that never logged in (so are offline),
    /// each with an iPhone (token `token(base + i)`) and, if `android`, an
    /// Android phone (`fcm-{prefix}{i}`), registered through REST and bound
    /// in the store as a login naming them would (1000 logins are slow);
    /// the clients.
    pub async fn many_offline(
        &self,
        prefix: &str,
        base: u32,
        n: u32,
        android: bool,
    ) -> Vec<String> {
        use futures_util::StreamExt;
        let app = &self.app;
        futures_util::stream::iter(0..n)
            .map(|i| async move {
                let (st, body) = app
                    .post(
                        "/1.1/installations",
                        json!({"deviceType": "ios", "deviceToken": token(base + i),
                               "apnsTeamId": TEAM}),
                    )
                    .await;
                assert_eq!(st, 201, "{body}");
                if android {
                    let (st, body) = app
                        .post(
                            "/1.1/installations",
                            json!({"deviceType": "android", "installationId": format!("iid-{prefix}{i}"),
                                   "vendor": "fcm", "registrationId": format!("fcm-{prefix}{i}")}),
                        )
                        .await;
                    assert_eq!(st, 201, "{body}");
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
        let store = self.s.running().hub().store.clone();
        let now = tidings::util::now_ms();
        let mut clients = Vec::new();
        for i in 0..n {
            let c = format!("{prefix}{i}");
            let bound = store
                .installation_bind_named(&token(base + i), &c, now)
                .unwrap();
            assert!(bound.is_some(), "{c}'s iPhone");
            if android {
                let bound = store
                    .installation_bind_named(&format!("iid-{prefix}{i}"), &c, now)
                    .unwrap();
                assert!(bound.is_some(), "{c}'s Android phone");
            }
            clients.push(c);
        }
        clients
    }

    pub fn is_online(&self, client: &str) -> bool {
        self.s.running().hub().registry.is_online(client)
    }

    pub async fn wait_offline(&self, client: &str) {
        eventually(&format!("{client} offline"), || !self.is_online(client)).await;
    }

    /// `session/open` on the LeanCloud door naming an iOS `deviceToken`,
    /// as the iOS SDKs do (which binds the device).
    pub async fn lc_open_ios(&self, client: &str, token: &str) -> Lc {
        let mut lc = Lc::to(&self.s).await;
        lc.open_with_device(&self.s, client, Some(token), None)
            .await;
        lc
    }

    /// The installation as the master key's REST GET sees it: `None` on 404.
    pub async fn installation(&self, object_id: &str) -> Option<Value> {
        let (st, body) = self
            .master
            .get(&format!("/1.1/installations/{object_id}"))
            .await;
        match st {
            200 => Some(body),
            404 => None,
            _ => panic!("GET installation {object_id}: {st} {body}"),
        }
    }

    /// Waits (bounded) until the registration is gone (404 with the master key).
    pub async fn wait_removed(&self, object_id: &str) {
        until(&format!("installation {object_id} removed"), || async {
            self.installation(object_id).await.is_none()
        })
        .await;
    }

    // ------------------------------------------------------- metrics ----

    /// The `/metrics` text of the admin listener.
    pub async fn metrics(&self) -> String {
        let a = self.admin();
        let body = a.send(a.bare(reqwest::Method::GET, "/metrics")).await;
        body.expect(200)
            .as_str()
            .expect("metrics are text")
            .to_owned()
    }

    /// Polls `/metrics` (bounded by `WAIT`) until `f` takes its text
    /// (`Ok`), and returns what `f` gave; a timeout names `what` and the
    /// last `Err`.
    pub async fn metrics_until<T>(&self, what: &str, f: impl Fn(&str) -> Result<T, String>) -> T {
        poll_for(what, WAIT, || async { f(&self.metrics().await) }).await
    }

    /// Waits until `/metrics` shows each `(provider, result, n)` of
    /// `tidings_push_sent_total`; the text.
    pub async fn wait_metrics(&self, want: &[(&str, &str, f64)]) -> String {
        self.metrics_until("tidings_push_sent_total", |text| {
            let missing: Vec<_> = want
                .iter()
                .filter(|(p, r, n)| {
                    sample(
                        text,
                        "tidings_push_sent_total",
                        &[("provider", p), ("result", r)],
                    ) != Some(*n)
                })
                .collect();
            if missing.is_empty() {
                return Ok(text.to_owned());
            }
            Err(format!(
                "metrics never showed {missing:?}:\n{}",
                text.lines()
                    .filter(|l| l.contains("push"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ))
        })
        .await
    }
}

/// The value of `name` with (at least) `labels` in a Prometheus text, if
/// such a sample is there.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            return None;
        }
        let have: Vec<(&str, &str)> = rest
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim_matches('"')))
            .collect();
        labels
            .iter()
            .all(|l| have.contains(l))
            .then(|| value.parse().ok())
            .flatten()
    })
}

// ------------------------------------------------ what the stand-ins got ----

/// The APNs requests (production and sandbox) for `token`.
pub fn apns_to(mock: &PushMock, token: &str) -> Vec<Recorded> {
    let suffix = format!("/3/device/{token}");
    let mut v = mock.requests(Route::Apns);
    v.extend(mock.requests(Route::ApnsSandbox));
    v.retain(|r| r.path.ends_with(&suffix));
    v
}

/// The FCM requests for `registration_id`.
pub fn fcm_to(mock: &PushMock, registration_id: &str) -> Vec<Recorded> {
    let mut v = mock.requests(Route::Fcm);
    v.retain(|r| r.json()["message"]["token"] == registration_id);
    v
}

/// Waits (bounded by `WAIT`) until `f` gives at least `n` requests, and
/// returns them; panics naming `what` and what was there.
pub async fn wait_n(what: &str, n: usize, f: impl Fn() -> Vec<Recorded>) -> Vec<Recorded> {
    wait_n_for(what, n, WAIT, f).await
}

/// [`wait_n`] with its own bound.
pub async fn wait_n_for(
    what: &str,
    n: usize,
    bound: Duration,
    f: impl Fn() -> Vec<Recorded>,
) -> Vec<Recorded> {
    poll_for(&format!("{n} {what}"), bound, || {
        let got = f();
        let enough = if got.len() >= n {
            Ok(got)
        } else {
            Err(format!(
                "got {}: {:?}",
                got.len(),
                got.iter()
                    .map(|r| (
                        r.path.clone(),
                        String::from_utf8_lossy(&r.body).into_owned()
                    ))
                    .collect::<Vec<_>>()
            ))
        };
        std::future::ready(enough)
    })
    .await
}

/// The APNs pushes `token` got, waiting for at least `n`.
pub async fn apns_n(mock: &PushMock, token: &str, n: usize) -> Vec<Recorded> {
    wait_n(&format!("APNs pushes to {token}"), n, || {
        apns_to(mock, token)
    })
    .await
}

/// The FCM pushes `registration_id` got, waiting for at least `n`.
pub async fn fcm_n(mock: &PushMock, registration_id: &str, n: usize) -> Vec<Recorded> {
    wait_n(&format!("FCM pushes to {registration_id}"), n, || {
        fcm_to(mock, registration_id)
    })
    .await
}
