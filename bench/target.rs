//! The server under test: a `tidings` process this tool spawns on a fresh
//! data dir, or one already running that the user points at.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use tidings::auth::Credentials;
use tidings::transport::tls;

use crate::LoadArgs;
use crate::sys;

/// How long a spawned server gets to write its address file.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a SIGTERM'd child gets before SIGKILL; above the server's 10 s shutdown grace.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A child process with a scratch directory, both cleaned up on drop.
pub struct Spawned {
    child: Option<Child>,
    pub root: PathBuf,
    pub log: PathBuf,
}

impl Spawned {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, then wait (bounded), then SIGKILL. Returns how it ended.
    pub fn stop(&mut self) -> Result<String> {
        let Some(mut child) = self.child.take() else {
            return Ok("not running".into());
        };
        if let Some(status) = child.try_wait()? {
            return Ok(format!("had already exited: {status}"));
        }
        sys::terminate(child.id());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status.to_string());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Ok("killed after the SIGTERM timeout".into())
    }

    /// The end of the child's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// An HTTP client for plain http on loopback (the door and the admin API);
/// reqwest still wants a TLS config.
pub fn http_client() -> Result<reqwest::Client> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS")?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .context("building the HTTP client")
}

/// A fresh scratch directory under `--tmp-dir` (default: the system temp dir).
pub fn scratch_dir(args: &LoadArgs, what: &str) -> Result<PathBuf> {
    let parent = args.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let root = parent.join(format!(
        "tidings-bench-{what}-{}-{nanos:x}",
        std::process::id()
    ));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    Ok(root)
}

pub struct Target {
    pub addr: SocketAddr,
    pub pin: [u8; 32],
    pub creds: Credentials,
    /// For CPU and RSS samples; None when attached without `--server-pid`.
    pub pid: Option<u32>,
    pub spawned: Option<Spawned>,
    pub fsync: Option<bool>,
    /// The admin REST API's address, where the scenario asked for it (`broadcast`).
    pub admin: Option<SocketAddr>,
    /// The LeanCloud door (`ws-direct`): a spawned server's, or `--gateway`.
    pub gateway: Option<SocketAddr>,
}

impl Target {
    pub fn open(args: &LoadArgs) -> Result<Target> {
        Self::open_with(args, false)
    }

    /// As [`Target::open`], plus the admin API's address: a spawned server
    /// gets its admin listener on `127.0.0.1:0`; an existing one needs
    /// `--admin ADDR` or a `--data-dir` holding `admin.addr`.
    pub fn open_admin(args: &LoadArgs) -> Result<Target> {
        Self::open_with(args, true)
    }

    fn open_with(args: &LoadArgs, admin: bool) -> Result<Target> {
        if args.server.is_some() || args.data_dir.is_some() || args.pin.is_some() {
            let mut t = Self::attach(args)?;
            if admin {
                t.admin = Some(match (args.admin, args.data_dir.as_deref()) {
                    (Some(a), _) => a,
                    (None, Some(d)) => read_addr_file(d, tidings::admin::ADDR_FILE)
                        .context("the admin API's address (or give --admin ADDR)")?,
                    (None, None) => {
                        bail!("--admin ADDR is needed to reach an existing server's admin API")
                    }
                });
            }
            Ok(t)
        } else {
            Self::spawn(args, admin)
        }
    }

