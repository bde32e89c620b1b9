//! Damaged store files (issue #13 item 6), with real files: a real server
//! writes conversations, stops, restarts once (so sled has a snapshot and
//! the data sits in the part of its log that is read on demand, as on any
//! server that has run a while) and stops; then the `db` file is damaged
//! with `std::fs` in four deterministic ways and the real binary is run on
//! it: `serve` never panics (exit 3 naming the file, or it starts and
//! reports the damage), `store check` reports the damage, and `store
//! repair` salvages what reads into a new data dir a server then serves.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestServer, group, text, try_full_history};
use rand::{Rng, SeedableRng};
use tidings::client::Client;
use tidings::protocol::{ConvId, SendMessage};

#[path = "common/process.rs"]
#[allow(dead_code)]
mod process;

const CONVS: usize = 12;
const PER_CONV: usize = 60;
/// The exit code README documents for damaged store files.
const EXIT_STORE_DAMAGED: i32 = 3;

fn body(conv: usize, n: usize) -> String {
    // ~1 KiB, so the log grows past a few MiB; the prefix is findable.
    format!("c{conv:02}m{n:03}|{}", "abcdefgh".repeat(128))
}

type Expected = BTreeMap<ConvId, Vec<String>>;

/// Writes CONVS conversations of PER_CONV messages through a real server,
/// restarts it once and stops it; returns the data dir and what was sent.
async fn written_store() -> (tempfile::TempDir, Expected) {
    // 720 sends as fast as one client can: not what the quota is for.
    let mut s = TestServer::start_with(|c| c.quotas.messages_per_sec = 0).await;
    let (tom, ev) = s.connect("Tom").await;
    let mut expected = Expected::new();
    let mut convs = Vec::new();
    for c in 0..CONVS {
        let id = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
        convs.push((c, id));
        expected.insert(id, (0..PER_CONV).map(|n| body(c, n)).collect());
    }
    // One sender per conversation at a time, all conversations at once.
    let sends = convs.iter().map(|&(c, id)| {
        let tom = tom.clone();
        async move {
            for n in 0..PER_CONV {
                tom.send(SendMessage::text(id, body(c, n)))
                    .await
                    .expect("send");
            }
        }
    });
    futures_join(sends).await;
    drop((tom, ev));
    s.stop().await;
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&s.data_dir(), dir.path());
    // One start and clean stop of the real binary: sled's recovery writes
    // a snapshot, as on any server that has been restarted.
    let (mut server, _admin) = serve(dir.path()).expect("restarts");
    // SAFETY: signals our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    for f in [
        "serve.stderr",
        tidings::server::ADDR_FILE,
        tidings::admin::ADDR_FILE,
    ] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    (dir, expected)
}

async fn futures_join(futs: impl Iterator<Item = impl Future<Output = ()> + Send + 'static>) {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    for h in handles {
        h.await.unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".addr") {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

fn db_file(data: &Path) -> PathBuf {
    data.join("store").join("db")
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Half,
    MinusMib,
    Flip20,
    ZeroPage,
}

fn damage(data: &Path, how: Damage) {
    let path = db_file(data);
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    assert!(
        len > 2 << 20,
        "the store is big enough to cut by 1 MiB: {len}"
    );
    match how {
        Damage::Half => bytes.truncate(len / 2),
        Damage::MinusMib => bytes.truncate(len - (1 << 20)),
        Damage::Flip20 => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(13);
            for _ in 0..20 {
                let at = rng.gen_range(0..len);
                bytes[at] ^= 1 << rng.gen_range(0..8);
            }
        }
        Damage::ZeroPage => {
            let at = (len / 2) & !4095;
            bytes[at..at + 4096].fill(0);
        }
    }
    std::fs::write(&path, bytes).unwrap();
}

