//! UDP socket buffer sizing. QUIC needs larger UDP buffers than the Linux
//! defaults: a burst of packets that outruns the receive buffer is dropped by
//! the kernel and has to be recovered by QUIC's loss detection, which costs
//! throughput and latency. `systemd/99-tidings-udp.conf` raises the ceiling.

use std::io;
use std::net::UdpSocket;
use std::path::Path;

/// What quic-go and quinn recommend for `net.core.rmem_max`/`wmem_max`, and
/// what `systemd/99-tidings-udp.conf` sets.
pub const RECOMMENDED_BUFFER_BYTES: u64 = 7_500_000;

/// Below this ceiling a busy server drops packets; it is the threshold of
/// the start-up warning.
pub const MIN_BUFFER_BYTES: u64 = 2 * 1024 * 1024;

/// Where the README installs the sysctl drop-in.
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/99-tidings-udp.conf";

const RMEM_MAX: &str = "/proc/sys/net/core/rmem_max";
const WMEM_MAX: &str = "/proc/sys/net/core/wmem_max";

/// A warning to log at start when the kernel caps UDP buffers below
/// [`MIN_BUFFER_BYTES`]. `None` when the limits are fine or cannot be read
/// (not Linux, or `/proc/sys` hidden): nothing useful to say then.
pub fn buffer_advice() -> Option<String> {
    let rmem = read_sysctl(Path::new(RMEM_MAX))?;
    let wmem = read_sysctl(Path::new(WMEM_MAX))?;
    advice_for(rmem, wmem)
}

/// The warning for the given `net.core.rmem_max` and `wmem_max`, if either
/// is too small. Pure so the thresholds are testable without `/proc`.
pub fn advice_for(rmem_max: u64, wmem_max: u64) -> Option<String> {
    let low: Vec<String> = [
        ("net.core.rmem_max", rmem_max),
        ("net.core.wmem_max", wmem_max),
    ]
    .into_iter()
    .filter(|&(_, v)| v < MIN_BUFFER_BYTES)
    .map(|(k, v)| format!("{k} = {v}"))
    .collect();
    if low.is_empty() {
        return None;
    }
    Some(format!(
        "UDP buffer limits are small ({}; QUIC wants at least {MIN_BUFFER_BYTES}, \
         {RECOMMENDED_BUFFER_BYTES} recommended), so bursts may be dropped: install \
         systemd/99-tidings-udp.conf as {SYSCTL_FILE} and run `sysctl --system`",
        low.join(", ")
    ))
}

/// A `/proc/sys` value as a number; `None` if absent or unreadable.
fn read_sysctl(path: &Path) -> Option<u64> {
    parse_sysctl(&std::fs::read_to_string(path).ok()?)
}

fn parse_sysctl(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Asks the kernel for `bytes` of receive and send buffer on `socket` and
/// returns what it granted (Linux caps at `rmem_max`/`wmem_max` and reports
/// double the usable size). `rmem_max` is only a ceiling: a socket that never
/// asks keeps the small default, so an endpoint has to call this for the
/// sysctl drop-in to matter.
pub fn request_buffers(socket: &UdpSocket, bytes: usize) -> io::Result<(usize, usize)> {
    let state = quinn::udp::UdpSocketState::new(socket.into())?;
    // Failing to grow is not fatal: the socket still works, only with the
    // default sizes, which the read-back below reports.
    let _ = state.set_recv_buffer_size(socket.into(), bytes);
    let _ = state.set_send_buffer_size(socket.into(), bytes);
    Ok((
        state.recv_buffer_size(socket.into())?,
        state.send_buffer_size(socket.into())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_limits_need_no_advice() {
        assert_eq!(advice_for(7_500_000, 7_500_000), None);
        assert_eq!(advice_for(MIN_BUFFER_BYTES, MIN_BUFFER_BYTES), None);
    }

    #[test]
    fn small_limits_are_named_with_the_fix() {
        let text = advice_for(212_992, 7_500_000).expect("rmem too small");
        assert!(text.contains("net.core.rmem_max = 212992"), "{text}");
        assert!(!text.contains("wmem_max"), "{text}");
        assert!(text.contains(SYSCTL_FILE), "{text}");

        let text = advice_for(MIN_BUFFER_BYTES, MIN_BUFFER_BYTES - 1).expect("wmem too small");
        assert!(text.contains("net.core.wmem_max"), "{text}");
        assert!(!text.contains("rmem_max"), "{text}");

        let text = advice_for(0, 0).expect("both too small");
        assert!(
            text.contains("rmem_max = 0, net.core.wmem_max = 0"),
            "{text}"
        );
    }

    #[test]
    fn sysctl_text_parses() {
        assert_eq!(parse_sysctl("4194304\n"), Some(4_194_304));
        assert_eq!(parse_sysctl(" 212992 "), Some(212_992));
        assert_eq!(parse_sysctl(""), None);
        assert_eq!(parse_sysctl("lots"), None);
        assert_eq!(parse_sysctl("-1"), None);
    }

    #[test]
    fn absent_file_gives_none() {
        assert_eq!(read_sysctl(Path::new("/nonexistent/rmem_max")), None);
    }

    #[test]
    fn buffers_can_be_requested() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
        let (recv, send) = request_buffers(&socket, 1 << 20).expect("buffer sizes");
        assert!(recv > 0 && send > 0, "{recv} {send}");
    }
}