    fn attach(args: &LoadArgs) -> Result<Target> {
        if !args.server_env.is_empty() || args.fsync.is_some() {
            eprintln!(
                "note: --server-env and --fsync apply to a spawned server only; ignored for an existing one"
            );
        }
        let dir = args.data_dir.as_deref();
        let addr = match (args.server, dir) {
            (Some(a), _) => a,
            (None, Some(d)) => read_addr(d)?,
            (None, None) => bail!("--server ADDR is needed to use an existing server"),
        };
        let pin = match (&args.pin, dir) {
            (Some(p), _) => p.clone(),
            (None, Some(d)) => tls::data_dir_fingerprint(d)
                .with_context(|| format!("reading the certificate pin from {}", d.display()))?,
            (None, None) => bail!("give --data-dir DIR, or --pin, --app-id and --master-key"),
        };
        let stored = dir.map(Credentials::load).transpose();
        let stored = match (stored, &args.app_id, &args.master_key) {
            (_, Some(_), Some(_)) => None,
            (Ok(s), _, _) => s,
            (Err(e), _, _) => return Err(anyhow!(e).context("reading the data dir's credentials")),
        };
        let creds = Credentials {
            app_id: args
                .app_id
                .clone()
                .or_else(|| stored.as_ref().map(|c| c.app_id.clone()))
                .ok_or_else(|| anyhow!("--app-id is needed without --data-dir"))?,
            master_key: args
                .master_key
                .clone()
                .or_else(|| stored.as_ref().map(|c| c.master_key.clone()))
                .ok_or_else(|| anyhow!("--master-key is needed without --data-dir"))?,
            // The bench speaks only QUIC: no REST calls, so no app key.
            app_key: stored.map(|c| c.app_key).unwrap_or_default(),
        };
        if let Some(pid) = args.server_pid
            && sys::sample(Some(pid)).is_none()
        {
            bail!("--server-pid {pid}: no such process readable in /proc");
        }
        if let Some(cpus) = &args.server_cpus {
            let pid = args.server_pid.ok_or_else(|| {
                anyhow!("--server-cpus needs --server-pid for an existing server")
            })?;
            sys::pin_process(Some(pid), &cpus.0).context("pinning the server (--server-pid)")?;
        }
        Ok(Target {
            addr,
            pin: tls::parse_fingerprint(&pin)?,
            creds,
            pid: args.server_pid,
            spawned: None,
            fsync: None,
            admin: None,
            gateway: args.gateway,
        })
    }

