//! The agent's own counters: what it captured, parsed, emitted and dropped. Every stage that can
//! drop counts it here; the summary is logged periodically and at shutdown (and exported by the
//! OTLP metrics later).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Userspace counters, shared by every stage.
        #[derive(Debug, Default)]
        pub struct Stats {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        impl Stats {
            /// Every counter with its name, for logs and exports.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters! {
    /// Records read from the ring buffer.
    events_read,
    /// Records that could not be decoded.
    events_undecodable,
    /// Data events that follow a dropped one on the same descriptor.
    events_after_loss,
    /// Events dropped because the capture queue was full.
    capture_queue_full,
    /// Calls dropped because the sink queue was full.
    sink_queue_full,
    /// Connections tracked since start.
    connections_opened,
    /// Connections evicted because the table was at its cap.
    connections_evicted_cap,
    /// Connections evicted after being idle.
    connections_evicted_idle,
    /// Connections whose bytes are not HTTP/1 (ignored).
    connections_not_http,
    /// Connections whose byte stream had a hole (dropped events) and were resynchronised.
    connections_resynced_after_loss,
    /// Times an HTTP stream lost framing and was resynchronised.
    http_parse_errors,
    /// Message heads larger than the header limit.
    http_header_too_large,
    /// Responses with no request to pair with (the request was not seen).
    http_unpaired_responses,
    /// Requests in progress on connections the agent had to forget (evicted, or whose close was
    /// lost): not reported, since whether they were answered is unknown.
    calls_abandoned,
    /// HTTP/2 connections recognised (from their preface, their frames, or an h2c upgrade).
    connections_http2,
    /// HTTP/2 header blocks not seen whole (capture limit, loss): the HPACK table of that
    /// direction is partly unknown until new entries replace the old.
    http2_header_blocks_lost,
    /// HTTP/2 header blocks the HPACK decoder rejected.
    http2_hpack_errors,
    /// Header fields that referenced HPACK entries the agent never saw (joined mid-way):
    /// reported as unknown, never guessed.
    http2_fields_unknown,
    /// HTTP/2 directions whose frame boundaries were lost (a hole over a frame header).
    http2_desyncs,
    /// HTTP/2 directions that found frame boundaries again (after joining or a desync).
    http2_resyncs,
    /// HTTP/2 responses whose request the agent did not see (sent before it joined).
    http2_streams_unattributed,
    /// HTTP/2 streams let go (not reported) because a connection had too many in progress: the
    /// oldest, whose end the capture lost.
    http2_streams_dropped,
    /// API calls produced.
    calls_emitted,
    /// Calls dropped by a sink that failed to write.
    sink_write_errors,
    /// Process-table entries evicted at its cap.
    processes_evicted_cap,
    /// Connections recognised as TLS (records seen by the syscall probes, or plaintext from
    /// the TLS probes).
    connections_tls,
    /// TLS connections whose plaintext came from the TLS probes.
    connections_tls_plaintext,
    /// Requests to the TLS attach thread dropped because its queue was full (the periodic
    /// rescan catches up).
    tls_requests_dropped,
    /// Processes whose mappings were scanned for TLS libraries.
    tls_process_scans,
    /// Processes that exited before their mappings could be scanned for TLS libraries (any
    /// process: those that made TLS connections say so in the TLS report).
    tls_exited_before_scan,
    /// Execs held (fanotify) until the attach thread had inspected a program file new to it.
    tls_execs_held,
    /// Held execs let go after the hold budget, before the attach thread answered.
    tls_exec_hold_timeouts,
    /// Files inspected for TLS functions (each once).
    tls_files_inspected,
    /// Library files whose probes could not be attached.
    tls_attach_failures,
    /// Probed files detached because no process had mapped them for a while.
    tls_files_detached,
    /// Kubernetes watch requests that failed (retried with backoff).
    k8s_watch_errors,
    /// Kubernetes objects not kept because a table was at its cap.
    k8s_objects_dropped,
    /// Address claims not kept because the address table was at its cap.
    k8s_addresses_dropped,
    /// Calls counted under an overflow route (a route tree or the endpoint table was full).
    inventory_overflow,
    /// Endpoint changes not recorded because too many were waiting for the writer.
    inventory_changes_dropped,
    /// Calls not counted in the inventory because their HTTP/2 path was unknown.
    inventory_path_unknown,
    /// Inventory writes to the database that failed.
    inventory_store_errors,
    /// API specs that could not be loaded (each logged with its file and place).
    inventory_spec_errors,
    /// Findings raised (new, or more severe than before).
    findings_raised,
    /// Findings not kept because the findings table was full.
    findings_dropped,
    /// Calls some rules could not track because their state tables were full.
    findings_state_full,
    /// Spans delivered to the OTLP collector.
    otlp_spans_exported,
    /// Spans not exported: the span queue was full (the collector slow or down), or their
    /// batch was given up.
    otlp_spans_dropped,
    /// Failed trace export attempts (each retried until given up).
    otlp_trace_export_failures,
    /// Log records (findings, inventory changes) delivered to the OTLP collector.
    otlp_logs_exported,
    /// Log records not exported (queue full or batch given up).
    otlp_logs_dropped,
    /// Failed log export attempts.
    otlp_log_export_failures,
    /// Metric exports delivered.
    otlp_metric_exports,
    /// Failed metric exports (cumulative metrics: the next one carries the totals).
    otlp_metric_export_failures,
    /// Config files read again on SIGHUP and put in use.
    config_reloads,
    /// Config files refused on SIGHUP (logged with file and place; the last good stays).
    config_reload_errors,
    /// Call ends whose cgroup id could not be resolved to a path (named without container,
    /// pod or unit).
    cgroups_unresolved,
}

impl Stats {
    /// Events and calls the userspace stages dropped.
    pub fn drops(&self) -> u64 {
        [
            &self.capture_queue_full,
            &self.sink_queue_full,
            &self.tls_requests_dropped,
            &self.otlp_spans_dropped,
            &self.otlp_logs_dropped,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
