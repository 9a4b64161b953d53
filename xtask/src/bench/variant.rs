//! How the agent runs in a measured run: the deployed configurations (JSON lines, OTLP export
//! over gRPC or HTTP) and the floor (empty programs at the same hooks), each against the same
//! load without any agent.

use serde::Serialize;

/// One way of running the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// JSON lines to /dev/null and the SQLite inventory, normal CPU priority.
    Json,
    /// The same at `--cpu-priority idle` (SCHED_IDLE); only with `--idle`.
    JsonIdle,
    /// What the DaemonSet runs: no local output, every span, metric and log exported over
    /// OTLP/gRPC to a local receiver (`otlp_sink`), the SQLite inventory on.
    OtlpGrpc,
    /// The same over OTLP/HTTP protobuf.
    OtlpHttp,
    /// The floor: empty programs attached at every tracepoint and uprobe the agent uses
    /// (`--bench-empty-programs`); nothing is captured.
    Floor,
}

/// Where the receiver listens when a variant exports.
pub enum Export {
    Grpc,
    Http,
}

impl Variant {
    /// The variants measured unless asked otherwise, in the order of a round.
    pub const DEFAULT: [Variant; 4] = [
        Variant::Json,
        Variant::OtlpGrpc,
        Variant::OtlpHttp,
        Variant::Floor,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Json => "json",
            Variant::JsonIdle => "json-idle",
            Variant::OtlpGrpc => "otlp-grpc",
            Variant::OtlpHttp => "otlp-http",
            Variant::Floor => "floor",
        }
    }

    /// As the report's tables say it.
    pub fn description(self) -> &'static str {
        match self {
            Variant::Json => "JSON lines",
            Variant::JsonIdle => "JSON lines, idle priority",
            Variant::OtlpGrpc => "OTLP/gRPC",
            Variant::OtlpHttp => "OTLP/HTTP",
            Variant::Floor => "empty programs (floor)",
        }
    }

    /// Whether the agent reports calls in this variant (the floor captures nothing).
    pub fn captures(self) -> bool {
        self != Variant::Floor
    }

    pub fn export(self) -> Option<Export> {
        match self {
            Variant::OtlpGrpc => Some(Export::Grpc),
            Variant::OtlpHttp => Some(Export::Http),
            _ => None,
        }
    }

    /// The agent's arguments besides capture scope and files.
    pub fn agent_args(self) -> &'static [&'static str] {
        match self {
            Variant::Json => &["--output", "json", "--output-file", "/dev/null"],
            Variant::JsonIdle => &[
                "--output",
                "json",
                "--output-file",
                "/dev/null",
                "--cpu-priority",
                "idle",
            ],
            Variant::OtlpGrpc | Variant::OtlpHttp => &["--output", "none"],
            Variant::Floor => &["--output", "none", "--bench-empty-programs"],
        }
    }
}