    fn spawn(args: &LoadArgs, admin: bool) -> Result<Target> {
        let bin = match &args.tidings_bin {
            Some(b) => b.clone(),
            None => sibling_binary("tidings")?,
        };
        if !bin.is_file() {
            bail!(
                "server binary {} not found; build it with cargo build --release",
                bin.display()
            );
        }
        let root = scratch_dir(args, "server")?;
        let data = root.join("data");
        let log = root.join("server.log");
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .env("TIDINGS_SERVER_DATA_DIR", &data)
            .env("TIDINGS_SERVER_LISTEN", "127.0.0.1:0")
            .env("TIDINGS_ADMIN_ENABLED", admin.to_string())
            .env("TIDINGS_ADMIN_LISTEN", "127.0.0.1:0")
            .env("TIDINGS_GATEWAY_LISTEN", "127.0.0.1:0")
            .env("TIDINGS_LOG_LEVEL", "warn")
            .stdin(Stdio::null());
        // One generator on one address is the whole load: the per-client and
        // per-address abuse limits would measure themselves, not the server.
        // `--server-env` can turn them back on.
        for key in [
            "TIDINGS_QUOTAS_MESSAGES_PER_SEC",
            "TIDINGS_QUOTAS_REQUESTS_PER_SEC",
            "TIDINGS_QUOTAS_CONVERSATIONS_PER_HOUR",
            "TIDINGS_LIMITS_LOGINS_PER_IP_PER_MIN",
            "TIDINGS_LIMITS_MAX_CONNECTIONS",
        ] {
            cmd.env(key, "0");
        }
        // Retry costs every handshake a round trip: the bench measures the
        // server, not that defence (`--server-env` can turn it on).
        cmd.env(
            "TIDINGS_LIMITS_RETRY_ABOVE_HANDSHAKES_PER_SEC",
            u32::MAX.to_string(),
        );
        let out = std::fs::File::create(&log)?;
        cmd.stdout(out.try_clone()?).stderr(out);
        sys::die_with_parent(&mut cmd);
        if let Some(cpus) = &args.server_cpus {
            sys::pin_command(&mut cmd, &cpus.0);
        }
        if let Some(f) = args.fsync {
            cmd.env("TIDINGS_STORE_FSYNC", f.to_string());
        }
        for kv in &args.server_env {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("--server-env {kv}: expected KEY=VALUE"))?;
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut spawned = Spawned {
            child: Some(child),
            root,
            log,
        };
        let addr_file = data.join(tidings::server::ADDR_FILE);
        let admin_file = data.join(tidings::admin::ADDR_FILE);
        // Written once the LeanCloud door listens, after server.addr.
        let gateway_file = data.join(tidings::gateway::ADDR_FILE);
        let deadline = Instant::now() + START_TIMEOUT;
        let (addr, admin_addr, gateway) = loop {
            let read = |f: &Path| {
                std::fs::read_to_string(f)
                    .ok()
                    .and_then(|t| t.trim().parse::<SocketAddr>().ok())
            };
            if let (Some(a), Some(g)) = (read(&addr_file), read(&gateway_file)) {
                match (admin, read(&admin_file)) {
                    (false, _) => break (a, None, g),
                    (true, Some(b)) => break (a, Some(b), g),
                    (true, None) => {}
                }
            }
            if let Some(c) = spawned.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!("the server exited ({status}):\n{}", spawned.log_tail());
            }
            if Instant::now() > deadline {
                bail!(
                    "the server wrote no {}, gateway.addr{} within {:?}:\n{}",
                    addr_file.display(),
                    if admin { " or admin.addr" } else { "" },
                    START_TIMEOUT,
                    spawned.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let creds = Credentials::load(&data).context("reading the spawned server's credentials")?;
        let pin = tls::parse_fingerprint(&tls::data_dir_fingerprint(&data)?)?;
        Ok(Target {
            addr,
            pin,
            creds,
            pid: spawned.pid(),
            spawned: Some(spawned),
            fsync: Some(args.fsync.unwrap_or(true)),
            admin: admin_addr,
            gateway: Some(gateway),
        })
    }

    pub fn describe(&self) -> Value {
        json!({
            "addr": self.addr.to_string(),
            "spawned": self.spawned.is_some(),
            "pid": self.pid,
            "fsync": self.fsync,
            "admin": self.admin.map(|a| a.to_string()),
            "gateway": self.gateway.map(|a| a.to_string()),
            "cpus_allowed": self.pid.and_then(|p| sys::cpus_allowed_list(Some(p))),
        })
    }

    /// Stops a spawned server (an attached one is left alone) and checks it ended cleanly.
    pub fn stop(mut self) -> Result<()> {
        if let Some(s) = self.spawned.as_mut() {
            let how = s.stop()?;
            if how != "exit status: 0" {
                eprintln!("note: server stop: {how}\n{}", s.log_tail());
            }
        }
        Ok(())
    }
}

fn read_addr(dir: &Path) -> Result<SocketAddr> {
    read_addr_file(dir, tidings::server::ADDR_FILE)
}

fn read_addr_file(dir: &Path, name: &str) -> Result<SocketAddr> {
    let f = dir.join(name);
    let text = std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{}: not an address", f.display()))
}

/// `name` in the directory of this executable (target/release for a release build).
pub fn sibling_binary(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe().context("locating this executable")?;
    let dir = me
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", me.display()))?;
    Ok(dir.join(name))
}

/// Starts this executable with `args`, a process of its own so its CPU is
/// measured apart from the generator's, and reads `lines` lines of its stdout.
/// With `cpus`, the child starts pinned to them.
pub fn spawn_self(
    args: &[&str],
    lines: usize,
    scratch: PathBuf,
    cpus: Option<&[usize]>,
) -> Result<(Spawned, Vec<String>)> {
    let me = std::env::current_exe()?;
    let log = scratch.join("child.log");
    let mut cmd = Command::new(me);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?);
    sys::die_with_parent(&mut cmd);
    if let Some(cpus) = cpus {
        sys::pin_command(&mut cmd, cpus);
    }
    let mut child = cmd.spawn().context("starting a child of this tool")?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let spawned = Spawned {
        child: Some(child),
        root: scratch,
        log,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut got = Vec::new();
        for _ in 0..lines {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => got.push(line.trim().to_owned()),
            }
        }
        let _ = tx.send(got);
        // Keep reading so the child never blocks on a full pipe.
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    });
    let got = rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
    if got.len() < lines {
        bail!(
            "child {:?} printed {} of {lines} start-up lines:\n{}",
            args,
            got.len(),
            spawned.log_tail()
        );
    }
    Ok((spawned, got))
}
