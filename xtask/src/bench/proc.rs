//! What /proc says about a process: CPU time (user + system) and memory (RSS, peak RSS).

use std::time::Duration;

use anyhow::Context as _;

/// Clock ticks per second of /proc/PID/stat's utime and stime (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: u64 = 100;

/// User + system CPU time a process has used so far.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .with_context(|| format!("no CPU time field in /proc/{pid}/stat"))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_millis(total * 1000 / TICKS_PER_SECOND))
}

/// CPU time of a process's live threads to the nanosecond (the first field of each
/// `/proc/PID/task/TID/schedstat`): precise enough for the few microseconds per request the
/// probes add to a server, which 10 ms ticks blur. Threads that ended are not counted: for
/// servers whose threads live as long as they do.
pub fn cpu_time_exact(pid: u32) -> anyhow::Result<Duration> {
    let tasks = format!("/proc/{pid}/task");
    let mut total = 0u64;
    for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
        let path = task?.path().join("schedstat");
        // A thread that ended since the listing has no time to add.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        total += text
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .with_context(|| format!("malformed {}", path.display()))?;
    }
    Ok(Duration::from_nanos(total))
}

/// Resident memory now and its peak since start, in bytes (VmRSS, VmHWM).
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss: u64,
    pub peak: u64,
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Ok(Memory {
        rss: kib("VmRSS:"),
        peak: kib("VmHWM:"),
    })
}

/// Resident memory by kind, in bytes: the kernel's BPF maps mapped into the process (the ring
/// buffer: kernel memory, counted in RSS because it is mapped, twice over for the ring's
/// wrap-around view), the process's own anonymous memory (heap, stacks), and file pages (the
/// binary and its libraries).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Breakdown {
    pub total: u64,
    pub bpf_maps: u64,
    pub anonymous: u64,
    pub files: u64,
}

pub fn breakdown(pid: u32) -> anyhow::Result<Breakdown> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))
        .with_context(|| format!("reading /proc/{pid}/smaps"))?;
    Ok(parse_smaps(&smaps))
}

fn parse_smaps(smaps: &str) -> Breakdown {
    let mut sizes = Breakdown::default();
    let mut kind = 0;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // A mapping's header: address range, perms, offset, device, inode, path.
            let path = fields.nth(4).unwrap_or_default();
            kind = if path.contains("bpf-map") {
                1
            } else if path.is_empty() || path.starts_with('[') {
                2
            } else {
                3
            };
        } else if first == "Rss:" {
            let kib: u64 = fields.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let bytes = kib * 1024;
            sizes.total += bytes;
            match kind {
                1 => sizes.bpf_maps += bytes,
                2 => sizes.anonymous += bytes,
                _ => sizes.files += bytes,
            }
        }
    }
    sizes
}

/// Samples a process's RSS every `every` on a thread until dropped; keeps the largest.
pub struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut max = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(m) = memory(pid) {
                    max = max.max(m.rss);
                }
                std::thread::sleep(every);
            }
            max
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// The largest RSS seen, in bytes.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_rss_by_kind() {
        let smaps = "\
24bb5000000-24bf5000000 rw-p 00000000 00:00 0 
Rss:               33164 kB
7f0d65fff000-7f0d68000000 r--s 00000000 00:0f 1060                       anon_inode:bpf-map
Rss:               32772 kB
55e7a6242000-55e7a717b000 r-xp 00a6a000 fe:01 123                        /usr/bin/sightline
Rss:                6872 kB
55e7d1096000-55e7d10dd000 rw-p 00000000 00:00 0                          [heap]
Rss:                 200 kB
";
        let b = parse_smaps(smaps);
        assert_eq!(b.bpf_maps, 32772 * 1024);
        assert_eq!(b.anonymous, (33164 + 200) * 1024);
        assert_eq!(b.files, 6872 * 1024);
        assert_eq!(b.total, b.bpf_maps + b.anonymous + b.files);
    }
}
