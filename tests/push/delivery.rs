//! Delivery: dead tokens, the gateway formats, retries, one connection
//! per provider, a full queue, Apple's 4 KB.

use super::*;

// ---------------------------------------------------- dead tokens ----

fn fcm_unregistered() -> Reply {
    Reply::new(
        404,
        r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_tokens_remove_the_registration() {
    let env = PushEnv::start(Providers::NATIVE, |_| {}).await;
    let toks = [token(50), token(51), token(52)];
    let mut ids = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        ids.push(env.offline_ios(&format!("d{i}"), t).await);
    }
    ids.push(env.offline_android("d3", "fcm-dead").await);
    let (alice, _aev) = env.s.connect("alice").await;
    let conv = conv_of(&alice, &["d0", "d1", "d2", "d3"]).await;
    let gone_at = tidings::util::now_ms();
    env.apns.script(
        Route::Apns,
        [
            Reply::new(
                410,
                &json!({"reason": "Unregistered", "timestamp": gone_at}).to_string(),
            ),
            Reply::new(400, r#"{"reason":"BadDeviceToken"}"#),
            Reply::new(400, r#"{"reason":"DeviceTokenNotForTopic"}"#),
        ],
    );
    env.fcm.script(Route::Fcm, [fcm_unregistered()]);
    alice.send_text(conv, "to the dead").await.unwrap();
    for id in &ids {
        env.wait_removed(id).await;
    }
    let store = env.s.running().hub().store.clone();
    for c in ["d0", "d1", "d2", "d3"] {
        assert!(store.installations_of_client(c).unwrap().is_empty(), "{c}");
    }
    // Not pushed to again: the next message reaches only a live device.
    let live = token(53);
    env.offline_ios("ok", &live).await;
    alice.add_members(conv, vec!["ok".into()]).await.unwrap();
    alice.send_text(conv, "again").await.unwrap();
    apns_n(&env.apns, &live, 1).await;
    for t in &toks {
        assert_eq!(apns_to(&env.apns, t).len(), 1, "{t} pushed after it died");
    }
    assert_eq!(fcm_to(&env.fcm, "fcm-dead").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_gateway_takes_both_platforms_and_its_rejection_removes_the_registration() {
    let env = PushEnv::start(Providers::gateway(WebhookFormat::Matrix), |_| {}).await;
    let bob_t = token(60);
    let bob_dev = env.offline_ios("bob", &bob_t).await;
    let erin_dev = env.offline_android("erin", "fcm-gw").await;
    let (alice, _aev) = env.s.connect("alice").await;
    let conv = conv_of(&alice, &["bob", "erin"]).await;
    // Whichever call comes first, bob's answer rejects his pushkey.
    let rejected = json!({"rejected": [bob_t]}).to_string();
    env.gw.script(
        Route::Matrix,
        [Reply::new(200, &rejected), Reply::new(200, &rejected)],
    );
    alice.send_text(conv, "via the gateway").await.unwrap();
    let got = wait_n("Matrix notifications", 2, || env.gw.requests(Route::Matrix)).await;
    let mut seen: Vec<(String, String)> = got
        .iter()
        .flat_map(|r| {
            let n = r.json()["notification"].clone();
            assert_eq!(n["room_id"], conv.to_string(), "{n}");
            assert_eq!(n["sender"], "alice", "{n}");
            n["devices"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|d| {
                    (
                        d["app_id"].as_str().unwrap_or_default().to_owned(),
                        d["pushkey"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("tidings.android".to_owned(), "fcm-gw".to_owned()),
            ("tidings.ios".to_owned(), bob_t.clone()),
        ]
    );
    env.wait_removed(&bob_dev).await;
    assert!(
        env.installation(&erin_dev).await.is_some(),
        "erin was not rejected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gorush_gateway_gets_its_own_format() {
    let env = PushEnv::start(Providers::gateway(WebhookFormat::Gorush), |_| {}).await;
    let bob_t = token(61);
    env.offline_ios("bob", &bob_t).await;
    let (alice, _aev) = env.s.connect("alice").await;
    let conv = conv_of(&alice, &["bob"]).await;
    alice
        .send(with_data(conv, "g", json!({"alert": "gorush"})))
        .await
        .unwrap();
    let got = wait_n("Gorush pushes", 1, || env.gw.requests(Route::Gorush)).await;
    let n = &got[0].json()["notifications"][0];
    assert_eq!(n["tokens"], json!([bob_t]), "{n}");
    assert_eq!(n["platform"], 1, "{n}");
    assert_eq!(n["message"], "gorush", "{n}");
}

// -------------------------------------------------------- retries ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_and_a_429_waits_for_its_retry_after() {
    let env = PushEnv::start(Providers::NATIVE, |_| {}).await;
    let bob_t = token(70);
    env.offline_ios("bob", &bob_t).await;
    env.offline_android("erin", "fcm-retry").await;
    let (alice, _aev) = env.s.connect("alice").await;
    let to_bob = conv_of(&alice, &["bob"]).await;
    let to_erin = conv_of(&alice, &["erin"]).await;

    env.apns.script(
        Route::Apns,
        [Reply::new(503, r#"{"reason":"ServiceUnavailable"}"#)],
    );
    alice.send_text(to_bob, "one").await.unwrap();
    let got = apns_n(&env.apns, &bob_t, 2).await;
    assert_eq!(got[0].body, got[1].body, "the same push again");

    env.apns.script(
        Route::Apns,
        [Reply::new(429, r#"{"reason":"TooManyRequests"}"#).retry_after(1)],
    );
    alice.send_text(to_bob, "two").await.unwrap();
    apns_n(&env.apns, &bob_t, 3).await;
    let t0 = Instant::now();
    apns_n(&env.apns, &bob_t, 4).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(800),
        "retried after {waited:?}, not after Retry-After: 1"
    );

    env.fcm.script(
        Route::Fcm,
        [Reply::new(
            503,
            r#"{"error":{"code":503,"status":"UNAVAILABLE"}}"#,
        )],
    );
    alice.send_text(to_erin, "three").await.unwrap();
    fcm_n(&env.fcm, "fcm-retry", 2).await;
    // All delivered in the end, once each.
    let want = [("apns", "delivered", 2.0), ("fcm", "delivered", 1.0)];
    env.wait_metrics(&want).await;
}

// ------------------------------------------------- one connection ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_pushes_share_one_connection_per_provider() {
    const N: usize = 500;
    let env = PushEnv::start(Providers::NATIVE, |c| c.limits.max_members = 1000).await;
    // 500 offline members, each with an iPhone and an Android phone.
    let members = env.many_offline("m", 1000, N as u32, true).await;
    let (alice, _aev) = env.s.connect("alice").await;
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let conv = conv_of(&alice, &refs).await;
    alice.send_text(conv, "to all 500").await.unwrap();
    let bound = Duration::from_secs(60);
    wait_n_for("APNs pushes", N, bound, || env.apns.requests(Route::Apns)).await;
    wait_n_for("FCM pushes", N, bound, || env.fcm.requests(Route::Fcm)).await;
    assert_eq!(env.apns.connections(), 1, "APNs connections");
    assert_eq!(env.fcm.connections(), 1, "FCM connections (OAuth included)");
    assert_eq!(env.fcm.token_requests(), 1, "one access token for all");
    let mut tokens: Vec<String> = env
        .apns
        .requests(Route::Apns)
        .iter()
        .map(|r| r.path.clone())
        .collect();
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), N, "one push per device");
    // One provider token signed, reused for all 500.
    let mut auth: Vec<String> = env
        .apns
        .requests(Route::Apns)
        .iter()
        .map(|r| r.header("authorization").unwrap_or_default().to_owned())
        .collect();
    auth.dedup();
    assert_eq!(auth.len(), 1, "the provider token is reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_counts_and_messaging_does_not_wait() {
    const N: u32 = 100;
    let env = PushEnv::start(Providers::NATIVE, |c| {
        c.push.queue_capacity = 1;
        c.push.max_in_flight = 1;
        c.push.retry_base_ms = 1000;
    })
    .await;
    let members = env.many_offline("q", 2000, N, false).await;
    let (alice, _aev) = env.s.connect("alice").await;
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let conv = conv_of(&alice, &refs).await;
    // The first push meets a 503 and holds the one slot through its
    // retry's wait (at least 1 s); one more waits in the queue.
    env.apns.script(
        Route::Apns,
        [Reply::new(503, r#"{"reason":"ServiceUnavailable"}"#)],
    );
    let t0 = Instant::now();
    alice.send_text(conv, "to a crowd").await.unwrap();
    alice.send_text(conv, "and again").await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "sending waited on push: {:?}",
        t0.elapsed()
    );
    let (delivered, dropped) = env
        .metrics_until("every push delivered or dropped", |text| {
            let delivered = sample(
                text,
                "tidings_push_sent_total",
                &[("provider", "apns"), ("result", "delivered")],
            )
            .unwrap_or(0.0);
            let dropped = sample(
                text,
                "tidings_push_dropped_total",
                &[("provider", "apns"), ("reason", "queue_full")],
            )
            .unwrap_or(0.0);
            if delivered + dropped == f64::from(2 * N) {
                Ok((delivered, dropped))
            } else {
                Err(format!(
                    "delivered {delivered} + dropped {dropped} != {}",
                    2 * N
                ))
            }
        })
        .await;
    assert!(
        dropped >= f64::from(N),
        "dropped {dropped}, delivered {delivered}"
    );
    assert_eq!(
        env.apns.requests(Route::Apns).len() as f64,
        delivered + 1.0,
        "one request per delivered push, and the 503"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apns_body_over_4_kb_is_cut_on_a_char_boundary_or_dropped_and_counted() {
    let env = PushEnv::start(Providers::NATIVE, |_| {}).await;
    let bob_t = token(110);
    env.offline_ios("bob", &bob_t).await;
    let (alice, _aev) = env.s.connect("alice").await;
    let conv = conv_of(&alice, &["bob"]).await;
    let long = "é".repeat(3000); // 6000 bytes
    alice
        .send(with_data(conv, "long", json!({"alert": long})))
        .await
        .unwrap();
    let r = apns_n(&env.apns, &bob_t, 1).await.remove(0);
    assert!(r.body.len() <= 4096, "{} bytes", r.body.len());
    let cut = alert(&r);
    let cut = cut.as_str().expect("alert text");
    assert!(
        long.starts_with(cut) && cut.len() > 3000,
        "cut to {} bytes",
        cut.len()
    );
    // Custom keys alone over 4 KB: nothing to cut, dropped.
    alice
        .send(with_data(
            conv,
            "huge",
            json!({"alert": "huge", "blob": "y".repeat(4200)}),
        ))
        .await
        .unwrap();
    alice
        .send(with_data(conv, "fence", json!({"alert": "fence"})))
        .await
        .unwrap();
    apns_n(&env.apns, &bob_t, 2).await;
    let alerts: Vec<Value> = apns_to(&env.apns, &bob_t).iter().map(alert).collect();
    assert!(
        !alerts.contains(&json!("huge")),
        "an oversized body was sent"
    );
    env.metrics_until("too_large counted", |text| {
        let n = sample(
            text,
            "tidings_push_dropped_total",
            &[("provider", "apns"), ("reason", "too_large")],
        );
        if n == Some(1.0) {
            Ok(())
        } else {
            Err(format!("too_large never counted: {n:?}"))
        }
    })
    .await;
}
