//! Sends batches of encoded spans to the collector: one `ExportTraceServiceRequest` per batch,
//! made of the bytes each span was encoded to when its call was seen, over gRPC (tonic, with a
//! codec that passes the bytes through) or HTTP/protobuf (reqwest). The connection settings,
//! TLS and headers are the ones the metric and log exporters get (`connection`, `transport`).
//!
//! Why not the exporter crate: its `SpanExporter` takes SDK span objects, which it converts to
//! prost messages and encodes on every attempt; the queue had to clone each batch to keep it
//! for a retry. That path was about a fifth of the agent's CPU with OTLP export (profiles in
//! docs/bench). Here a retry sends the same bytes again.

use std::{io::Write as _, time::Duration};

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tonic::{
    Status,
    codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder},
    metadata::MetadataMap,
    transport::Channel,
};

use super::{
    queue::BatchExporter,
    settings::{Protocol, SignalSettings},
    span_encoding,
    traces::SpanItem,
    transport::{self, TransportError},
};

/// The OTLP trace service's export method.
const GRPC_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

pub struct TraceClient {
    transport: Transport,
    /// The agent's encoded `InstrumentationScope`, the same for every span.
    scope: Vec<u8>,
    /// A partial success was already logged (the next ones are not).
    partial_logged: bool,
}

enum Transport {
    Grpc {
        client: tonic::client::Grpc<Channel>,
        metadata: MetadataMap,
    },
    Http {
        client: reqwest::Client,
        url: String,
        headers: http::HeaderMap,
        timeout: Duration,
        gzip: bool,
    },
}

impl TraceClient {
    /// Builds the client; connections are made on the first export (a collector that is not
    /// up yet is not an error here).
    pub fn new(signal: &SignalSettings, scope: Vec<u8>) -> Result<Self, TransportError> {
        let connection = &signal.connection;
        let transport = match signal.protocol {
            Protocol::Grpc => {
                let invalid = |message: String| TransportError::Endpoint {
                    signal: signal.signal.name(),
                    message,
                };
                let mut endpoint = Channel::from_shared(connection.endpoint.clone())
                    .map_err(|e| invalid(e.to_string()))?
                    .timeout(connection.timeout);
                if let Some(tls) = transport::tonic_tls(signal) {
                    endpoint = endpoint
                        .tls_config(tls)
                        .map_err(|e| invalid(e.to_string()))?;
                }
                let mut client = tonic::client::Grpc::new(endpoint.connect_lazy());
                if connection.gzip {
                    client = client.send_compressed(CompressionEncoding::Gzip);
                }
                Transport::Grpc {
                    client,
                    metadata: transport::metadata(signal)?,
                }
            }
            Protocol::HttpProtobuf => Transport::Http {
                client: transport::http_client(signal)?,
                url: connection.endpoint.clone(),
                headers: transport::metadata(signal)?.into_headers(),
                timeout: connection.timeout,
                gzip: connection.gzip,
            },
        };
        Ok(Self {
            transport,
            scope,
            partial_logged: false,
        })
    }

    /// The request of a batch: spans of one resource are grouped under it.
    fn request(&self, batch: &mut [SpanItem]) -> Bytes {
        batch.sort_by_key(|item| item.resource.as_ptr() as usize);
        let len: usize = batch.iter().map(|i| i.span.len() + 8).sum::<usize>() + 1024;
        let mut body = Vec::with_capacity(len);
        let spans = batch
            .iter()
            .map(|item| (&*item.resource, item.span.as_slice()));
        span_encoding::export_request(&mut body, &self.scope, spans);
        body.into()
    }

    /// Logs a collector's partial success once: some spans were refused for good (the request
    /// is not retried, as the specification says).
    fn partial_success(&mut self, response: ExportTraceServiceResponse) {
        if let Some(partial) = response.partial_success
            && (partial.rejected_spans > 0 || !partial.error_message.is_empty())
            && !self.partial_logged
        {
            self.partial_logged = true;
            tracing::warn!(
                rejected_spans = partial.rejected_spans,
                message = partial.error_message,
                "the OTLP collector refused some spans (logged once)"
            );
        }
    }
}

impl BatchExporter for TraceClient {
    type Item = SpanItem;

    async fn export(&mut self, batch: &mut Vec<SpanItem>) -> Result<(), String> {
        let body = self.request(batch);
        let response = match &mut self.transport {
            Transport::Grpc { client, metadata } => {
                let mut request = tonic::Request::new(body);
                *request.metadata_mut() = metadata.clone();
                client.ready().await.map_err(|e| e.to_string())?;
                let path = PathAndQuery::from_static(GRPC_PATH);
                client
                    .unary(request, path, PassThrough)
                    .await
                    .map_err(|status| status.to_string())?
                    .into_inner()
            }
            Transport::Http {
                client,
                url,
                headers,
                timeout,
                gzip,
            } => {
                let mut request = client
                    .post(url.as_str())
                    .headers(headers.clone())
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                    .timeout(*timeout);
                let body = if *gzip {
                    request = request.header(http::header::CONTENT_ENCODING, "gzip");
                    gzipped(&body).map_err(|e| e.to_string())?
                } else {
                    body
                };
                let response = request.body(body).send().await.map_err(|e| e.to_string())?;
                let status = response.status();
                if !status.is_success() {
                    return Err(format!("HTTP export failed with status code: {status}"));
                }
                let bytes = response.bytes().await.map_err(|e| e.to_string())?;
                ExportTraceServiceResponse::decode(bytes).unwrap_or_default()
            }
        };
        self.partial_success(response);
        Ok(())
    }
}

fn gzipped(body: &[u8]) -> std::io::Result<Bytes> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    encoder.write_all(body)?;
    Ok(encoder.finish()?.into())
}

/// A gRPC codec that sends a request already encoded and decodes the response.
struct PassThrough;

struct BytesEncoder;

struct ResponseDecoder;

impl Codec for PassThrough {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = BytesEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        let response = ExportTraceServiceResponse::decode(src.copy_to_bytes(src.remaining()))
            .map_err(|e| Status::internal(format!("the collector's answer: {e}")))?;
        Ok(Some(response))
    }
}
