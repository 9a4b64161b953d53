//! Many open connections: the memory the agent needs for 10,000 keep-alive connections that
//! together call 1,000 different endpoints.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use anyhow::{Context as _, bail};

const WORDS: [&str; 10] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
];

/// `count` distinct paths of three literal segments (`/alpha/bravo/charlie`), so each is its own
/// endpoint: no segment looks like a value, and no position has more than ten literals (below
/// the templating threshold that would fold them into a parameter).
pub fn endpoint_paths(count: usize) -> Vec<String> {
    let mut paths = Vec::with_capacity(count);
    'all: for a in WORDS {
        for b in WORDS {
            for c in WORDS {
                if paths.len() == count {
                    break 'all;
                }
                paths.push(format!("/{a}/{b}/{c}"));
            }
        }
    }
    paths
}

/// Open connections, each having made one request; closed when dropped.
pub struct OpenConnections {
    streams: Vec<TcpStream>,
}

impl OpenConnections {
    /// Opens `count` connections to `port`, one request each, paths taken in turn from `paths`.
    pub fn open(port: u16, count: usize, paths: &[String]) -> anyhow::Result<Self> {
        raise_descriptor_limit(count as u64 + 1024)?;
        let mut streams = Vec::with_capacity(count);
        for i in 0..count {
            let mut stream = TcpStream::connect(("127.0.0.1", port))
                .with_context(|| format!("opening connection {i}"))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            let path = &paths[i % paths.len()];
            write!(stream, "GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n")?;
            read_answer(&mut stream)?;
            streams.push(stream);
        }
        Ok(Self { streams })
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }
}

/// Reads one answer of the bench nginx (a head with Content-Length and a short body).
fn read_answer(stream: &mut TcpStream) -> anyhow::Result<()> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            bail!("the server closed a held connection");
        }
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                if !head.starts_with("HTTP/1.1 200") {
                    bail!("unexpected answer: {head}");
                }
                return Ok(());
            }
        }
    }
}

/// Raises this process's open-file limit to at least `needed` (up to the hard limit, which
/// root may raise too).
fn raise_descriptor_limit(needed: u64) -> anyhow::Result<()> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    if soft >= needed {
        return Ok(());
    }
    let hard = hard.max(needed);
    rlimit::Resource::NOFILE
        .set(needed, hard)
        .with_context(|| format!("raising the open-file limit to {needed} (it is {soft})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_distinct() {
        let paths = endpoint_paths(1000);
        let unique: std::collections::HashSet<_> = paths.iter().collect();
        assert_eq!((paths.len(), unique.len()), (1000, 1000));
        assert_eq!(paths[0], "/alpha/alpha/alpha");
    }
}
