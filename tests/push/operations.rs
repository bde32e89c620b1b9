//! Operations: the SDKs' registrations end to end, the push metrics, and
//! the admin API and CLI.

use super::*;

// ------------------------------------------- the SDKs' registrations ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_sdks_installations_bind_at_login_and_get_pushes() {
    let env = PushEnv::start(Providers::NATIVE, |_| {}).await;
    // Android (Java SDK): POST, then PUT of the FCM token; bound at a
    // QUIC login naming the installationId.
    let iid = "0123456789abcdef0123456789abcdef";
    env.register_android(iid, "fcm-droid").await;
    env.bind_offline("andy", iid).await;
    // Swift: batch/save; bound at a LeanCloud-door session/open with the
    // deviceToken (uppercase, as some apps format it); the socket drops.
    let sam_t = token(80);
    env.register_ios(&sam_t, TEAM).await;
    let lc = env.lc_open_ios("sam", &sam_t.to_uppercase()).await;
    drop(lc);
    env.wait_offline("sam").await;
    // JS SDK (`AV.Installation`, e.g. in a React Native app).
    let jo_t = token(81);
    let (st, body) = env
        .app
        .post(
            "/1.1/classes/_Installation",
            json!({"deviceType": "ios", "deviceToken": jo_t, "installationId": "js-iid",
                   "apnsTeamId": TEAM, "channels": []}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    env.bind_offline("jo", &jo_t).await;
    // Online on the LeanCloud door with a bound device: no push.
    let lena_t = token(82);
    env.register_ios(&lena_t, TEAM).await;
    let _lena = env.lc_open_ios("lena", &lena_t).await;
    let store = env.s.running().hub().store.clone();
    for c in ["andy", "sam", "jo", "lena"] {
        assert_eq!(
            store.installations_of_client(c).unwrap().len(),
            1,
            "{c} bound"
        );
    }

    // A LeanCloud-door sender with pushData.
    let (alice, _aev) = env.s.connect("alice").await;
    let conv = conv_of(&alice, &["andy", "sam", "jo", "lena", "lucy"]).await;
    let mut lucy = lc::Lc::to(&env.s).await;
    lucy.open(&env.s, "lucy", None, false).await;
    let mut d = lc::cmd(tidings::gateway::proto::CommandType::Direct, None);
    d.direct_message = Some(tidings::gateway::proto::DirectCommand {
        cid: Some(conv.to_string()),
        msg: Some("hi from the web".into()),
        push_data: Some(json!({"alert": "from lucy"}).to_string()),
        ..Default::default()
    });
    let ack = lucy.request(d).await;
    assert_eq!(lc::error_code(&ack), None, "{ack:?}");

    let f = fcm_n(&env.fcm, "fcm-droid", 1).await;
    assert_eq!(f[0].json()["message"]["notification"]["body"], "from lucy");
    for t in [&sam_t, &jo_t] {
        let r = apns_n(&env.apns, t, 1).await.remove(0);
        assert_eq!(alert(&r), "from lucy");
    }
    assert!(apns_to(&env.apns, &lena_t).is_empty(), "lena is online");
    assert_eq!(env.apns.requests(Route::Apns).len(), 2);
}

// -------------------------------------------------------- metrics ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_each_final_outcome() {
    let env = PushEnv::start(Providers::NATIVE, |_| {}).await;
    let (bob_t, dora_t, rita_t) = (token(90), token(91), token(92));
    env.offline_ios("bob", &bob_t).await;
    env.offline_android("erin", "fcm-m").await;
    let dora = env.offline_ios("dora", &dora_t).await;
    env.offline_ios("rita", &rita_t).await;
    let (alice, _aev) = env.s.connect("alice").await;
    let c1 = conv_of(&alice, &["bob", "erin"]).await;
    let c2 = conv_of(&alice, &["dora"]).await;
    let c3 = conv_of(&alice, &["rita"]).await;

    alice.send_text(c1, "delivered").await.unwrap();
    apns_n(&env.apns, &bob_t, 1).await;
    fcm_n(&env.fcm, "fcm-m", 1).await;
    env.apns.script(
        Route::Apns,
        [Reply::new(410, r#"{"reason":"Unregistered"}"#)],
    );
    alice.send_text(c2, "dead").await.unwrap();
    env.wait_removed(&dora).await;
    // 1 + max_retries (3) tries, all 503: gave up still retryable.
    env.apns.script(
        Route::Apns,
        (0..4).map(|_| Reply::new(503, r#"{"reason":"ServiceUnavailable"}"#)),
    );
    alice.send_text(c3, "retry").await.unwrap();
    apns_n(&env.apns, &rita_t, 4).await;
    env.wait_metrics(&[("apns", "retry", 1.0)]).await;
    env.apns.script(
        Route::Apns,
        [Reply::new(400, r#"{"reason":"PayloadEmpty"}"#)],
    );
    alice.send_text(c3, "failed").await.unwrap();
    apns_n(&env.apns, &rita_t, 5).await;

    let text = env
        .wait_metrics(&[
            ("apns", "delivered", 1.0),
            ("apns", "dead_token", 1.0),
            ("apns", "retry", 1.0),
            ("apns", "failed", 1.0),
            ("fcm", "delivered", 1.0),
        ])
        .await;
    assert_eq!(
        sample(&text, "tidings_push_tokens_removed_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "tidings_push_queue_depth", &[("provider", "apns")]),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "tidings_push_sent_total",
            &[("provider", "fcm"), ("result", "dead_token")]
        )
        .unwrap_or(0.0),
        0.0
    );
    assert_eq!(
        apns_to(&env.apns, &rita_t).len(),
        5,
        "no try beyond max_retries"
    );
}

// ---------------------------------------------------- admin API ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_lists_a_clients_devices_and_sends_a_test_push() {
    let env = PushEnv::start(Providers::NATIVE, |_| {}).await;
    let bob_t = token(120);
    let ios = env.offline_ios("bob", &bob_t).await;
    let droid = env.register_android("iid-admin", "fcm-admin").await;
    env.bind_offline("bob", "iid-admin").await;
    // A web installation: bound, but nothing can push to it.
    let (st, body) = env
        .app
        .post(
            "/1.1/classes/_Installation",
            json!({"deviceType": "web", "installationId": "web-iid"}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let web = body["objectId"].as_str().expect("objectId").to_owned();
    env.bind_offline("bob", "web-iid").await;

    let a = env.admin();
    let devices = "/1.2/rtm/clients/bob/devices";
    let list = a.get(devices).await.expect(200);
    let results = list["results"].as_array().expect("results");
    let mut ids: Vec<&str> = results
        .iter()
        .map(|d| d["objectId"].as_str().expect("objectId"))
        .collect();
    ids.sort_unstable();
    let mut want = vec![ios.as_str(), droid.as_str(), web.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    let listed = results
        .iter()
        .find(|d| d["objectId"] == ios.as_str())
        .unwrap();
    assert_eq!(
        Some(listed.clone()),
        env.installation(&ios).await,
        "as the REST GET answers it"
    );
    let bare = a.send(a.bare(reqwest::Method::GET, devices)).await;
    assert!(
        matches!(bare.status, 401 | 403),
        "no master key: {}",
        bare.status
    );
    assert_eq!(
        a.get("/1.2/rtm/clients/nobody/devices").await.expect(200),
        json!({"results": []})
    );

    // The template, to every device, answered per device.
    let push = "/1.2/rtm/clients/bob/push";
    let res = a.post(push, json!({})).await.expect(200);
    let of = |res: &Value, id: &str| -> (Value, Value) {
        let r = res["results"]
            .as_array()
            .expect("results")
            .iter()
            .find(|r| r["objectId"] == id)
            .unwrap_or_else(|| panic!("no result for {id}: {res}"))
            .clone();
        (r["provider"].clone(), r["result"].clone())
    };
    assert_eq!(of(&res, &ios), (json!("apns"), json!("delivered")), "{res}");
    assert_eq!(
        of(&res, &droid),
        (json!("fcm"), json!("delivered")),
        "{res}"
    );
    assert_eq!(
        of(&res, &web),
        (Value::Null, json!("not_for_device")),
        "{res}"
    );
    // Answered after the providers answered: the requests are there.
    assert_eq!(apns_to(&env.apns, &bob_t).len(), 1);
    assert_eq!(fcm_to(&env.fcm, "fcm-admin").len(), 1);

    // A payload, and a token found dead on the way.
    env.apns.script(
        Route::Apns,
        [Reply::new(410, r#"{"reason":"Unregistered"}"#)],
    );
    let res = a
        .post(push, json!({"alert": "admin says hi"}))
        .await
        .expect(200);
    assert_eq!(
        of(&res, &ios),
        (json!("apns"), json!("dead_token")),
        "{res}"
    );
    assert_eq!(
        of(&res, &droid),
        (json!("fcm"), json!("delivered")),
        "{res}"
    );
    let f = fcm_to(&env.fcm, "fcm-admin");
    assert_eq!(
        f[1].json()["message"]["notification"]["body"],
        "admin says hi"
    );
    assert_eq!(
        env.installation(&ios).await,
        None,
        "the dead token's registration"
    );
    let (code, _) = a
        .post(push, json!(["not", "an", "object"]))
        .await
        .error(400);
    assert!(code > 0);

    // The CLI over the same API.
    let dir = env.s.data_dir();
    let (ok, out, err) = common::admin::admin_cli(&dir, &["devices", "bob"]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&droid) && !out.contains(&ios), "{out}");
    let (ok, out, err) =
        common::admin::admin_cli(&dir, &["push", "bob", "--alert", "from the CLI"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("delivered"), "{out}");
    wait_n("the CLI's FCM push", 3, || fcm_to(&env.fcm, "fcm-admin")).await;

    // Push off: a clear error.
    let off = TestServer::start().await;
    let (code, error) = common::admin::Admin::of(&off)
        .post("/1.2/rtm/clients/bob/push", json!({}))
        .await
        .error(400);
    assert_eq!(code, 115, "{error}");
}
