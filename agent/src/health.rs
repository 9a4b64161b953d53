//! Liveness and readiness over HTTP on a loopback port: `GET /healthz` answers 200 while the
//! agent's runtime runs; `GET /readyz` answers 200 once the probes are attached and capture has
//! started, 503 before and once stopping. `sightline health` asks it (a Kubernetes exec probe:
//! the port never leaves the pod's loopback). `GET /metrics` answers the agent's metrics in
//! Prometheus' text format, for a Prometheus that scrapes the node (the port then listens on
//! an address it reaches).

use std::{
    convert::Infallible,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, service::service_fn};
use tokio::{net::TcpListener, sync::watch};

use crate::sink::otlp::metrics::Metrics;

/// Where the agent listens unless told otherwise.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9467";

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("serving health checks on {address}: {source} (choose another with --health-listen)")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("asking {address}: {source}")]
    Ask {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{address}{path} answered: {status}")]
    NotOk {
        address: SocketAddr,
        path: &'static str,
        status: String,
    },
}

const STARTING: u8 = 0;
const READY: u8 = 1;
const STOPPING: u8 = 2;

/// The agent's state, as the health endpoints report it.
#[derive(Debug, Default)]
pub struct Health {
    /// [`STARTING`], [`READY`] or [`STOPPING`].
    state: AtomicU8,
}

impl Health {
    pub fn set_ready(&self) {
        self.state.store(READY, Ordering::Relaxed);
    }

    pub fn set_stopping(&self) {
        self.state.store(STOPPING, Ordering::Relaxed);
    }

    fn readiness(&self) -> (StatusCode, &'static str) {
        match self.state.load(Ordering::Relaxed) {
            READY => (StatusCode::OK, "ready\n"),
            STARTING => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "stopping\n"),
        }
    }
}

/// Binds now (a taken port is a start-up error), then serves until `shutdown`.
pub async fn start(
    address: SocketAddr,
    health: Arc<Health>,
    metrics: Option<Arc<Metrics>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, HealthError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| HealthError::Bind { address, source })?;
    if !address.ip().is_loopback() {
        tracing::warn!(%address, "the health port is reachable from outside this host");
    }
    tracing::info!(%address, "health checks served (/healthz, /readyz, /metrics)");
    Ok(tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.changed() => return,
            };
            let Ok((stream, _)) = accepted else {
                continue;
            };
            let (health, metrics) = (health.clone(), metrics.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (health, metrics) = (health.clone(), metrics.clone());
                    async move {
                        if request.uri().path() == "/metrics"
                            && let Some(metrics) = metrics
                        {
                            return Ok::<_, Infallible>(prometheus(metrics).await);
                        }
                        Ok::<_, Infallible>(answer(&request, &health))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    }))
}

/// The metrics, rendered off the runtime's threads (tens of thousands of series take a while).
async fn prometheus(metrics: Arc<Metrics>) -> Response<Full<Bytes>> {
    let text = tokio::task::spawn_blocking(move || metrics.prometheus_text())
        .await
        .unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(crate::sink::otlp::prometheus::CONTENT_TYPE),
    );
    response
}

fn answer(request: &Request<hyper::body::Incoming>, health: &Health) -> Response<Full<Bytes>> {
    let (status, body) = match request.uri().path() {
        "/healthz" | "/livez" => (StatusCode::OK, "ok\n"),
        "/readyz" => health.readiness(),
        _ => (StatusCode::NOT_FOUND, "not found: /healthz or /readyz\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// `sightline health`: asks a running agent; `Ok` when it answered 200.
pub fn ask(address: SocketAddr, live: bool) -> Result<String, HealthError> {
    let path = if live { "/healthz" } else { "/readyz" };
    let io = |source| HealthError::Ask { address, source };
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).map_err(io)?;
    let status = reply.lines().next().unwrap_or_default().to_string();
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(body.to_string())
    } else {
        Err(HealthError::NotOk {
            address,
            path,
            status: format!("{status} {body}").trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_liveness_at_once_and_readiness_once_ready() {
        let health = Arc::new(Health::default());
        let (stop, shutdown) = watch::channel(false);
        // Port 0: the test asks the listener which port it got.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = probe.local_addr().unwrap();
        drop(probe);
        let server = start(address, health.clone(), None, shutdown)
            .await
            .unwrap();
        let ask = move |live| tokio::task::spawn_blocking(move || ask(address, live));
        assert_eq!(ask(true).await.unwrap().unwrap(), "ok");
        let error = ask(false).await.unwrap().unwrap_err().to_string();
        assert!(
            error.ends_with("/readyz answered: HTTP/1.1 503 Service Unavailable starting"),
            "{error}"
        );
        health.set_ready();
        assert_eq!(ask(false).await.unwrap().unwrap(), "ready");
        health.set_stopping();
        let error = ask(false).await.unwrap().unwrap_err().to_string();
        assert!(error.ends_with("stopping"), "{error}");
        // A second agent on the same port is a start-up error that names the port.
        let (_stop2, shutdown2) = watch::channel(false);
        let taken = start(address, Arc::default(), None, shutdown2)
            .await
            .unwrap_err();
        assert!(
            taken
                .to_string()
                .starts_with(&format!("serving health checks on {address}: "))
        );
        stop.send(true).unwrap();
        server.await.unwrap();
    }
}
