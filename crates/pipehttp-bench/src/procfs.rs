//! What the benchmarks read from Linux's `/proc`: a server's CPU time,
//! resident memory and open descriptors, summed over the server and the
//! processes it started (nginx's workers), and how busy the machine is.
//!
//! Everything here returns `None` (or zero) off Linux, where `/proc` is
//! not there: the benchmarks that need it say so instead of failing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// One process's line in `/proc/PID/stat`, the fields the benchmarks use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    pub comm: String,
    pub ppid: u32,
    /// User + system time, in clock ticks.
    pub cpu_ticks: u64,
}

/// Parses a `/proc/PID/stat` line. The command name is in parentheses and
/// may itself hold spaces and parentheses, so the fields after it are
/// counted from its last `)`.
#[must_use]
pub fn parse_stat(line: &str) -> Option<Stat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let pid = line[..open].trim().parse().ok()?;
    let comm = line[open + 1..close].to_owned();
    // After ")": state(3) ppid(4) ... utime(14) stime(15); index 0 is state.
    let rest: Vec<&str> = line[close + 1..].split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        pid,
        comm,
        ppid: u32::try_from(field(4)?).ok()?,
        cpu_ticks: field(14)? + field(15)?,
    })
}

fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process now running, by pid.
fn all_stats() -> BTreeMap<u32, Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_stat)
        .map(|s| (s.pid, s))
        .collect()
}

/// `pid` and every process below it (nginx's master and its workers).
#[must_use]
pub fn process_tree(pid: u32) -> Vec<u32> {
    descendants(pid, &all_stats())
}

fn descendants(pid: u32, stats: &BTreeMap<u32, Stat>) -> Vec<u32> {
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(stats.values().filter(|s| s.ppid == parent).map(|s| s.pid));
        i += 1;
    }
    tree
}

/// Clock ticks per second (`getconf CLK_TCK`); Linux reports 100.
#[must_use]
pub fn ticks_per_second() -> u64 {
    #[cfg(unix)]
    {
        // SAFETY: sysconf reads a constant of the system; no memory is passed.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if let Ok(hz) = u64::try_from(hz)
            && hz > 0
        {
            return hz;
        }
    }
    100
}

/// CPU time (user + system) the processes of `tree` have used so far, in
/// microseconds; `None` when none of them can be read.
#[must_use]
pub fn cpu_micros(tree: &[u32]) -> Option<f64> {
    let stats: Vec<Stat> = tree.iter().filter_map(|&pid| read_stat(pid)).collect();
    if stats.is_empty() {
        return None;
    }
    let ticks: u64 = stats.iter().map(|s| s.cpu_ticks).sum();
    Some(ticks as f64 * 1e6 / ticks_per_second() as f64)
}

/// A field of `/proc/PID/status` in KiB (`VmRSS:`, `VmHWM:`).
#[must_use]
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Resident memory of every process in `tree`, summed, in KiB: (now, peak).
#[must_use]
pub fn rss_kib(tree: &[u32]) -> Option<(u64, u64)> {
    let mut sum = None;
    for pid in tree {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let (rss, peak) = sum.get_or_insert((0, 0));
        *rss += status_kib(&status, "VmRSS:").unwrap_or(0);
        *peak += status_kib(&status, "VmHWM:").unwrap_or(0);
    }
    sum
}

/// Open descriptors of every process in `tree`, summed.
#[must_use]
pub fn open_fds(tree: &[u32]) -> usize {
    tree.iter()
        .filter_map(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .map(Iterator::count)
        .sum()
}

/// The aggregate `cpu` line of `/proc/stat`: (idle ticks, all ticks).
#[must_use]
pub fn parse_cpu_line(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is
    // already inside user and nice).
    let total = ticks.iter().take(8).sum();
    Some((*ticks.get(3)? + ticks.get(4).copied().unwrap_or(0), total))
}

/// How busy the machine is over `window`: the share of CPU time that was
/// idle, in per cent, and the processes that used at least 5 % of one CPU
/// meanwhile, busiest first, as `name pct%`.
#[must_use]
pub fn busyness(window: Duration) -> Option<(f64, Vec<String>)> {
    let cpu0 = parse_cpu_line(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let procs0 = all_stats();
    std::thread::sleep(window);
    let cpu1 = parse_cpu_line(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let procs1 = all_stats();
    let total = cpu1.1.saturating_sub(cpu0.1).max(1) as f64;
    let idle = 100.0 * cpu1.0.saturating_sub(cpu0.0) as f64 / total;
    let window_ticks = window.as_secs_f64() * ticks_per_second() as f64;
    let mut busy: Vec<(f64, String)> = procs1
        .values()
        .filter_map(|s| {
            let before = procs0.get(&s.pid)?;
            let pct = 100.0 * s.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / window_ticks;
            (pct >= 5.0).then(|| (pct, s.comm.clone()))
        })
        .collect();
    busy.sort_by(|a, b| b.0.total_cmp(&a.0));
    Some((
        idle,
        busy.into_iter()
            .map(|(pct, name)| format!("{name} {pct:.0}%"))
            .collect(),
    ))
}

/// A `key: value` line of a /proc file such as `/proc/cpuinfo`.
#[must_use]
pub fn proc_field(path: impl AsRef<Path>, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names() {
        let line = "4242 (tokio-rt (worker) 1) S 1 4242 4242 0 -1 4194368 \
                    100 0 0 0 250 75 0 0 20 0 3 0 123 1000 200 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "tokio-rt (worker) 1");
        assert_eq!(s.ppid, 1);
        assert_eq!(s.cpu_ticks, 325);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn trees_follow_parents() {
        let stat = |pid, ppid| Stat {
            pid,
            comm: String::new(),
            ppid,
            cpu_ticks: 0,
        };
        let stats: BTreeMap<u32, Stat> = [
            stat(1, 0),
            stat(10, 1),
            stat(11, 10),
            stat(12, 10),
            stat(13, 1),
        ]
        .into_iter()
        .map(|s| (s.pid, s))
        .collect();
        let mut tree = descendants(10, &stats);
        tree.sort_unstable();
        assert_eq!(tree, [10, 11, 12]);
    }

    #[test]
    fn status_and_cpu_lines() {
        let status = "Name:\tnginx\nVmHWM:\t   9000 kB\nVmRSS:\t   7000 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(7000));
        assert_eq!(status_kib(status, "VmHWM:"), Some(9000));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        let stat = "cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 50 2 25 400 10 0 1 1 0 0\n";
        assert_eq!(parse_cpu_line(stat), Some((820, 981)));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_back() {
        let me = std::process::id();
        assert!(process_tree(me).contains(&me));
        assert!(cpu_micros(&[me]).is_some());
        let (rss, peak) = rss_kib(&[me]).unwrap();
        assert!(rss > 0 && peak >= rss);
        assert!(open_fds(&[me]) >= 3);
    }
}