/// Runs `tidings ARGS` on `data` to completion (bounded), returning exit
/// code, stdout and stderr.
fn tidings(data: &Path, args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .env("TIDINGS_SERVER_DATA_DIR", data)
        .env_remove("TIDINGS_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "tidings {args:?} did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().expect("exited, not killed by a signal"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tidings serve` on `data`: Err((code, stderr)) if it exited, Ok with the
/// running process and its admin address once it listens.
fn serve(data: &Path) -> Result<(process::ServerProcess, String), (i32, String)> {
    let addr_file = data.join(tidings::server::ADDR_FILE);
    let admin_file = data.join(tidings::admin::ADDR_FILE);
    let stderr_path = data.join("serve.stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .arg("serve")
        .env("TIDINGS_SERVER_DATA_DIR", data)
        .env("TIDINGS_SERVER_LISTEN", "127.0.0.1:0")
        .env("TIDINGS_GATEWAY_LISTEN", "127.0.0.1:0")
        .env("TIDINGS_ADMIN_LISTEN", "127.0.0.1:0")
        .env("TIDINGS_LOG_LEVEL", "warn")
        .env_remove("TIDINGS_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let err = std::fs::read_to_string(&stderr_path).unwrap();
            return Err((status.code().unwrap_or(-1), err));
        }
        if let (Ok(a), Ok(admin)) = (
            std::fs::read_to_string(&addr_file),
            std::fs::read_to_string(&admin_file),
        ) && let Ok(addr) = a.trim().parse()
            && !admin.trim().is_empty()
        {
            return Ok((
                process::ServerProcess { child, addr },
                admin.trim().to_string(),
            ));
        }
        assert!(
            Instant::now() < deadline,
            "serve neither started nor exited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A conversation's history as texts, or the error that stopped it.
async fn history(c: &Client, conv: ConvId) -> Result<Vec<String>, String> {
    let all = try_full_history(c, conv).await.map_err(|e| e.to_string())?;
    Ok(all.iter().map(|m| text(m).to_string()).collect())
}

async fn healthz(admin: &str) -> serde_json::Value {
    common::admin::http_client()
        .get(format!("http://{admin}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn check_json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Each way of damaging the file: `store check` (run first, on the damaged
/// file as it is) says damaged with exit 3; `serve` exits 3 naming the
/// file, or starts, and then every conversation either reads in full and
/// intact or is reported damaged by `/healthz`, and check said damaged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_damaged_db_file_never_panics_serve_and_check_reports_it() {
    let (base, expected) = written_store().await;
    for how in [
        Damage::Half,
        Damage::MinusMib,
        Damage::Flip20,
        Damage::ZeroPage,
    ] {
        let case = tempfile::tempdir().unwrap();
        copy_dir(base.path(), case.path());
        damage(case.path(), how);
        let before = std::fs::read(db_file(case.path())).unwrap();

        let (code, out, err) = tidings(case.path(), &["store", "check"]);
        let report = check_json(&out);
        // A page zeroed where sled keeps only stale data damages nothing:
        // then check says whole, and the server below must serve it all.
        let clean = code == 0;
        if !clean {
            assert_eq!(
                code, EXIT_STORE_DAMAGED,
                "{how:?}: check exit; {err}\n{out}"
            );
            assert!(err.contains("is damaged"), "{how:?}: {err}");
            let says_what = report["unreadable"].is_string()
                || !report["damaged_keys"].as_array().unwrap().is_empty()
                || report["trees"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| !t["unread"].is_null());
            assert!(
                says_what,
                "{how:?}: the report says what is damaged: {report}"
            );
        }
        assert_eq!(
            std::fs::read(db_file(case.path())).unwrap(),
            before,
            "{how:?}: check changed the damaged file"
        );
        assert!(
            !std::fs::read_dir(case.path()).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("store.check")),
            "{how:?}: check left its scratch copy"
        );

        match serve(case.path()) {
            Err((code, err)) => {
                assert_ne!(code, 101, "{how:?}: serve panicked: {err}");
                assert_eq!(code, EXIT_STORE_DAMAGED, "{how:?}: {err}");
                let db = db_file(case.path());
                assert!(
                    err.contains(&db.display().to_string()),
                    "{how:?}: names the file: {err}"
                );
                assert!(err.contains("tidings store check"), "{how:?}: {err}");
                assert!(!clean, "{how:?}: check said whole but serve refused it");
            }
            Ok((server, admin)) => {
                let (tom, _ev) = Client::connect(process::options(case.path(), server.addr, "Tom"))
                    .await
                    .expect("login");
                let mut lost = Vec::new();
                for (conv, want) in &expected {
                    match history(&tom, *conv).await {
                        Ok(got) if &got == want => {}
                        _ => lost.push(conv.to_string()),
                    }
                }
                let health = healthz(&admin).await;
                if clean {
                    assert!(
                        lost.is_empty(),
                        "{how:?}: check said whole, yet {lost:?} are not"
                    );
                }
                let damaged: Vec<String> = health["conversations"]
                    .as_array()
                    .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default();
                for conv in &lost {
                    assert!(
                        damaged.contains(conv),
                        "{how:?}: {conv} is not whole yet /healthz says {health}"
                    );
                }
                if !lost.is_empty() {
                    assert_eq!(health["status"], "damaged", "{how:?}");
                    let metrics = common::admin::http_client()
                        .get(format!("http://{admin}/metrics"))
                        .send()
                        .await
                        .unwrap()
                        .text()
                        .await
                        .unwrap();
                    assert!(
                        metrics.contains(&format!(
                            "tidings_store_damaged_conversations {}",
                            damaged.len()
                        )),
                        "{how:?}: {metrics}"
                    );
                }
            }
        }
    }
}

/// Flips a byte in every copy of one conversation's message bodies (found
/// by their prefix), in the part of the log sled reads on demand: sled
/// opens the file and that conversation fails to read. `store repair`
/// salvages every other record into a new data dir, without touching the
/// damaged one, and a server on the new dir serves them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repair_salvages_every_readable_record_into_a_new_dir() {
    let (base, expected) = written_store().await;
    let path = db_file(base.path());
    let pristine = std::fs::read(&path).unwrap();
    // Copies of conversation 3's bodies, in file order. sled keeps stale
    // copies and checks the newest part of its log when it opens, so the
    // first copy whose damage sled opens with and a read then meets is
    // chosen; the data and the search are the same every run.
    let needle = b"c03m0";
    let hits: Vec<usize> = pristine
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| w == needle)
        .map(|(i, _)| i + needle.len() + 20)
        .collect();
    assert!(!hits.is_empty());
    let mut chosen = None;
    for at in hits {
        let trial = tempfile::tempdir().unwrap();
        copy_dir(base.path(), trial.path());
        let mut bytes = pristine.clone();
        bytes[at] ^= 0x55;
        std::fs::write(db_file(trial.path()), &bytes).unwrap();
        let (code, out, _) = tidings(trial.path(), &["store", "check"]);
        let report = check_json(&out);
        if code == EXIT_STORE_DAMAGED && report["unreadable"].is_null() {
            chosen = Some((trial, bytes, report));
            break;
        }
    }
    let (trial, bytes, report) = chosen.expect("a copy whose damage sled opens with");
    let data = trial.path();
    let path = db_file(data);
    let damaged: Vec<String> = report["damaged_conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(!damaged.is_empty(), "{report}");

    let new = tempfile::tempdir().unwrap();
    let into = new.path().join("repaired");
    let (code, out, err) = tidings(data, &["store", "repair", "--into", into.to_str().unwrap()]);
    assert_eq!(
        code, EXIT_STORE_DAMAGED,
        "repair reports the damage it worked around: {err}\n{out}"
    );
    assert!(err.contains("salvaged"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the damaged file is untouched"
    );
    let (code, out, err) = tidings(&into, &["store", "check"]);
    assert_eq!(code, 0, "the repaired store is whole: {err}\n{out}");

    let (server, admin) = serve(&into).expect("serves the repaired dir");
    let (tom, _ev) = Client::connect(process::options(&into, server.addr, "Tom"))
        .await
        .expect("login with the copied credentials");
    let mut whole = 0;
    for (conv, want) in &expected {
        let got = history(&tom, *conv)
            .await
            .expect("every conversation reads");
        if damaged.contains(&conv.to_string()) {
            // What survived is a part of what was sent, in order.
            let mut it = want.iter();
            for m in &got {
                assert!(
                    it.any(|w| w == m),
                    "{conv}: {m:.8} out of order or invented"
                );
            }
        } else {
            assert_eq!(&got, want, "{conv}: an undamaged conversation is whole");
            whole += 1;
        }
    }
    assert!(whole > 0);
    assert_eq!(healthz(&admin).await["status"], "ok");
}
