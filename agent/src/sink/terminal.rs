//! The live view: one readable line per call.

use std::io::Write;

use super::Sink;
use crate::{
    call::{ApiCall, SpanKind},
    findings::model::{Finding, Severity},
    inventory::changes::Change,
};

pub struct Terminal<W: Write + Send> {
    out: W,
    color: bool,
}

impl<W: Write + Send> Terminal<W> {
    pub fn new(out: W, color: bool) -> Self {
        Self { out, color }
    }
}

impl<W: Write + Send> Sink for Terminal<W> {
    fn write(&mut self, call: &ApiCall) -> std::io::Result<()> {
        writeln!(self.out, "{}", line(call, self.color))
    }

    fn write_finding(&mut self, finding: &Finding) -> std::io::Result<()> {
        writeln!(self.out, "{}", finding_line(finding, self.color))
    }

    fn write_change(&mut self, change: &Change) -> std::io::Result<()> {
        writeln!(self.out, "{}", change_line(change))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// `12:00:01.123 SERVER shop/orders[812] <- curl[990] 127.0.0.1:8000  GET /users?id=1  200  1.4ms  0B/512B`
/// (each end by its service name, else its executable; ends off this host by service and
/// address).
pub fn line(call: &ApiCall, color: bool) -> String {
    let time = clock(call.start_unix_ns);
    let me = end_name(&call.local);
    let peer = end_name(&call.peer);
    let (kind, arrow) = match call.kind {
        SpanKind::Server => ("SERVER", "<-"),
        SpanKind::Client => ("CLIENT", "->"),
    };
    let (host, port) = crate::call::address::server_address(call);
    // HTTP/2 fields hidden by header compression (joined mid-way) show as `?`.
    let unknown = |s: &str| {
        if s.is_empty() {
            "?".to_string()
        } else {
            s.to_string()
        }
    };
    let target = match (&call.grpc, &call.query) {
        (Some(grpc), _) if grpc.status.is_some() => format!(
            "{} grpc-status={}",
            unknown(&call.path),
            grpc.status.unwrap_or_default()
        ),
        (_, Some(q)) => format!("{}?{q}", unknown(&call.path)),
        (_, None) => unknown(&call.path),
    };
    let status = match (call.status, &call.error) {
        (Some(s), _) => paint(&s.to_string(), status_color(s), color),
        (None, Some(e)) => paint(&format!("({e})"), "33", color),
        (None, None) => "-".to_string(),
    };
    let scheme = if call.tls.is_some() { "https://" } else { "" };
    format!(
        "{time} {kind} {me} {arrow} {peer} {scheme}{host}:{port}  {} {target}  {status}  {:.1}ms  {}/{}",
        unknown(&call.method),
        call.duration_ns() as f64 / 1e6,
        bytes(call.request_size.body),
        bytes(call.response_size.body),
    )
}

/// `HH:MM:SS.mmm` (UTC).
fn clock(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let millis = (unix_ns / 1_000_000) % 1000;
    format!(
        "{:02}:{:02}:{:02}.{millis:03}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

/// `12:00:01.123 FINDING high SL-AUTH-001 unauthenticated-success shop GET /users/{id} <- web  reasons=[...]`
pub fn finding_line(finding: &Finding, color: bool) -> String {
    let e = &finding.key.endpoint;
    let service = match e.namespace.as_str() {
        "" => e.api.clone(),
        namespace => format!("{namespace}/{}", e.api),
    };
    let severity = finding.severity;
    let code = match severity {
        Severity::Critical | Severity::High => "31",
        Severity::Medium => "33",
        Severity::Low | Severity::Info => "36",
    };
    format!(
        "{} FINDING {} {} {} {service} {} {} <- {}  {}",
        clock(finding.last_seen_unix_nano),
        paint(severity.name(), code, color),
        finding.key.rule.id(),
        finding.key.rule.name(),
        e.method,
        e.route,
        finding.client,
        finding.summary(),
    )
}

/// `13:56:11.707 CHANGE new-response-field card_last4: GET /orders/{id} of shop/orders`.
pub fn change_line(change: &Change) -> String {
    format!("{} CHANGE {}", clock(change.at_unix_nano), change.summary())
}

fn end_name(end: &crate::call::Endpoint) -> String {
    let identity = end.identity.as_deref();
    let service = identity.and_then(|i| i.service_name.as_deref());
    let service = match (
        service,
        identity.and_then(|i| i.service_namespace.as_deref()),
    ) {
        (Some(name), Some(namespace)) => Some(format!("{namespace}/{name}")),
        (name, _) => name.map(str::to_string),
    };
    match (&end.process, service) {
        (Some(p), Some(service)) => format!("{service}[{}]", p.pid),
        (Some(p), None) => format!("{}[{}]", p.executable_name, p.pid),
        (None, Some(service)) => format!("{service}({})", end.address),
        (None, None) => end.address.to_string(),
    }
}

fn status_color(status: u16) -> &'static str {
    match status {
        500.. => "31",
        400..=499 => "33",
        _ => "32",
    }
}

fn paint(text: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n}B"),
        1024..1_048_576 => format!("{:.1}KiB", n as f64 / 1024.0),
        _ => format!("{:.1}MiB", n as f64 / 1_048_576.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_readable_line_without_secrets() {
        let text = line(&crate::call::tests::sealed(), false);
        assert_eq!(
            text,
            "13:56:11.707 SERVER api[10] <- 10.0.0.9:41060 api.local:8080  GET /users/42?api_key=REDACTED&page=2  200  3.8ms  0B/17B"
        );
    }

    #[test]
    fn a_change_is_one_line_with_its_endpoint() {
        use crate::inventory::{changes::ChangeKind, endpoint::Direction};
        let change = Change {
            at_unix_nano: crate::call::tests::sealed().start_unix_ns,
            endpoint: crate::inventory::endpoint::EndpointKey {
                api: "orders".into(),
                namespace: "shop".into(),
                direction: Direction::Served,
                method: "GET".into(),
                route: "/orders/{id}".into(),
            },
            kind: ChangeKind::NewResponseField,
            detail: "card_last4".into(),
        };
        assert_eq!(
            change_line(&change),
            "13:56:11.707 CHANGE new-response-field card_last4: GET /orders/{id} of shop/orders"
        );
    }
}
