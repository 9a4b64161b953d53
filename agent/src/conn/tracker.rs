//! Feeds capture events to the connection table and the HTTP parsers, and collects the calls
//! they complete. Plain synchronous code: the pipeline runs it in one task.

use std::sync::Arc;

use crate::{
    call::ApiCall,
    capture::{
        clock::Clock,
        event::{CaptureEvent, ConnKind, DataChunk, Direction, Task},
    },
    identity::process::{ExecArgs, ProcessTable},
    protocol::http1::{Limits, exchange::Issue, message::ParseError},
    stats::Stats,
    tls::TlsObservation,
};

use super::{
    assemble::{self, Context},
    descriptors::Descriptors,
    detect::detect_protocol,
    feed::{self, Exchange},
    table::{ConnKey, ConnTable, Connection, Protocol, Role},
};

/// How the agent lets go of a connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Its close (or its process's exit) was seen: requests left unanswered are reported.
    Closed,
    /// Evicted, or replaced without its close being seen: what was in progress is counted as
    /// abandoned, not reported.
    Forgotten,
}

#[derive(Clone, Copy, Debug)]
pub struct TrackerLimits {
    pub max_connections: usize,
    pub idle_timeout_ns: u64,
    pub max_processes: usize,
    pub http: Limits,
}

impl Default for TrackerLimits {
    fn default() -> Self {
        Self {
            max_connections: 65_536,
            idle_timeout_ns: 300_000_000_000,
            max_processes: 32_768,
            http: Limits::default(),
        }
    }
}

pub struct Tracker {
    table: ConnTable,
    descriptors: Descriptors,
    processes: ProcessTable,
    clock: Clock,
    stats: Arc<Stats>,
    limits: TrackerLimits,
    issues: Vec<Issue>,
    tls_observations: Vec<TlsObservation>,
}

impl Tracker {
    pub fn new(limits: TrackerLimits, clock: Clock, stats: Arc<Stats>, proc_root: &str) -> Self {
        Self {
            table: ConnTable::new(limits.max_connections),
            // A connection has a descriptor or two (a forked server's child: 0 and 1).
            descriptors: Descriptors::new(limits.max_connections.saturating_mul(2)),
            processes: ProcessTable::new(limits.max_processes, proc_root),
            clock,
            stats,
            limits,
            issues: Vec::new(),
            tls_observations: Vec::new(),
        }
    }

    /// What was learned about TLS connections since the last call (for the coverage report).
    pub fn take_tls_observations(&mut self) -> Vec<TlsObservation> {
        std::mem::take(&mut self.tls_observations)
    }

    /// Handles one event; completed calls are appended to `out`.
    pub fn handle(&mut self, event: CaptureEvent, out: &mut Vec<ApiCall>) {
        match event {
            CaptureEvent::Data(chunk) => self.on_data(chunk, out),
            CaptureEvent::Conn {
                task,
                fd,
                socket,
                sockets,
                kind,
            } => {
                let role = match kind {
                    ConnKind::Connect => Role::Client,
                    ConnKind::Accept => Role::Server,
                    ConnKind::Close => {
                        self.descriptors.closed(task.tgid, fd);
                        return self.close(socket, task.ts_ns, Ending::Closed, out);
                    }
                    // Another descriptor still holds the socket: only this one is gone.
                    ConnKind::CloseShared => return self.descriptors.closed(task.tgid, fd),
                };
                self.forget_replaced(&task, fd, socket, out);
                // A connect/accept on a socket we still track: the kernel reused the address of
                // one whose close we missed.
                self.close(socket, task.ts_ns, Ending::Forgotten, out);
                self.open(socket, &task, fd, sockets, role, true, out);
            }
            CaptureEvent::Exec {
                task,
                filename,
                args,
                args_complete,
            } => {
                let exec_args = ExecArgs {
                    raw: &args,
                    complete: args_complete,
                };
                if self
                    .processes
                    .on_exec(task.tgid, &filename, exec_args)
                    .is_some()
                {
                    Stats::inc(&self.stats.processes_evicted_cap);
                }
            }
            // The TLS attach thread's business (the pipeline forwards it there), and the
            // identity stage's (the pipeline gives it the cgroup).
            CaptureEvent::ExecMapping { .. } | CaptureEvent::CgroupCreated { .. } => {}
            CaptureEvent::Exit { task } => {
                // The kernel closes a dead process's descriptors without a close() syscall. A
                // socket it was the last to use ends with it (one another process still holds
                // is then taken for closed: the rare case of a socket handed on and used by
                // both).
                for key in self.table.of_process(task.tgid) {
                    self.close(key, task.ts_ns, Ending::Closed, out);
                }
                self.descriptors.exited(task.tgid);
                self.processes.on_exit(task.tgid, task.ts_ns);
            }
        }
    }

