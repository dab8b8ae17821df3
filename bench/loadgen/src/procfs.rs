//! CPU and memory figures from /proc: the server's and the generator's CPU time
//! (`/proc/PID/stat` utime+stime), per-core busy and steal time (`/proc/stat`), and the
//! server's resident memory (`/proc/PID/status` VmRSS).

use std::time::Instant;

use serde_json::{Value, json};

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime+stime of a process (all its threads, dead ones included), in clock ticks.
pub fn proc_ticks(pid: &str) -> Option<u64> {
    proc_ticks_split(pid).map(|(u, s)| u + s)
}

/// (utime, stime) of a process, in clock ticks.
pub fn proc_ticks_split(pid: &str) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime, stime))
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One `cpuN` line of /proc/stat: (busy, steal, total) in ticks. Busy excludes idle,
/// iowait and steal.
#[derive(Clone, Copy, Default, Debug)]
pub struct CpuLine {
    pub busy: u64,
    pub steal: u64,
    pub total: u64,
}

fn cpu_lines() -> Vec<(String, CpuLine)> {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    s.lines()
        .filter(|l| l.starts_with("cpu"))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?.to_owned();
            let v: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
            // user nice system idle iowait irq softirq steal guest guest_nice
            let get = |i: usize| v.get(i).copied().unwrap_or(0);
            let steal = get(7);
            let idle = get(3) + get(4);
            let total: u64 = (0..8).map(get).sum();
            Some((
                name,
                CpuLine {
                    busy: total - idle - steal,
                    steal,
                    total,
                },
            ))
        })
        .collect()
}

/// A snapshot at the edge of a measured window.
pub struct Snap {
    pub at: Instant,
    pub server: Option<u64>,
    pub server_sys: Option<u64>,
    pub me: Option<u64>,
    pub cpus: Vec<(String, CpuLine)>,
}

pub struct Probe {
    pub server_pid: Option<String>,
    pub server_core: usize,
    pub gen_core: usize,
    tck: f64,
}

impl Probe {
    pub fn new(server_pid: Option<String>, server_core: usize, gen_core: usize) -> Probe {
        Probe {
            server_pid,
            server_core,
            gen_core,
            tck: clk_tck(),
        }
    }

    pub fn snap(&self) -> Snap {
        let split = self.server_pid.as_deref().and_then(proc_ticks_split);
        Snap {
            at: Instant::now(),
            server: split.map(|(u, s)| u + s),
            server_sys: split.map(|(_, s)| s),
            me: proc_ticks("self"),
            cpus: cpu_lines(),
        }
    }

    pub fn rss(&self) -> Option<u64> {
        self.server_pid.as_deref().and_then(rss_kib)
    }

    /// CPU figures over a window: server and generator CPU seconds and shares of a core,
    /// steal and foreign load on both cores.
    pub fn window(&self, a: &Snap, b: &Snap) -> Value {
        let wall = b.at.duration_since(a.at).as_secs_f64();
        let server_cpu = match (a.server, b.server) {
            (Some(x), Some(y)) => Some((y.saturating_sub(x)) as f64 / self.tck),
            _ => None,
        };
        let server_sys = match (a.server_sys, b.server_sys) {
            (Some(x), Some(y)) => Some((y.saturating_sub(x)) as f64 / self.tck),
            _ => None,
        };
        let gen_cpu = match (a.me, b.me) {
            (Some(x), Some(y)) => Some((y.saturating_sub(x)) as f64 / self.tck),
            _ => None,
        };
        let core = |name: &str| -> Option<CpuLine> {
            let x = a.cpus.iter().find(|(n, _)| n == name)?.1;
            let y = b.cpus.iter().find(|(n, _)| n == name)?.1;
            Some(CpuLine {
                busy: y.busy.saturating_sub(x.busy),
                steal: y.steal.saturating_sub(x.steal),
                total: y.total.saturating_sub(x.total),
            })
        };
        let share = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
        let all = core("cpu").unwrap_or_default();
        let sc = core(&format!("cpu{}", self.server_core)).unwrap_or_default();
        let gc = core(&format!("cpu{}", self.gen_core)).unwrap_or_default();
        // Foreign load: what ran on a core besides the process pinned there (other
        // processes, and the kernel's softirq work for the loopback traffic).
        let foreign = |c: CpuLine, own: Option<f64>| {
            let own_ticks = own.unwrap_or(0.0) * self.tck;
            if c.total == 0 {
                0.0
            } else {
                ((c.busy as f64 - own_ticks) / c.total as f64).max(0.0)
            }
        };
        json!({
            "wall_s": wall,
            "server_cpu_s": server_cpu,
            "server_core_share": server_cpu.map(|c| c / wall),
            // The kernel's part of the server's CPU (syscalls, the loopback TCP stack).
            "server_sys_share_of_cpu": match (server_sys, server_cpu) {
                (Some(s), Some(c)) if c > 0.0 => Some(s / c),
                _ => None,
            },
            "gen_cpu_s": gen_cpu,
            "gen_core_share": gen_cpu.map(|c| c / wall),
            "steal_share": share(all.steal, all.total),
            "steal_share_server_core": share(sc.steal, sc.total),
            "foreign_share_server_core": foreign(sc, server_cpu),
            "foreign_share_gen_core": foreign(gc, gen_cpu),
        })
    }
}
