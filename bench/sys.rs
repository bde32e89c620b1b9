//! Process figures from /proc (CPU time, resident memory), the file
//! descriptor limit and signals. Linux only, like the deployment target.

use std::time::Instant;

/// CPU seconds (user + system) and resident memory of one process at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub cpu_s: f64,
    pub rss_kb: u64,
    pub at: Instant,
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// `pid` None means this process.
pub fn sample(pid: Option<u32>) -> Option<Sample> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_owned(),
    };
    let at = Instant::now();
    let stat_cpu_s = stat_cpu_s(&format!("{dir}/stat"))?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cpu_s = match pid {
        // This process's own clock counts nanoseconds, not 10 ms ticks.
        None => cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID),
        Some(_) => stat_cpu_s,
    };
    Some(Sample { cpu_s, rss_kb, at })
}

/// utime + stime, in seconds (10 ms ticks), of a process's or a thread's
/// `stat` file.
fn stat_cpu_s(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the man page, so utime (14) and stime (15) sit at 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clk_tck())
}

fn cpu_clock(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// CPU seconds used by the calling thread.
pub fn thread_cpu_s() -> f64 {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU seconds used by thread `tid` of this process (10 ms ticks).
pub fn task_cpu_s(tid: libc::pid_t) -> Option<f64> {
    stat_cpu_s(&format!("/proc/self/task/{tid}/stat"))
}

/// Raises the soft open-file limit to the hard one, so thousands of
/// connections (and their tasks' sockets, for the MQTT driver) fit.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid, writable rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    lim.rlim_cur
}

/// Asks for 1 ns timer slack on the calling thread (default 50 µs), so the
/// schedule's sleeps end close to when they should.
pub fn fine_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Makes a child get SIGTERM if this tool dies first (even by SIGKILL), so
/// no server or relay outlives a crashed run. Spawn from the main thread:
/// the signal follows the spawning thread's exit.
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and the closure touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            );
            Ok(())
        });
    }
}

/// The most CPUs an affinity mask here can name (glibc's `CPU_SETSIZE`).
const MAX_CPUS: usize = 1024;

/// A CPU list as `taskset -c` and /proc's `Cpus_allowed_list` write it:
/// `1`, `0,2`, `0-3`, `0-1,6`. Sorted, without repeats, never empty.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let num = |t: &str| {
        t.trim().parse::<usize>().map_err(|_| {
            format!("{t:?} is not a CPU number (expected a list such as 0, 0,2 or 0-3)")
        })
    };
    let mut cpus = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!(
                "{s:?}: empty entry (expected a list such as 0, 0,2 or 0-3)"
            ));
        }
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if lo > hi {
            return Err(format!("{part}: a range runs low to high"));
        }
        if hi >= MAX_CPUS {
            return Err(format!("CPU {hi}: CPU numbers stop at {}", MAX_CPUS - 1));
        }
        cpus.extend(lo..=hi);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// A parsed `--server-cpus` / `--generator-cpus` value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct CpuList(pub Vec<usize>);

/// clap's parser for [`CpuList`].
pub fn cpu_list_arg(s: &str) -> Result<CpuList, String> {
    parse_cpu_list(s).map(CpuList)
}

/// The short form of a CPU list: `0-3,6`.
pub fn fmt_cpu_list(cpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if j == i {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    out.join(",")
}

fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: c < MAX_CPUS (parse_cpu_list), inside the set's bits.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    set
}

/// The CPUs this thread may run on now.
pub fn allowed_cpus() -> std::io::Result<Vec<usize>> {
    // SAFETY: zeroed is a valid empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid, writable cpu_set_t of the size passed.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: c < MAX_CPUS, inside the set's bits.
    Ok((0..MAX_CPUS)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Pins every thread of process `pid` (None: this process) to `cpus`.
/// Threads started later inherit their creator's mask, so pinning a
/// process before it starts threads pins all of them.
pub fn pin_process(pid: Option<u32>, cpus: &[usize]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let dir = match pid {
        Some(p) => format!("/proc/{p}/task"),
        None => "/proc/self/task".to_owned(),
    };
    let set = cpu_set(cpus);
    let mut pinned = 0;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        let Some(tid) = entry?
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: set is a valid cpu_set_t of the size passed.
        let rc =
            unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            // A thread that ended since the listing is no error.
            if e.raw_os_error() == Some(libc::ESRCH) {
                continue;
            }
            return Err(e).with_context(|| {
                format!(
                    "pinning thread {tid} of {dir} to CPUs {}",
                    fmt_cpu_list(cpus)
                )
            });
        }
        pinned += 1;
    }
    if pinned == 0 {
        anyhow::bail!("{dir}: no thread to pin");
    }
    Ok(())
}