    /// Evicts idle connections and forgets old owners and processes.
    pub fn sweep(&mut self, now_ns: u64, out: &mut Vec<ApiCall>) {
        let cutoff = now_ns.saturating_sub(self.limits.idle_timeout_ns);
        for key in self.table.idle_since(cutoff) {
            Stats::inc(&self.stats.connections_evicted_idle);
            self.close(key, now_ns, Ending::Forgotten, out);
        }
        self.table.sweep_owners(now_ns);
        self.processes.sweep(now_ns);
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        key: ConnKey,
        task: &Task,
        fd: i32,
        sockets: crate::capture::event::SocketPair,
        role: Role,
        seen_open: bool,
        out: &mut Vec<ApiCall>,
    ) {
        if self.table.is_full()
            && let Some(victim) = self.table.oldest()
        {
            Stats::inc(&self.stats.connections_evicted_cap);
            self.close(victim, task.ts_ns, Ending::Forgotten, out);
        }
        Stats::inc(&self.stats.connections_opened);
        self.table.insert(
            key,
            Connection {
                sockets,
                tgid: task.tgid,
                fd,
                role,
                protocol: Protocol::Detecting { chunks: 0 },
                last_ts: task.ts_ns,
                seen_open,
                comm: task.comm.clone(),
                cgroup_id: task.cgroup_id,
                thread_id: task.pid,
                tls: None,
                tls_server_name: None,
                handshake: None,
            },
        );
    }

    fn close(&mut self, key: ConnKey, ts: u64, ending: Ending, out: &mut Vec<ApiCall>) {
        let Some(mut conn) = self.table.remove(&key, ts) else {
            return;
        };
        let finished = match (&mut conn.protocol, ending) {
            (Protocol::Http1(http), Ending::Closed) => {
                feed::http1::close(http, ts, &mut self.issues)
            }
            (Protocol::Http2(h2), Ending::Closed) => feed::http2::close(h2, ts),
            // The real end was not seen: saying "closed before a response" would be a guess.
            (Protocol::Http1(http), Ending::Forgotten) => {
                Stats::add(&self.stats.calls_abandoned, http.in_progress() as u64);
                Vec::new()
            }
            (Protocol::Http2(h2), Ending::Forgotten) => {
                Stats::add(&self.stats.calls_abandoned, h2.in_progress() as u64);
                Vec::new()
            }
            _ => Vec::new(),
        };
        let ctx = Context {
            table: &self.table,
            processes: &mut self.processes,
            clock: &self.clock,
        };
        emit(finished, &conn, ctx, &self.stats, out);
        self.count_issues();
    }

