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
    fn timestamp_shape() {
        let (secs, text) = timestamp();
        assert!(secs > 1_700_000_000);
        assert_eq!(text.len(), 20);
        assert!(text.starts_with("20"));
    }
}
