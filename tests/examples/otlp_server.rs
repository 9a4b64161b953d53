//! A stand-alone OTLP server for measurements and manual runs: the test servers of
//! `sightline_tests::otlp`, printing what they received every second and then forgetting it
//! (so memory stays flat under load).
//!
//!     cargo run -p sightline-tests --example otlp_server -- [grpc|http] [PORT]
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use sightline_tests::otlp::{Collector, Protocol};

fn main() {
    let mut args = std::env::args().skip(1);
    let protocol = match args.next().as_deref() {
        Some("http") => Protocol::HttpProtobuf,
        _ => Protocol::Grpc,
    };
    let port = args.next().map_or(4317, |p| p.parse().unwrap());
    let collector = Collector::start(protocol, port);
    println!("OTLP {} server on 127.0.0.1:{port}", protocol.setting());
    let mut total = 0;
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let spans = collector.spans().len();
        let logs = collector.logs().len();
        let metrics = collector.with(|r| r.metrics.len());
        total += spans;
        collector.clear();
        println!("spans {spans} (total {total}), metric exports {metrics}, log records {logs}");
    }
}
