//! Flags every client command shares, and how their defaults are found in
//! the local server's data dir so `tidings send --as Tom ...` just works
//! next to a running server.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tidings::auth::{CREDENTIALS_FILE, Credentials};
use tidings::client::{Client, ClientError, ClientOptions, Events, Signer};
use tidings::config::{AuthMode, Config, duration};
use tidings::protocol::SyncMode;
use tidings::server::ADDR_FILE;
use tidings::transport::ServerTrust;
use tidings::transport::tls::{self, CERT_FILE};

/// Interactive tools should fail fast when the server is slow to answer.
const CLI_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A handshake on loopback or a LAN takes milliseconds, and one across the
/// world well under a second: two seconds without an answer means nobody
/// is listening (QUIC gets no "connection refused" to say so sooner).
const DEFAULT_CONNECT_TIMEOUT: &str = "2";

/// A flag value that must not show up in `Debug` output.
#[derive(Clone)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

#[derive(Debug, clap::Args)]
pub struct Common {
    /// Client id to log in as.
    #[arg(long = "as", value_name = "CLIENT_ID")]
    pub client_id: String,
    /// Server address (host:port). Default: <data-dir>/server.addr, else the config's listen address.
    #[arg(long, value_name = "ADDR")]
    pub server: Option<String>,
    /// SHA-256 fingerprint of the server certificate. Default: <data-dir>/tls/cert.pem's.
    #[arg(long, value_name = "HEX")]
    pub pin: Option<String>,
    /// Application id. Default: the config's, else <data-dir>/credentials.json's.
    #[arg(long, value_name = "ID")]
    pub app_id: Option<String>,
    /// Master key to sign the login with. Default: the config's, else <data-dir>/credentials.json's.
    #[arg(long, value_name = "KEY")]
    pub master_key: Option<Secret>,
    /// Log in without a signature (servers in `open` auth mode).
    #[arg(long, conflicts_with = "master_key")]
    pub unsigned: bool,
    /// Data dir of the local server, where the defaults above are looked up.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Devices sharing a tag exclude each other.
    #[arg(long)]
    pub tag: Option<String>,
    /// Device whose delivery cursor this session uses.
    #[arg(long = "device", value_name = "DEVICE_ID")]
    pub device: Option<String>,
    /// Log in with LeanCloud's reconnect flag: if another device holds the
    /// same --tag, this login gives way (4111) instead of kicking it off.
    #[arg(long)]
    pub reconnect: bool,
    /// How long to wait for the server to answer the connection before
    /// reporting it unreachable: seconds (2, 0.5) or a duration (500ms, 1m).
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_CONNECT_TIMEOUT, value_parser = connect_timeout)]
    pub connect_timeout: Duration,
}

fn connect_timeout(s: &str) -> Result<Duration, String> {
    let d = duration::parse(s)?;
    if d.is_zero() || d > Duration::from_secs(3600) {
        return Err("must be more than 0 and at most 3600 seconds".into());
    }
    Ok(d)
}