    fn on_data(&mut self, chunk: DataChunk, out: &mut Vec<ApiCall>) {
        let key = chunk.socket;
        self.forget_replaced(&chunk.task, chunk.fd, key, out);
        let known = self.table.get_mut(&key).map(|c| c.sockets);
        if !known.is_some_and(|k| k.same_connection(&chunk.sockets)) {
            // New to us (it predates the agent), or the socket's address was reused unseen.
            self.close(key, chunk.task.ts_ns, Ending::Forgotten, out);
            let (task, fd, sockets) = (&chunk.task, chunk.fd, chunk.sockets);
            self.open(key, task, fd, sockets, Role::Unknown, false, out);
        }
        if let Some(parent) = self.table.touch(&key, &chunk.task, chunk.fd)
            && self
                .processes
                .on_fork_handover(parent, chunk.task.tgid)
                .is_some()
        {
            Stats::inc(&self.stats.processes_evicted_cap);
        }
        let Some(conn) = self.table.get_mut(&key) else {
            return;
        };
        feed::tls::note_server_name(conn, &chunk);
        let origin = feed::tls::origin(conn, &chunk, &self.stats, &mut self.tls_observations);
        if matches!(origin, feed::tls::Origin::Skip) {
            return;
        }
        if chunk.after_loss {
            resync_after_loss(conn, &chunk, &self.stats);
        }
        if let Protocol::Detecting { chunks } = conn.protocol {
            let Some(protocol) = detect_protocol(conn, &chunk, chunks, self.limits.http) else {
                conn.protocol = Protocol::Detecting { chunks: chunks + 1 };
                return;
            };
            match protocol {
                Protocol::Other => Stats::inc(&self.stats.connections_not_http),
                Protocol::Tls { .. } => Stats::inc(&self.stats.connections_tls),
                Protocol::Http2(_) => Stats::inc(&self.stats.connections_http2),
                _ => {}
            }
            conn.protocol = protocol;
        }
        let finished = match conn.protocol {
            Protocol::Tls { .. } => {
                feed::tls::feed(conn, &chunk, &mut self.tls_observations);
                return;
            }
            Protocol::Http2(_) => feed::http2::feed(conn, &chunk, &self.stats),
            Protocol::Http1(_) => feed::http1::feed(
                conn,
                &chunk,
                self.limits.http,
                &self.stats,
                &mut self.issues,
            ),
            Protocol::Detecting { .. } | Protocol::Other => return,
        };
        self.emit_open(key, finished, out);
        self.count_issues();
    }

    /// `task`'s descriptor `fd` names `socket`: if it named another socket before, that one's
    /// close event was lost (a full ring buffer). When this process was its last user, it is
    /// let go as a connection whose end was not seen (its requests in progress counted as
    /// abandoned, not reported as cut by a close).
    fn forget_replaced(&mut self, task: &Task, fd: i32, socket: ConnKey, out: &mut Vec<ApiCall>) {
        if let Some(previous) = self.descriptors.name(task.tgid, fd, socket)
            && self
                .table
                .get(&previous)
                .is_some_and(|c| c.tgid == task.tgid)
        {
            self.close(previous, task.ts_ns, Ending::Forgotten, out);
        }
    }

    /// Turns what a parser finished on a connection still in the table into calls.
    fn emit_open(&mut self, key: ConnKey, finished: Vec<Exchange>, out: &mut Vec<ApiCall>) {
        if let Some(conn) = self.table.get(&key) {
            let ctx = Context {
                table: &self.table,
                processes: &mut self.processes,
                clock: &self.clock,
            };
            emit(finished, conn, ctx, &self.stats, out);
        }
    }

    fn count_issues(&mut self) {
        for issue in self.issues.drain(..) {
            match issue {
                Issue::UnpairedResponse => Stats::inc(&self.stats.http_unpaired_responses),
                Issue::TooManyPending => Stats::inc(&self.stats.calls_abandoned),
                Issue::Parse(_, ParseError::HeadTooLarge) => {
                    Stats::inc(&self.stats.http_header_too_large);
                    Stats::inc(&self.stats.http_parse_errors);
                }
                Issue::Parse(_, _) => Stats::inc(&self.stats.http_parse_errors),
            }
        }
    }
}

/// Bytes before `chunk` were dropped: whatever the parsers held may now pair the wrong
/// messages (HTTP/1: start over as if joining mid-way), or frame boundaries and the HPACK
/// table are lost (HTTP/2: its own recovery).
fn resync_after_loss(conn: &mut Connection, chunk: &DataChunk, stats: &Stats) {
    match &mut conn.protocol {
        Protocol::Http1(_) => {
            Stats::inc(&stats.connections_resynced_after_loss);
            conn.protocol = Protocol::Detecting { chunks: 0 };
            conn.seen_open = false;
        }
        Protocol::Http2(h2) => {
            Stats::inc(&stats.connections_resynced_after_loss);
            h2.on_loss(chunk.direction == Direction::Egress);
        }
        _ => {}
    }
}

