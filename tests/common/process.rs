//! The real `tidings` binary as a child process, for tests that kill it or
//! signal it. Included with `#[path]` so those tests need not build the
//! in-process harness.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tidings::client::{ClientOptions, Signer};
use tidings::transport::ServerTrust;
use tidings::transport::tls::{data_dir_fingerprint, parse_fingerprint};

/// Kills the child on drop so a failing assertion never leaks a server.
pub struct ServerProcess {
    pub child: Child,
    pub addr: std::net::SocketAddr,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tidings serve` on `dir` (loopback, port 0, admin API off) with
/// `env` on top, and waits (bounded) for the address file it writes once it
/// listens.
pub fn spawn_server(dir: &Path, env: &[(&str, &std::ffi::OsStr)]) -> ServerProcess {
    let addr_file = dir.join(tidings::server::ADDR_FILE);
    let _ = std::fs::remove_file(&addr_file);
    let child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .arg("serve")
        .env("TIDINGS_SERVER_DATA_DIR", dir)
        .env("TIDINGS_SERVER_LISTEN", "127.0.0.1:0")
        .env("TIDINGS_GATEWAY_LISTEN", "127.0.0.1:0")
        .env("TIDINGS_ADMIN_ENABLED", "false")
        .env("TIDINGS_LOG_LEVEL", "warn")
        .envs(env.iter().copied())
        .env_remove("TIDINGS_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn tidings serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        if let Ok(text) = std::fs::read_to_string(&addr_file)
            && let Ok(a) = text.trim().parse()
        {
            break a;
        }
        assert!(Instant::now() < deadline, "server did not start within 30s");
        std::thread::sleep(Duration::from_millis(20));
    };
    ServerProcess { child, addr }
}

/// Client options for the server on `dir`: its generated credentials and
/// pinned certificate.
pub fn options(dir: &Path, addr: std::net::SocketAddr, who: &str) -> ClientOptions {
    let creds = tidings::auth::Credentials::load(dir).expect("credentials");
    let pin = parse_fingerprint(&data_dir_fingerprint(dir).expect("cert")).expect("pin");
    ClientOptions::new(
        addr,
        ServerTrust::Pin(pin),
        creds.app_id,
        Signer::MasterKey(creds.master_key),
        who,
    )
}