impl Common {
    fn data_dir(&self, config: &Config) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| config.server.data_dir.clone())
    }

    async fn server_addr(&self, data_dir: &Path, config: &Config) -> anyhow::Result<SocketAddr> {
        let addr = match &self.server {
            Some(s) => resolve(s).await?,
            None => {
                let file = data_dir.join(ADDR_FILE);
                match std::fs::read_to_string(&file) {
                    Ok(text) => text.trim().parse().with_context(|| {
                        format!("{} does not hold an address; pass --server", file.display())
                    })?,
                    Err(_) => config.server.listen,
                }
            }
        };
        Ok(reachable(addr))
    }

    fn trust(&self, data_dir: &Path, config: &Config) -> anyhow::Result<ServerTrust> {
        if let Some(pin) = &self.pin {
            let pin = tls::parse_fingerprint(pin).context("--pin")?;
            return Ok(ServerTrust::Pin(pin));
        }
        // A configured certificate replaces the generated one, so pin that instead.
        let path = match &config.server.tls_cert {
            Some(p) => p.clone(),
            None => data_dir.join(CERT_FILE),
        };
        let cert = CertificateDer::from_pem_file(&path).map_err(|_| {
            anyhow!(
                "no --pin given and no certificate in {}: start the server or pass --pin",
                path.display()
            )
        })?;
        let pin = tls::parse_fingerprint(&tls::fingerprint(&cert))?;
        Ok(ServerTrust::Pin(pin))
    }

    fn signer(&self, data_dir: &Path, config: &Config) -> anyhow::Result<(String, Signer)> {
        let mut stored: Option<Option<Credentials>> = None;
        let mut load = || {
            stored
                .get_or_insert_with(|| Credentials::load(data_dir).ok())
                .clone()
        };
        let app_id = self
            .app_id
            .clone()
            .or_else(|| config.auth.app_id.clone())
            .or_else(|| load().map(|c| c.app_id));
        let key = self
            .master_key
            .as_ref()
            .map(|k| k.0.clone())
            .or_else(|| config.auth.master_key.clone())
            .or_else(|| load().map(|c| c.master_key));
        let open = self.unsigned || config.auth.mode == AuthMode::Open;
        match (app_id, key) {
            (app_id, _) if open => Ok((app_id.unwrap_or_default(), Signer::Unsigned)),
            (Some(app_id), Some(key)) => Ok((app_id, Signer::MasterKey(key))),
            (None, _) => bail!(
                "no --app-id given and no credentials in {}: start the server or pass --app-id and --master-key",
                data_dir.join(CREDENTIALS_FILE).display()
            ),
            (Some(_), None) => bail!(
                "no --master-key given and no credentials in {}: start the server or pass --master-key",
                data_dir.join(CREDENTIALS_FILE).display()
            ),
        }
    }

    pub async fn options(
        &self,
        config: &Config,
        sync: SyncMode,
        auto_ack: bool,
    ) -> anyhow::Result<ClientOptions> {
        let data_dir = self.data_dir(config);
        let server = self.server_addr(&data_dir, config).await?;
        let trust = self.trust(&data_dir, config)?;
        let (app_id, signer) = self.signer(&data_dir, config)?;
        let mut opts = ClientOptions::new(server, trust, app_id, signer, self.client_id.clone());
        opts.tag = self.tag.clone();
        opts.device_id = self.device.clone();
        opts.sync = sync;
        opts.auto_ack = auto_ack;
        opts.reconnect = self.reconnect;
        opts.request_timeout = CLI_REQUEST_TIMEOUT;
        opts.connect_timeout = self.connect_timeout;
        opts.keep_alive = Duration::from_secs(config.limits.keep_alive_secs);
        Ok(opts)
    }

    pub async fn connect(
        &self,
        config: &Config,
        sync: SyncMode,
        auto_ack: bool,
    ) -> anyhow::Result<(Client, Events)> {
        let opts = self.options(config, sync, auto_ack).await?;
        let server = opts.server;
        match Client::connect(opts).await {
            Ok(c) => Ok(c),
            // Says the address and what to check already.
            Err(e @ ClientError::Unreachable { .. }) => Err(e.into()),
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("logging in to {server} as {}", self.client_id))),
        }
    }
}

async fn resolve(s: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    tokio::net::lookup_host(s)
        .await
        .with_context(|| format!("--server {s}: expected host:port"))?
        .next()
        .ok_or_else(|| anyhow!("--server {s}: no address found"))
}

/// A server bound to the wildcard address is reached through loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(dir: &Path) -> Common {
        Common {
            client_id: "Tom".into(),
            server: None,
            pin: None,
            app_id: None,
            master_key: None,
            unsigned: false,
            data_dir: Some(dir.to_path_buf()),
            tag: None,
            device: None,
            reconnect: false,
            connect_timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn wildcard_becomes_loopback() {
        assert_eq!(
            reachable("0.0.0.0:7450".parse().unwrap()),
            "127.0.0.1:7450".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            reachable("[::]:7450".parse().unwrap()),
            "[::1]:7450".parse::<SocketAddr>().unwrap()
        );
    }

    #[tokio::test]
    async fn defaults_come_from_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::default();
        let c = common(dir.path());
        let err = c.trust(dir.path(), &config).unwrap_err().to_string();
        assert!(
            err.contains("no --pin given and no certificate in"),
            "{err}"
        );
        assert!(c.signer(dir.path(), &config).is_err());
        assert_eq!(
            c.server_addr(dir.path(), &config).await.unwrap(),
            config.server.listen
        );

        std::fs::write(dir.path().join(ADDR_FILE), "0.0.0.0:9999\n").unwrap();
        let creds = Credentials::load_or_create(dir.path(), None, None).unwrap();
        let id = tls::ServerIdentity::load_or_generate(dir.path(), None).unwrap();
        assert_eq!(
            c.server_addr(dir.path(), &config).await.unwrap(),
            "127.0.0.1:9999".parse::<SocketAddr>().unwrap()
        );
        match c.trust(dir.path(), &config).unwrap() {
            ServerTrust::Pin(p) => assert_eq!(hex::encode(p), id.fingerprint()),
            other => panic!("{other:?}"),
        }
        let (app_id, signer) = c.signer(dir.path(), &config).unwrap();
        assert_eq!(app_id, creds.app_id);
        assert!(matches!(signer, Signer::MasterKey(k) if k == creds.master_key));
    }
}
