mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_chat() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let (_jerry, mut jev) = s.connect("Jerry").await;
    let conv = tom.create_unique(vec!["Jerry".into()]).await.unwrap();
    let sent = tom.send_text(conv.id, "hi").await.unwrap();
    assert_eq!(sent.seq, 1);
    let m = jev.next_message(WAIT).await.expect("Jerry gets it");
    assert_eq!(text(&m), "hi");
    assert_eq!(m.msg_id, sent.msg_id);
}
