//! Device registration through the LeanCloud door, over real HTTP: the
//! bodies the Android, Swift and JS SDKs send, upserts, channel ops, keys,
//! the master-key calls, the badge counter under concurrency, the binding
//! to a clientId at `session/open` and its removal at `session/close`, a
//! restart, and the idle sweep.

mod common;
#[path = "common/lc.rs"]
#[allow(dead_code)]
mod lc;

use common::rest::{self, Rest, android_body};
use common::*;
use lc::{Lc, cmd, kind};
use serde_json::{Value, json};
use tidings::gateway::proto::{CommandType, OpType};

async fn start() -> TestServer {
    TestServer::start_with(|c| {
        c.gateway.enabled = true;
        c.gateway.listen = "127.0.0.1:0".parse().unwrap();
    })
    .await
}

/// Swift's `batch/save` body, with this file's team.
fn swift_batch(token: &str, internal: &str) -> Value {
    rest::swift_batch(token, "TEAMID1234", internal)
}

#[tokio::test]
async fn the_three_sdks_register_and_saves_upsert() {
    let s = start().await;
    let app = Rest::app(&s);
    let store = &s.running().hub().store;

    // Android: 201 with objectId and createdAt, then a PUT.
    let iid = "0123456789abcdef0123456789abcdef";
    let (st, body) = app.post("/1.1/installations", android_body(iid)).await;
    assert_eq!(st, 201, "{body}");
    let android_id = body["objectId"].as_str().expect("objectId").to_owned();
    assert!(
        body["createdAt"]
            .as_str()
            .expect("createdAt")
            .ends_with('Z')
    );
    let (st, body) = app
        .put(
            &format!("/1.1/installations/{android_id}"),
            json!({"vendor": "fcm", "registrationId": "fcm-token-1", "deviceProfile": "p1"}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert!(body["updatedAt"].is_string());
    let rec = store.installation_by_token("fcm-token-1").unwrap().unwrap();
    assert_eq!(rec.object_id, android_id);
    assert_eq!(rec.installation_id.as_deref(), Some(iid));
    // The same installationId again: the same record.
    let (st, body) = app.post("/1.1/installations", android_body(iid)).await;
    assert_eq!(
        (st, body["objectId"].as_str()),
        (200, Some(android_id.as_str()))
    );

    // Swift: batch/save answers a dictionary keyed by __internalId.
    let token = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    let (st, body) = app
        .post("/1.1/batch/save", swift_batch(token, "in-1"))
        .await;
    assert_eq!(st, 200, "{body}");
    let ios_id = body["in-1"]["objectId"].as_str().expect("keyed").to_owned();
    assert!(body["in-1"]["createdAt"].is_string());
    // ObjC re-sends the record on every launch, uppercase here: an upsert by token.
    let (st, body) = app
        .post("/1.1/batch", {
            let mut b = swift_batch(&token.to_uppercase(), "in-2");
            b["requests"][0]["body"]["channels"] =
                json!({"__op": "AddUnique", "objects": ["news", "sport"]});
            b
        })
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body[0]["success"]["objectId"], ios_id.as_str());
    let rec = store.installation(&ios_id).unwrap().unwrap();
    assert_eq!(rec.channels, vec!["news".to_string(), "sport".into()]);
    assert_eq!(rec.apns_team_id.as_deref(), Some("TEAMID1234"));

    // JS: /1.1/classes/_Installation, then PUT there with channel ops.
    let (st, body) = app
        .post(
            "/1.1/classes/_Installation",
            json!({"deviceType": "web", "installationId": "js-iid", "channels": ["a", "b"], "custom": {"x": 1}}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let js_id = body["objectId"].as_str().expect("objectId").to_owned();
    let path = format!("/1.1/classes/_Installation/{js_id}");
    for op in [
        json!({"__op": "Remove", "objects": ["a"]}),
        json!({"__op": "Add", "objects": ["c"]}),
        json!({"__op": "AddUnique", "objects": ["c", "d"]}),
    ] {
        let (st, body) = app.put(&path, json!({ "channels": op })).await;
        assert_eq!(st, 200, "{body}");
    }
    let (st, got) = app.get(&path).await;
    assert_eq!(st, 200);
    assert_eq!(got["channels"], json!(["b", "c", "d"]));
    assert_eq!(got["custom"], json!({"x": 1}));
    assert_eq!(got["installationId"], "js-iid");

    // Errors in LeanCloud's shape.
    let (st, body) = app
        .put("/1.1/installations/nope", json!({"badge": 1}))
        .await;
    assert_eq!((st, body["code"].as_i64()), (404, Some(101)));
    let (st, body) = app
        .post("/1.1/installations", json!({"deviceToken": "ff"}))
        .await;
    assert_eq!((st, body["code"].as_i64()), (400, Some(135)));
    let (st, body) = app
        .post("/1.1/installations", json!({"deviceType": 3}))
        .await;
    assert_eq!((st, body["code"].as_i64()), (400, Some(111)));
    let (st, body) = app
        .post(
            "/1.1/batch",
            json!({"requests": [{"method": "POST", "path": "/1.1/classes/Post", "body": {}}]}),
        )
        .await;
    assert_eq!(st, 200);
    assert!(body[0]["error"]["code"].is_number(), "{body}");
}

#[tokio::test]
async fn keys_master_calls_and_a_concurrent_badge() {
    let s = start().await;
    let app = Rest::app(&s);
    let master = Rest::master(&s);
    let wrong = Rest::with_key(&s, "not-the-key");

    let (st, body) = wrong.post("/1.1/installations", android_body("k1")).await;
    assert_eq!((st, body["code"].as_i64()), (401, Some(401)));
    let (st, _) = wrong.post("/1.1/batch/save", swift_batch("aa", "x")).await;
    assert_eq!(st, 401);
    // X-LC-Sign with the app key, as the client SDKs send it.
    let c = s.running().credentials();
    let ts = tidings::util::now_ms();
    let sign = {
        use md5::Digest;
        format!(
            "{},{ts}",
            hex::encode(md5::Md5::digest(format!("{ts}{}", c.app_key)))
        )
    };
    let resp = app
        .http
        .post(format!("{}/1.1/installations", app.base))
        .header("X-LC-Id", &c.app_id)
        .header("X-LC-Sign", sign)
        .json(&android_body("k2"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);

    let (_, body) = app.post("/1.1/installations", android_body("k1")).await;
    let id = body["objectId"].as_str().unwrap().to_owned();
    // Listing and deleting need the master key.
    let (st, body) = app.get("/1.1/installations").await;
    assert_eq!((st, body["code"].as_i64()), (403, Some(119)));
    let (st, body) = master.get("/1.1/classes/_Installation").await;
    assert_eq!(st, 200);
    assert_eq!(body["results"].as_array().map(Vec::len), Some(2));
    let (st, _) = app
        .call(
            reqwest::Method::DELETE,
            &format!("/1.1/installations/{id}"),
            None,
        )
        .await;
    assert_eq!(st, 403);

    // 50 concurrent increments: each sees its own value, none is lost.
    let store = s.running().hub().store.clone();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (store, id) = (store.clone(), id.clone());
        tasks.push(tokio::task::spawn_blocking(move || {
            store.installation_badge_increment(&id, 1).unwrap().unwrap()
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=50).collect::<Vec<i64>>());
    // The app resets it on launch, as LeanCloud's iOS guide says.
    let (st, _) = app
        .put(&format!("/1.1/installations/{id}"), json!({"badge": 0}))
        .await;
    assert_eq!(st, 200);
    assert_eq!(store.installation_badge_increment(&id, 1).unwrap(), Some(1));

    let (st, _) = master
        .call(
            reqwest::Method::DELETE,
            &format!("/1.1/installations/{id}"),
            None,
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = app.get(&format!("/1.1/installations/{id}")).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn login_binds_logout_unbinds_and_registrations_survive_a_restart() {
    let mut s = start().await;
    let app = Rest::app(&s);
    let token = "00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff";
    let (st, body) = app.post("/1.1/batch/save", swift_batch(token, "i")).await;
    assert_eq!(st, 200, "{body}");
    let ios_id = body["i"]["objectId"].as_str().unwrap().to_owned();
    let (_, body) = app
        .post("/1.1/installations", android_body("droid-iid"))
        .await;
    let droid_id = body["objectId"].as_str().unwrap().to_owned();

    // iOS: deviceToken in session/open (uppercase, as some apps format it).
    let mut alice = Lc::to(&s).await;
    alice
        .open_with_device(&s, "alice", Some(&token.to_uppercase()), None)
        .await;
    // Android: deviceId = installationId with the bind bit.
    let mut bob = Lc::to(&s).await;
    bob.open_with_device(&s, "bob", None, Some("droid-iid"))
        .await;
    // JS: a random deviceId without the bit binds nothing.
    let mut web = Lc::to(&s).await;
    web.open(&s, "carol", None, false).await;

    let store = s.running().hub().store.clone();
    let ids = |c: &str| -> Vec<String> {
        store
            .installations_of_client(c)
            .unwrap()
            .into_iter()
            .map(|r| r.object_id)
            .collect()
    };
    assert_eq!(ids("alice"), vec![ios_id.clone()]);
    assert_eq!(ids("bob"), vec![droid_id.clone()]);
    assert!(ids("carol").is_empty());

    // A token that arrives after session/open: Swift's report/upload binds it.
    let late = "11ee11ee11ee11ee11ee11ee11ee11ee11ee11ee11ee11ee11ee11ee11ee11ee";
    let (_, body) = app.post("/1.1/batch/save", swift_batch(late, "l")).await;
    let late_id = body["l"]["objectId"].as_str().unwrap().to_owned();
    let mut report = cmd(CommandType::Report, Some(OpType::Upload));
    report.report_message = Some(tidings::gateway::proto::ReportCommand {
        initiative: Some(true),
        r#type: Some("token".into()),
        data: Some(late.into()),
    });
    let answer = web.request(report).await;
    assert_eq!(
        kind(&answer),
        (Some(CommandType::Report), Some(OpType::Uploaded))
    );
    assert_eq!(ids("carol"), vec![late_id]);
    let rec = store.installation(&ios_id).unwrap().unwrap();
    assert!(
        rec.channels.contains(&"alice".to_string()),
        "{:?}",
        rec.channels
    );

    // Logout unbinds (the SDKs' `close`).
    let mut close = cmd(CommandType::Session, Some(OpType::Close));
    close.peer_id = Some("bob".into());
    let closed = bob.request(close).await;
    assert_eq!(
        kind(&closed),
        (Some(CommandType::Session), Some(OpType::Closed))
    );
    assert!(ids("bob").is_empty());
    let rec = store.installation(&droid_id).unwrap().unwrap();
    assert!(!rec.channels.contains(&"bob".to_string()));

    // Dropping the socket is not a logout: alice stays bound, through a restart.
    drop(alice);
    drop(store);
    s.restart().await;
    let store = s.running().hub().store.clone();
    let after: Vec<String> = store
        .installations_of_client("alice")
        .unwrap()
        .into_iter()
        .map(|r| r.object_id)
        .collect();
    assert_eq!(after, vec![ios_id.clone()]);
    assert_eq!(
        store
            .installation_by_token(token)
            .unwrap()
            .unwrap()
            .object_id,
        ios_id
    );
    assert!(store.installation(&droid_id).unwrap().is_some());

    // The sweep removes what was idle for 90 days, and only that.
    const DAY: u64 = 86_400_000;
    let now = tidings::util::now_ms();
    assert_eq!(store.installations_sweep(now, 90 * DAY).unwrap(), 0);
    assert_eq!(
        store.installations_sweep(now + 91 * DAY, 90 * DAY).unwrap(),
        3
    );
    assert!(store.installations_of_client("alice").unwrap().is_empty());
    assert_eq!(store.installation_by_token(token).unwrap(), None);
}

#[tokio::test]
async fn a_quic_login_binds_its_device_token_and_logout_unbinds() {
    let s = start().await;
    let app = Rest::app(&s);
    let token = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";
    let (st, _) = app.post("/1.1/batch/save", swift_batch(token, "q")).await;
    assert_eq!(st, 200);
    let (st, _) = app
        .post("/1.1/installations", android_body("quic-iid"))
        .await;
    assert_eq!(st, 201);
    let store = s.running().hub().store.clone();
    let bound = |c: &str| store.installations_of_client(c).unwrap().len();

    // By token (any case), and by installationId.
    let mut opts = s.options("dave");
    opts.device_token = Some(token.to_uppercase());
    let (dave, _ev) = s.connect_with(opts).await;
    let mut opts = s.options("erin");
    opts.device_token = Some("quic-iid".into());
    let (_erin, _ev2) = s.connect_with(opts).await;
    // An unknown device is not an error.
    let mut opts = s.options("fred");
    opts.device_token = Some("unregistered".into());
    let (_fred, _ev3) = s.connect_with(opts).await;
    assert_eq!((bound("dave"), bound("erin"), bound("fred")), (1, 1, 0));

    dave.logout().await.expect("logout");
    assert_eq!(bound("dave"), 0);
    assert_eq!(bound("erin"), 1);
}