/// Turns what a connection's parser finished into calls.
fn emit(
    finished: Vec<Exchange>,
    conn: &Connection,
    mut ctx: Context<'_>,
    stats: &Stats,
    out: &mut Vec<ApiCall>,
) {
    Stats::add(&stats.calls_emitted, finished.len() as u64);
    out.extend(
        finished
            .into_iter()
            .map(|e| assemble::api_call(e, conn, &mut ctx)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    use crate::capture::event::{SocketId, SocketPair, TlsLibrary};
    use crate::protocol::http2::frame;

    fn task(ts: u64) -> Task {
        Task {
            tgid: 100,
            pid: 100,
            comm: "server".into(),
            cgroup_id: 1,
            ts_ns: ts,
        }
    }

    fn sockets() -> SocketPair {
        SocketPair {
            local: "127.0.0.1:8080".parse().unwrap(),
            remote: "127.0.0.1:40000".parse().unwrap(),
        }
    }

    fn data(ts: u64, direction: Direction, bytes: &[u8], after_loss: bool) -> CaptureEvent {
        CaptureEvent::Data(DataChunk {
            task: task(ts),
            fd: 5,
            socket: SocketId(5),
            sockets: sockets(),
            direction,
            op: "test",
            total_len: bytes.len() as u32,
            payload: bytes.to_vec(),
            after_loss,
            tls: None,
        })
    }

    fn plaintext(ts: u64, direction: Direction, bytes: &[u8]) -> CaptureEvent {
        let CaptureEvent::Data(mut chunk) = data(ts, direction, bytes, false) else {
            unreachable!()
        };
        chunk.tls = Some(TlsLibrary::OpenSsl);
        CaptureEvent::Data(chunk)
    }

    /// A TLS record header and a few bytes of its (encrypted) body.
    const RECORD: &[u8] = &[0x17, 0x03, 0x03, 0x00, 0x20, 0xde, 0xad, 0xbe, 0xef];
    const CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];

    #[test]
    fn tls_plaintext_makes_calls_and_the_ciphertext_is_never_parsed() {
        let (mut tracker, stats) = tracker();
        let mut out = Vec::new();
        let events = vec![
            data(2, Direction::Ingress, CLIENT_HELLO, false),
            data(3, Direction::Egress, RECORD, false),
            plaintext(4, Direction::Ingress, b"GET /secure HTTP/1.1\r\n\r\n"),
            // The same request's records, had the kernel not dropped them: ignored.
            data(5, Direction::Ingress, RECORD, false),
            data(
                6,
                Direction::Ingress,
                b"GET /ciphertext HTTP/1.1\r\n\r\n",
                false,
            ),
            plaintext(7, Direction::Egress, OK),
        ];
        for event in events {
            tracker.handle(event, &mut out);
        }
        let calls: Vec<(&str, Option<u16>, Option<TlsLibrary>)> = out
            .iter()
            .map(|c| (c.path.as_str(), c.status, c.tls))
            .collect();
        assert_eq!(calls, [("/secure", Some(200), Some(TlsLibrary::OpenSsl))]);
        assert_eq!(stats.connections_tls.load(Ordering::Relaxed), 1);
        assert_eq!(stats.connections_tls_plaintext.load(Ordering::Relaxed), 1);
        assert_eq!(stats.connections_not_http.load(Ordering::Relaxed), 0);
        // Records both ways, then plaintext: one TLS connection, captured.
        let seen: Vec<Option<TlsLibrary>> = tracker
            .take_tls_observations()
            .into_iter()
            .map(|o| o.plaintext)
            .collect();
        assert_eq!(seen, [None, Some(TlsLibrary::OpenSsl)]);
    }

    #[test]
    fn records_one_way_only_are_no_tls_connection_for_the_report() {
        // A port probe answered with an alert: never a TLS connection that went uncaptured.
        let (mut tracker, _) = tracker();
        let mut out = Vec::new();
        tracker.handle(
            data(2, Direction::Egress, &[0x15, 0x03, 0x03, 0x00, 0x02], false),
            &mut out,
        );
        assert!(tracker.take_tls_observations().is_empty());
    }

    fn tracker() -> (Tracker, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let tracker = Tracker::new(
            TrackerLimits::default(),
            Clock::with_offset(0),
            stats.clone(),
            "/nonexistent",
        );
        (tracker, stats)
    }

    fn run(events: Vec<CaptureEvent>) -> (Vec<(String, Option<u16>)>, Arc<Stats>) {
        let (mut tracker, stats) = tracker();
        let mut out = Vec::new();
        tracker.handle(accept(), &mut out);
        for event in events {
            tracker.handle(event, &mut out);
        }
        let calls = out.into_iter().map(|c| (c.path, c.status)).collect();
        (calls, stats)
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    const GONE: &[u8] = b"HTTP/1.1 410 Gone\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn a_server_connection_yields_calls() {
        let (calls, stats) = run(vec![
            data(2, Direction::Ingress, b"GET /a HTTP/1.1\r\n\r\n", false),
            data(3, Direction::Egress, OK, false),
        ]);
        assert_eq!(calls, [("/a".to_string(), Some(200))]);
        assert_eq!(stats.calls_emitted.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_hole_in_the_stream_never_pairs_the_wrong_messages() {
        // Two requests; the first response was dropped; the second's arrives.
        let two_requests = b"GET /first HTTP/1.1\r\n\r\nGET /second HTTP/1.1\r\n\r\n";
        let hole = |marked: bool| {
            vec![
                data(2, Direction::Ingress, two_requests, false),
                data(4, Direction::Egress, GONE, marked),
                data(5, Direction::Ingress, b"GET /third HTTP/1.1\r\n\r\n", false),
                data(6, Direction::Egress, OK, false),
            ]
        };
        // Marked after the loss (as kernel and reader do): resynchronised, nothing mispaired.
        let (calls, stats) = run(hole(true));
        assert_eq!(calls, [("/third".to_string(), Some(200))]);
        assert_eq!(
            stats
                .connections_resynced_after_loss
                .load(Ordering::Relaxed),
            1
        );
        // The control: unmarked, /first would get /second's 410.
        let (calls, _) = run(hole(false));
        assert_eq!(calls[0], ("/first".to_string(), Some(410)));
    }

    #[test]
    fn a_close_that_was_not_seen_abandons_requests_instead_of_guessing() {
        // The request, then the descriptor accepted again (its close was never seen:
        // dropped) or closed.
        let unanswered = |then: ConnKind| {
            run(vec![
                data(
                    2,
                    Direction::Ingress,
                    b"GET /unanswered HTTP/1.1\r\n\r\n",
                    false,
                ),
                CaptureEvent::Conn {
                    task: task(3),
                    fd: 5,
                    socket: SocketId(5),
                    sockets: sockets(),
                    kind: then,
                },
            ])
        };
        let (calls, stats) = unanswered(ConnKind::Accept);
        assert!(calls.is_empty(), "{calls:?}");
        assert_eq!(stats.calls_abandoned.load(Ordering::Relaxed), 1);
        // A close that was seen reports the request without a response.
        let (calls, _) = unanswered(ConnKind::Close);
        assert_eq!(calls, [("/unanswered".to_string(), None)]);
    }

    /// What a process other than the test's server did on socket 5 through `fd`.
    fn by(tgid: u32, fd: i32, event: CaptureEvent) -> CaptureEvent {
        match event {
            CaptureEvent::Data(mut chunk) => {
                chunk.task.tgid = tgid;
                chunk.task.pid = tgid;
                chunk.task.comm = format!("child-{tgid}");
                chunk.fd = fd;
                CaptureEvent::Data(chunk)
            }
            CaptureEvent::Conn {
                mut task,
                socket,
                sockets,
                kind,
                ..
            } => {
                task.tgid = tgid;
                CaptureEvent::Conn {
                    task,
                    fd,
                    socket,
                    sockets,
                    kind,
                }
            }
            other => other,
        }
    }

    /// (path, status, serving pid, joined mid-stream) of each call.
    fn served(events: Vec<CaptureEvent>) -> Vec<(String, Option<u16>, u32, bool)> {
        let (mut tracker, _) = tracker();
        let mut out = Vec::new();
        for event in events {
            tracker.handle(event, &mut out);
        }
        out.into_iter()
            .map(|c| {
                let pid = c.local.process.as_ref().map_or(0, |p| p.pid);
                (c.path, c.status, pid, c.joined_midstream)
            })
            .collect()
    }

    /// The test server's `kind` event on socket 5 (descriptor 5) at `ts`.
    fn server_conn(ts: u64, kind: ConnKind) -> CaptureEvent {
        CaptureEvent::Conn {
            task: task(ts),
            fd: 5,
            socket: SocketId(5),
            sockets: sockets(),
            kind,
        }
    }

    fn accept() -> CaptureEvent {
        server_conn(1, ConnKind::Accept)
    }

    /// From `ts`: child 200 reads `GET /a` on descriptor 0 of socket 5, answers on 1, exits.
    fn child_serves_on_0_and_1(ts: u64) -> Vec<CaptureEvent> {
        vec![
            by(
                200,
                0,
                data(ts, Direction::Ingress, b"GET /a HTTP/1.0\r\n\r\n", false),
            ),
            by(200, 1, data(ts + 1, Direction::Egress, OK, false)),
            CaptureEvent::Exit {
                task: Task {
                    tgid: 200,
                    ..task(ts + 2)
                },
            },
        ]
    }

    #[test]
    fn an_inetd_style_child_serves_what_its_parent_accepted_on_two_descriptors() {
        // The parent accepts; its child reads the request on descriptor 0 and answers on 1
        // (busybox httpd, inetd); the kernel reports no close while the child holds the socket,
        // and the child's exit ends it.
        let mut events = vec![accept()];
        events.extend(child_serves_on_0_and_1(2));
        let calls = served(events);
        assert_eq!(calls, [("/a".to_string(), Some(200), 200, false)]);
    }

    #[test]
    fn the_exit_of_a_process_that_handed_a_socket_on_does_not_end_it() {
        let calls = served(vec![
            accept(),
            by(
                200,
                7,
                data(2, Direction::Ingress, b"GET /a HTTP/1.1\r\n\r\n", false),
            ),
            // The accepting process exits while its child serves.
            CaptureEvent::Exit { task: task(3) },
            by(200, 7, data(4, Direction::Egress, OK, false)),
            by(
                200,
                7,
                data(5, Direction::Ingress, b"GET /b HTTP/1.1\r\n\r\n", false),
            ),
            // The last descriptor closed by whichever process holds it.
            by(
                200,
                7,
                CaptureEvent::Conn {
                    task: task(6),
                    fd: 7,
                    socket: SocketId(5),
                    sockets: sockets(),
                    kind: ConnKind::Close,
                },
            ),
        ]);
        assert_eq!(
            calls,
            [
                ("/a".to_string(), Some(200), 200, false),
                ("/b".to_string(), None, 200, false)
            ]
        );
    }

    /// The parent's accept of a second socket on descriptor 5.
    fn accept_another() -> CaptureEvent {
        let CaptureEvent::Conn {
            task,
            fd,
            sockets,
            kind,
            ..
        } = accept()
        else {
            unreachable!()
        };
        let mut sockets = sockets;
        sockets.remote.set_port(40001);
        CaptureEvent::Conn {
            task,
            fd,
            socket: SocketId(6),
            sockets,
            kind,
        }
    }

    #[test]
    fn a_lost_close_is_told_by_the_descriptor_naming_another_socket() {
        // The request, its close lost (ring buffer full), the descriptor accepted again for
        // another socket, then the process exits: the first request is abandoned (its end was
        // not seen), not reported as cut by a close.
        let (calls, stats) = run(vec![
            data(2, Direction::Ingress, b"GET /lost HTTP/1.1\r\n\r\n", false),
            accept_another(),
            CaptureEvent::Exit { task: task(4) },
        ]);
        assert!(calls.is_empty(), "{calls:?}");
        assert_eq!(stats.calls_abandoned.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_descriptor_closed_while_shared_frees_its_number_without_ending_the_socket() {
        // The parent hands the socket to a child, closes its copy (shared) and accepts the
        // next connection on the same number: the child's call on the first is whole.
        let mut events = vec![
            accept(),
            server_conn(2, ConnKind::CloseShared),
            accept_another(),
        ];
        events.extend(child_serves_on_0_and_1(3));
        let calls = served(events);
        assert_eq!(calls, [("/a".to_string(), Some(200), 200, false)]);
    }

    /// An HTTP/2 frame.
    fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn h2_calls(events: Vec<CaptureEvent>) -> Vec<(String, String, Option<u16>, &'static str)> {
        let (mut tracker, stats) = tracker();
        let mut out = Vec::new();
        for event in events {
            tracker.handle(event, &mut out);
        }
        // HTTP/2 bytes are never taken for broken HTTP/1 (an upgrade's frames included).
        assert_eq!(stats.http_parse_errors.load(Ordering::Relaxed), 0);
        out.into_iter()
            .map(|c| (c.method, c.path, c.status, c.protocol_version))
            .collect()
    }

    #[test]
    fn an_h2c_upgrade_answers_the_request_on_stream_1() {
        let mut encoder = loona_hpack::Encoder::new();
        let upgrade = b"GET /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\
            Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n";
        // The 101 and the server's first frames in one write.
        let mut answer =
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                .to_vec();
        answer.extend(h2_frame(frame::SETTINGS, 0, 0, &[]));
        let head = encoder.encode([(&b":status"[..], &b"200"[..])]);
        answer.extend(h2_frame(frame::HEADERS, frame::END_HEADERS, 1, &head));
        answer.extend(h2_frame(frame::DATA, frame::END_STREAM, 1, b"hi"));
        let mut preface = frame::PREFACE.to_vec();
        preface.extend(h2_frame(frame::SETTINGS, 0, 0, &[]));
        let calls = h2_calls(vec![
            CaptureEvent::Conn {
                task: task(1),
                fd: 5,
                socket: SocketId(5),
                sockets: sockets(),
                kind: ConnKind::Accept,
            },
            data(2, Direction::Ingress, upgrade, false),
            data(3, Direction::Egress, &answer, false),
            data(4, Direction::Ingress, &preface, false),
        ]);
        assert_eq!(calls, [("GET".into(), "/up".into(), Some(200), "2")]);
    }

    #[test]
    fn http2_is_recognised_by_its_preface_or_by_frames_when_joined() {
        let mut client = loona_hpack::Encoder::new();
        let mut server = loona_hpack::Encoder::new();
        let request = |encoder: &mut loona_hpack::Encoder<'_>, id: u32, path: &[u8]| {
            let block = encoder.encode([(&b":method"[..], &b"GET"[..]), (b":path", path)]);
            h2_frame(
                frame::HEADERS,
                frame::END_HEADERS | frame::END_STREAM,
                id,
                &block,
            )
        };
        let response = |encoder: &mut loona_hpack::Encoder<'_>, id: u32| {
            let block = encoder.encode([(&b":status"[..], &b"204"[..])]);
            h2_frame(
                frame::HEADERS,
                frame::END_HEADERS | frame::END_STREAM,
                id,
                &block,
            )
        };
        let mut hello = frame::PREFACE.to_vec();
        hello.extend(request(&mut client, 1, b"/a"));
        // Seen from the start: the preface.
        let calls = h2_calls(vec![
            data(2, Direction::Ingress, &hello, false),
            data(3, Direction::Egress, &response(&mut server, 1), false),
        ]);
        assert_eq!(calls, [("GET".into(), "/a".into(), Some(204), "2")]);
        // Joined after the preface: frames alone, the role from the request's :method.
        let calls = h2_calls(vec![
            data(
                2,
                Direction::Ingress,
                &request(&mut client, 3, b"/b"),
                false,
            ),
            data(3, Direction::Egress, &response(&mut server, 3), false),
        ]);
        assert_eq!(calls, [("GET".into(), "/b".into(), Some(204), "2")]);
    }
}
