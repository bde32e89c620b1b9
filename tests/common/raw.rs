//! A bare QUIC connection that speaks frames by hand, for tests of what
//! the client library would never send: malformed, pipelined or abusive
//! traffic.

use tidings::protocol::{ClientFrame, Command, Login, Reply, ServerFrame, SyncMode};
use tidings::transport::FrameReader;
use tidings::transport::tls::parse_fingerprint;
use tidings::transport::{self, ServerTrust, close_code};
use tidings::wire::frame;

use super::{TestServer, WAIT};

/// A bare QUIC connection speaking frames by hand.
pub struct Raw {
    _ep: quinn::Endpoint,
    pub conn: quinn::Connection,
}

pub struct RawStream {
    pub send: quinn::SendStream,
    pub reader: FrameReader,
}

impl Raw {
    pub async fn connect(s: &TestServer) -> Raw {
        let pin = parse_fingerprint(s.running().fingerprint()).unwrap();
        let ep = transport::client_endpoint(s.addr(), ServerTrust::Pin(pin)).unwrap();
        let conn = ep
            .connect(s.addr(), "tidings")
            .unwrap()
            .await
            .expect("QUIC handshake");
        Raw { _ep: ep, conn }
    }

    pub async fn stream(&self) -> RawStream {
        let (send, recv) = self.conn.open_bi().await.unwrap();
        RawStream {
            send,
            reader: FrameReader::new(recv, tidings::wire::codec::DECODE_LIMIT),
        }
    }

    /// The application close code, waiting (bounded) for the close.
    pub async fn close_code(&self) -> Option<u16> {
        let err = tokio::time::timeout(WAIT, self.conn.closed())
            .await
            .expect("server closes the connection");
        close_code(&err)
    }
}

impl RawStream {
    pub async fn write(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.unwrap();
    }

    pub async fn frame(&mut self, f: &ClientFrame) {
        let bytes = frame::encode(f).unwrap();
        self.write(&bytes).await;
    }

    pub async fn request(&mut self, id: u64, cmd: Command) {
        self.frame(&ClientFrame::Request { id, cmd }).await;
    }

    pub async fn next(&mut self) -> ServerFrame {
        tokio::time::timeout(WAIT, self.reader.read::<ServerFrame>())
            .await
            .expect("a server frame in time")
            .expect("readable frame")
            .expect("stream open")
    }

    /// The response with `id`, skipping events.
    pub async fn response(&mut self, id: u64) -> Result<Reply, tidings::protocol::ErrorBody> {
        loop {
            if let ServerFrame::Response { id: got, result } = self.next().await {
                assert_eq!(got, id, "responses come in request order");
                return result;
            }
        }
    }

    /// Logs in as `client` and waits for the answer.
    pub async fn login(&mut self, s: &TestServer, client: &str) {
        self.request(1, Command::Login(signed_login(s, client)))
            .await;
        let r = self.response(1).await;
        assert!(matches!(r, Ok(Reply::LoggedIn { .. })), "login: {r:?}");
    }
}

pub fn signed_login(s: &TestServer, client: &str) -> Login {
    let creds = s.running().credentials();
    let timestamp = tidings::util::now_secs();
    let nonce = tidings::auth::random_nonce();
    Login {
        app_id: creds.app_id.clone(),
        client_id: client.into(),
        tag: None,
        device_id: None,
        reconnect: false,
        timestamp,
        signature: creds.sign_login(client, timestamp, &nonce),
        nonce,
        sync: SyncMode::Push,
        device_token: None,
    }
}
