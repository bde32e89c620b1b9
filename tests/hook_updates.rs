//! `_messageUpdated` and `_conversationUpdated` (Skygear's
//! `after_message_updated` and `after_conversation_updated`): after-hooks
//! through the outbox once an edit, a recall, a name/attr change or a mute
//! is stored, with Skygear's message, conversation and participants. Real
//! QUIC clients and a real HTTP hook server.

mod common;

use common::hook_server::HookServer;
use common::*;
use serde_json::json;
use tidings::config::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skygear_update_hooks_fire_after_edit_recall_update_and_mute() {
    let mut hooks = HookServer::start().await;
    // Configured under the Skygear names, as a Skygear app would: the config
    // used to refuse both ("has no counterpart here").
    let toml = format!(
        "[hooks.hook.after_message_updated]\nurls = [\"{}\"]\n\
         [hooks.hook.after_conversation_updated]\nurls = [\"{}\"]\n",
        hooks.endpoint("sky", "after_message_updated"),
        hooks.endpoint("sky", "after_conversation_updated"),
    );
    let parsed = Config::load_from_str(&toml).expect("Skygear update hooks are accepted");
    let s = TestServer::start_with(|c| c.hooks = parsed.hooks).await;
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let key = conv.to_string();
    let sent = tom.send_text(conv, "helo").await.unwrap();
    assert_eq!(jev.next_message(WAIT).await.unwrap().msg_id, sent.msg_id);

    let edited = tom.edit_text(conv, &sent.msg_id, "hello").await.unwrap();
    let c = hooks.next("after_message_updated").await;
    assert_eq!(c.lane, "sky");
    assert_eq!(c.param("convId"), &json!(key));
    assert_eq!(c.param("msgId"), &json!(sent.msg_id));
    assert_eq!(c.param("fromPeer"), &json!("Tom"));
    assert_eq!(c.param("updatedBy"), &json!("Tom"));
    assert_eq!(c.param("content"), &json!("hello"));
    assert_eq!(c.param("bin"), &json!(false));
    assert_eq!(c.param("recall"), &json!(false));
    assert_eq!(c.param("timestamp"), &json!(sent.timestamp));
    assert_eq!(c.param("updatedAt"), &json!(edited.updated_at));
    assert_eq!(sorted_strings(c.param("members")), ["Jerry", "Tom"]);
    assert_eq!(c.param("attr"), &json!({}));

    tom.recall(conv, &sent.msg_id).await.unwrap();
    let c = hooks.next("after_message_updated").await;
    assert_eq!(c.param("msgId"), &json!(sent.msg_id));
    assert_eq!(c.param("recall"), &json!(true));

    tom.update(
        conv,
        Some("Cat & Mouse".into()),
        Some(r#"{"color":"red"}"#.into()),
    )
    .await
    .unwrap();
    let c = hooks.next("after_conversation_updated").await;
    assert_eq!(c.lane, "sky");
    assert_eq!(c.param("convId"), &json!(key));
    assert_eq!(c.param("initBy"), &json!("Tom"));
    assert_eq!(
        c.param("attr"),
        &json!({ "name": "Cat & Mouse", "color": "red" })
    );
    assert_eq!(sorted_strings(c.param("members")), ["Jerry", "Tom"]);

    tom.mute(conv).await.unwrap();
    let c = hooks.next("after_conversation_updated").await;
    assert_eq!(c.param("convId"), &json!(key));
    assert_eq!(c.param("mute"), &json!(true));
    assert_eq!(c.param("initBy"), &json!("Tom"));

    // Only these two hooks are configured: nothing else was called.
    let rest: Vec<String> = hooks.take_all().into_iter().map(|c| c.name).collect();
    assert!(rest.is_empty(), "unexpected calls: {rest:?}");
}
