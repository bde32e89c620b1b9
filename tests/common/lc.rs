//! A raw LeanCloud IM client over WebSocket, speaking `GenericCommand`s as
//! the SDKs do, for tests that need exact frames (bad input, close codes,
//! field values) beside the real SDK suite (`tests/leancloud-sdk/`).

use std::collections::VecDeque;
use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tidings::gateway::proto::{CommandType, GenericCommand, OpType, SessionCommand};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::{TestServer, WAIT};

pub struct Lc {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    base64: bool,
    next_i: i32,
    /// Pushes and answers read while waiting for something else.
    held: VecDeque<GenericCommand>,
}

pub fn cmd(kind: CommandType, op: Option<OpType>) -> GenericCommand {
    GenericCommand {
        cmd: Some(kind as i32),
        op: op.map(|o| o as i32),
        ..Default::default()
    }
}

pub fn kind(c: &GenericCommand) -> (Option<CommandType>, Option<OpType>) {
    (
        c.cmd.and_then(|k| CommandType::try_from(k).ok()),
        c.op.and_then(|o| OpType::try_from(o).ok()),
    )
}

/// The code of an `error` answer (or of a refused `ack`).
pub fn error_code(c: &GenericCommand) -> Option<i32> {
    c.error_message
        .as_ref()
        .map(|e| e.code)
        .or_else(|| c.ack_message.as_ref().and_then(|a| a.code))
}

impl Lc {
    pub async fn connect(addr: SocketAddr, subprotocol: &str) -> Lc {
        let mut req = format!("ws://{addr}/")
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            subprotocol.parse().expect("header"),
        );
        let (ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .expect("connect in time")
            .expect("websocket upgrade");
        let chosen = resp
            .headers()
            .get("sec-websocket-protocol")
            .map(|h| h.to_str().unwrap().to_owned());
        assert_eq!(chosen.as_deref(), Some(subprotocol));
        Lc {
            ws,
            base64: subprotocol.contains("base64"),
            next_i: 1,
            held: VecDeque::new(),
        }
    }

    pub async fn to(s: &TestServer) -> Lc {
        Lc::connect(
            s.running().gateway_addr().expect("gateway on"),
            "lc.protobuf2.3",
        )
        .await
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send");
    }

    pub async fn send(&mut self, c: &GenericCommand) {
        let bytes = c.encode_to_vec();
        let msg = if self.base64 {
            use base64::Engine;
            Message::Text(
                base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .into(),
            )
        } else {
            Message::Binary(bytes.into())
        };
        self.send_raw(msg).await;
    }

    /// Sends `c` with the next `i` and waits for its answer.
    pub async fn request(&mut self, mut c: GenericCommand) -> GenericCommand {
        let i = self.next_i;
        self.next_i += 1;
        c.i = Some(i);
        self.send(&c).await;
        self.wait(|a| a.i == Some(i)).await
    }

    /// The next command (held or read) that `f` accepts; others are held.
    pub async fn wait(&mut self, mut f: impl FnMut(&GenericCommand) -> bool) -> GenericCommand {
        if let Some(pos) = self.held.iter().position(&mut f) {
            return self.held.remove(pos).expect("held");
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let c = tokio::time::timeout_at(deadline, self.read())
                .await
                .expect("the awaited command arrives in time")
                .expect("socket open");
            if f(&c) {
                return c;
            }
            self.held.push_back(c);
        }
    }

    /// The next command, or the close frame that ended the socket.
    pub async fn read(&mut self) -> Result<GenericCommand, Option<CloseFrame>> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Binary(b))) => {
                    return Ok(GenericCommand::decode(b.as_ref()).expect("decodes"));
                }
                Some(Ok(Message::Text(t))) => {
                    use base64::Engine;
                    let b = base64::engine::general_purpose::STANDARD
                        .decode(t.as_str())
                        .expect("base64");
                    return Ok(GenericCommand::decode(b.as_slice()).expect("decodes"));
                }
                Some(Ok(Message::Close(f))) => return Err(f),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Err(None),
            }
        }
    }

    /// Waits for the socket's close frame; its code.
    pub async fn closed(&mut self) -> u16 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.read())
                .await
                .expect("closed in time")
            {
                Ok(_) => {}
                Err(f) => return f.map_or(0, |f| f.code.into()),
            }
        }
    }

    /// `session/open` signed with the server's master key; the answer.
    pub async fn open(
        &mut self,
        s: &TestServer,
        client: &str,
        tag: Option<&str>,
        reconnect: bool,
    ) -> GenericCommand {
        let session = SessionCommand {
            tag: tag.map(str::to_owned),
            r: Some(reconnect),
            config_bitmap: Some(0xBB),
            ..Default::default()
        };
        let n = format!("n{}", rand_suffix());
        self.request(signed_open(s, client, &n, session)).await
    }

    /// `session/open` signed with the master key, naming a device as the iOS
    /// (`deviceToken`) or Android (`deviceId` + `configBitmap` 0x04) SDK does.
    pub async fn open_with_device(
        &mut self,
        s: &TestServer,
        client: &str,
        token: Option<&str>,
        iid: Option<&str>,
    ) {
        let session = SessionCommand {
            device_token: token.map(str::to_owned),
            device_id: iid.map(str::to_owned),
            config_bitmap: Some(if iid.is_some() { 0x04 | 0x01 } else { 0xBB }),
            ..Default::default()
        };
        let answer = self
            .request(signed_open(s, client, &format!("n-{client}"), session))
            .await;
        assert_eq!(
            kind(&answer),
            (Some(CommandType::Session), Some(OpType::Opened)),
            "{answer:?}"
        );
    }
}

/// `session/open` for `client` with nonce `n`, signed with the server's
/// master key: `session` with the SDK's `ua` and the signature's fields.
fn signed_open(s: &TestServer, client: &str, n: &str, session: SessionCommand) -> GenericCommand {
    let creds = s.running().credentials();
    let t = tidings::util::now_secs();
    let mut c = cmd(CommandType::Session, Some(OpType::Open));
    c.app_id = Some(creds.app_id.clone());
    c.peer_id = Some(client.to_owned());
    c.session_message = Some(SessionCommand {
        ua: Some("tests/1".into()),
        t: Some(i64::try_from(t).expect("secs")),
        n: Some(n.to_owned()),
        s: Some(creds.sign_login(client, t, n)),
        ..session
    });
    c
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) ^ (std::process::id() as u64) << 32
}
