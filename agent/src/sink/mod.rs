//! Where calls go: a live terminal view (`terminal`) or JSON lines (`json`). Sinks run on their
//! own thread with blocking writes, fed by a bounded channel, so a slow terminal or disk never
//! stalls capture (the processor drops and counts instead).

pub mod attributes;
pub mod fields;
pub mod json;
pub mod terminal;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::{call::ApiCall, stats::Stats};

/// A destination for calls.
pub trait Sink: Send {
    fn write(&mut self, call: &ApiCall) -> std::io::Result<()>;
    fn flush(&mut self) -> std::io::Result<()>;
}

/// Writes every call it receives until the channel closes, flushing whenever it is idle.
pub fn run(mut calls: mpsc::Receiver<ApiCall>, mut sinks: Vec<Box<dyn Sink>>, stats: Arc<Stats>) {
    while let Some(call) = calls.blocking_recv() {
        write_all(&mut sinks, &call, &stats);
        while let Ok(call) = calls.try_recv() {
            write_all(&mut sinks, &call, &stats);
        }
        for sink in &mut sinks {
            if let Err(error) = sink.flush() {
                tracing::warn!(%error, "flushing output failed");
            }
        }
    }
}

fn write_all(sinks: &mut [Box<dyn Sink>], call: &ApiCall, stats: &Stats) {
    for sink in sinks.iter_mut() {
        if let Err(error) = sink.write(call) {
            Stats::inc(&stats.sink_write_errors);
            tracing::warn!(%error, "writing a call failed");
        }
    }
}
