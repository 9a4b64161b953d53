//! Where calls and findings go: a live terminal view (`terminal`) or JSON lines (`json`), and
//! an OpenTelemetry collector (`otlp`). Sinks
//! run on their own thread with blocking writes, fed by a bounded channel, so a slow terminal
//! or disk never stalls capture (the processor drops and counts instead).
//!
//! Calls arrive sealed by the credentials stage (no credential values left in them): sinks write
//! what they get.

pub mod attributes;
pub mod call_fields;
pub mod json;
pub mod otlp;
pub mod terminal;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::{call::ApiCall, findings::model::Finding, inventory::changes::Change, stats::Stats};

/// What the sinks are given.
// Calls are the stream and are moved as they are; findings are rare.
#[allow(clippy::large_enum_variant)]
pub enum Record {
    Call(ApiCall),
    /// A new finding, or one whose severity rose.
    Finding(Box<Finding>),
    /// A change of an endpoint (written to the database first).
    Change(Box<Change>),
}

/// A destination for calls and findings.
pub trait Sink: Send {
    fn write(&mut self, call: &ApiCall) -> std::io::Result<()>;
    fn write_finding(&mut self, finding: &Finding) -> std::io::Result<()>;
    fn write_change(&mut self, change: &Change) -> std::io::Result<()>;
    fn flush(&mut self) -> std::io::Result<()>;
}

/// Writes every record it receives until the channel closes, flushing whenever it is idle.
pub fn run(mut records: mpsc::Receiver<Record>, mut sinks: Vec<Box<dyn Sink>>, stats: Arc<Stats>) {
    while let Some(record) = records.blocking_recv() {
        write_all(&mut sinks, &record, &stats);
        while let Ok(record) = records.try_recv() {
            write_all(&mut sinks, &record, &stats);
        }
        for sink in &mut sinks {
            if let Err(error) = sink.flush() {
                tracing::warn!(%error, "flushing output failed");
            }
        }
    }
}

fn write_all(sinks: &mut [Box<dyn Sink>], record: &Record, stats: &Stats) {
    for sink in sinks.iter_mut() {
        let written = match record {
            Record::Call(call) => sink.write(call),
            Record::Finding(finding) => sink.write_finding(finding),
            Record::Change(change) => sink.write_change(change),
        };
        if let Err(error) = written {
            Stats::inc(&stats.sink_write_errors);
            tracing::warn!(%error, "writing to the output failed");
        }
    }
}
