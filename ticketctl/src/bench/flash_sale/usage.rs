//! What a process uses, read from Linux's `/proc/<pid>`: resident memory now and at its peak,
//! and the CPU time it has spent.

use std::sync::OnceLock;

use anyhow::Context;

/// One reading of a process.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Resident memory now (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// The most resident memory so far (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
    /// User plus system CPU time since the process started, seconds.
    pub cpu_secs: f64,
}

impl Usage {
    pub fn of(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("read /proc/{pid}/status"))?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("read /proc/{pid}/stat"))?;
        Ok(Self {
            rss_kib: status_kib(&status, "VmRSS").context("no VmRSS")?,
            peak_rss_kib: status_kib(&status, "VmHWM").context("no VmHWM")?,
            cpu_secs: cpu_ticks(&stat).context("no utime and stime")? as f64 / clock_ticks(),
        })
    }
}

/// A `Name:   1234 kB` line of `/proc/<pid>/status`.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `utime + stime` of `/proc/<pid>/stat`, in clock ticks: fields 14 and 15, counted after the
/// command name, which is in parentheses and may hold spaces.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // The first field after the name is field 3 (the state).
    let mut fields = after_name.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`); 100, Linux's value nearly everywhere, when it
/// cannot be asked.
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|ticks| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_count_past_a_name_with_spaces() {
        let stat = "42 (order svc) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(cpu_ticks(stat), Some(300));
    }

    #[test]
    fn memory_lines_read_in_kib() {
        let status = "Name:\tstock-svc\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(10_240));
        assert_eq!(status_kib(status, "VmHWM"), Some(20_480));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn this_process_is_readable() {
        let usage = Usage::of(std::process::id()).expect("own /proc");
        assert!(usage.rss_kib > 0 && usage.peak_rss_kib >= usage.rss_kib);
    }
}