/// Makes a child start pinned to `cpus` (set between fork and exec, so
/// every thread it ever starts inherits the mask).
pub fn pin_command(cmd: &mut std::process::Command, cpus: &[usize]) {
    use std::os::unix::process::CommandExt;
    let set = cpu_set(cpus);
    // SAFETY: sched_setaffinity is a plain system call, async-signal-safe;
    // the closure only reads its own copy of the set.
    unsafe {
        cmd.pre_exec(move || {
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `Cpus_allowed_list` of a process (None: this one), as /proc writes it.
pub fn cpus_allowed_list(pid: Option<u32>) -> Option<String> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_owned(),
    };
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        l.strip_prefix("Cpus_allowed_list:")
            .map(|v| v.trim().to_owned())
    })
}

/// The CPU sets asked for with `--server-cpus` and `--generator-cpus`, for
/// the reports; set once, before the generator starts any thread.
#[derive(Debug, Clone, Default)]
pub struct Pinning {
    pub server: Option<Vec<usize>>,
    pub generator: Option<Vec<usize>>,
    /// The CPUs this process could use before it pinned itself.
    pub machine: Vec<usize>,
}

static PINNING: std::sync::OnceLock<Pinning> = std::sync::OnceLock::new();

pub fn set_pinning(p: Pinning) {
    let _ = PINNING.set(p);
}

pub fn pinning() -> Pinning {
    PINNING.get().cloned().unwrap_or_default()
}

impl Pinning {
    /// `server CPU 0, generator CPU 1`, or None when nothing is pinned.
    pub fn describe(&self) -> Option<String> {
        let one = |what: &str, c: &Option<Vec<usize>>| match c {
            Some(c) => format!(
                "{what} CPU{} {}",
                if c.len() == 1 { "" } else { "s" },
                fmt_cpu_list(c)
            ),
            None => format!("{what} not pinned"),
        };
        (self.server.is_some() || self.generator.is_some()).then(|| {
            format!(
                "{}, {}",
                one("server", &self.server),
                one("generator", &self.generator)
            )
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "server": self.server,
            "generator": self.generator,
            "available": if self.machine.is_empty() {
                allowed_cpus().map(|c| fmt_cpu_list(&c)).ok()
            } else {
                Some(fmt_cpu_list(&self.machine))
            },
            "generator_allowed": cpus_allowed_list(None),
        })
    }
}

pub fn terminate(pid: u32) {
    // SAFETY: plain kill(2) on a child we started.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}

pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Seconds since the Unix epoch and the same as RFC 3339 UTC, without a date crate.
pub fn timestamp() -> (u64, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        secs,
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_self() {
        let s = sample(None).unwrap();
        assert!(s.rss_kb > 0);
        assert!(s.cpu_s >= 0.0);
        assert!(thread_cpu_s() > 0.0);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("1"), Ok(vec![1]));
        assert_eq!(parse_cpu_list("0,2"), Ok(vec![0, 2]));
        assert_eq!(parse_cpu_list(" 3-5 ,1, 4"), Ok(vec![1, 3, 4, 5]));
        assert_eq!(parse_cpu_list("0-1,6"), Ok(vec![0, 1, 6]));
        for bad in ["", "a", "1,", "-1", "3-1", "1-", "0:1", "1024", "2-5000"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(fmt_cpu_list(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(fmt_cpu_list(&[1]), "1");
        assert_eq!(fmt_cpu_list(&[0, 2, 3]), "0,2-3");
        assert_eq!(fmt_cpu_list(&[]), "");
    }

    #[test]
    fn pinning_described() {
        let p = Pinning {
            server: Some(vec![0]),
            generator: Some(vec![1, 2, 3]),
            machine: vec![0, 1, 2, 3],
        };
        assert_eq!(p.describe().unwrap(), "server CPU 0, generator CPUs 1-3");
        assert_eq!(Pinning::default().describe(), None);
        let p = Pinning {
            generator: Some(vec![1]),
            ..Pinning::default()
        };
        assert_eq!(p.describe().unwrap(), "server not pinned, generator CPU 1");
    }

    /// Pins a child to the CPUs this process has, and checks /proc agrees.
    #[test]
    fn child_starts_pinned() {
        let cpus = allowed_cpus().unwrap();
        let one = vec![*cpus.last().unwrap()];
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("5");
        pin_command(&mut cmd, &one);
        let mut child = cmd.spawn().unwrap();
        let got = cpus_allowed_list(Some(child.id()));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(got.as_deref(), Some(fmt_cpu_list(&one).as_str()));
    }

    #[test]
    fn timestamp_shape() {
        let (secs, text) = timestamp();
        assert!(secs > 1_700_000_000);
        assert_eq!(text.len(), 20);
        assert!(text.starts_with("20"));
    }
}
