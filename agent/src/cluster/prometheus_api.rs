//! Instant queries over Prometheus' HTTP API (`GET /api/v1/query`), which Mimir, Thanos,
//! VictoriaMetrics and Grafana's data source proxy answer the same way.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("asking {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url} answered something that is not a Prometheus query result: {message}")]
    Format { url: String, message: String },
}

/// One series of an instant vector: its labels and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

pub struct Prometheus {
    base: String,
    client: reqwest::Client,
}

impl Prometheus {
    /// `base`: the server's address, such as `http://prometheus:9090` (a path prefix is kept).
    pub fn new(base: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            base: base.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
        }
    }

    /// An instant query: the series of the vector it returns.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, QueryError> {
        let url = format!("{}/api/v1/query", self.base);
        let http = |source| QueryError::Http {
            url: url.clone(),
            source,
        };
        let address = reqwest::Url::parse_with_params(&url, &[("query", promql)]).map_err(|e| {
            QueryError::Format {
                url: url.clone(),
                message: format!("not an address: {e}"),
            }
        })?;
        let response = self.client.get(address).send().await.map_err(http)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(http)?;
        parse(&url, status, &body)
    }
}

/// The samples of an answer (an error answer keeps Prometheus' own message).
fn parse(url: &str, status: u16, body: &[u8]) -> Result<Vec<Sample>, QueryError> {
    let format = |message: String| QueryError::Format {
        url: url.to_string(),
        message,
    };
    let answer: Answer = match serde_json::from_slice(body) {
        Ok(answer) => answer,
        Err(e) if status != 200 => {
            return Err(QueryError::Refused {
                url: url.to_string(),
                status,
                message: String::from_utf8_lossy(&body[..body.len().min(200)])
                    .trim()
                    .to_string()
                    + &format!(" ({e})"),
            });
        }
        Err(e) => return Err(format(e.to_string())),
    };
    if answer.status != "success" {
        return Err(QueryError::Refused {
            url: url.to_string(),
            status,
            message: answer.error.unwrap_or(answer.status),
        });
    }
    let data = answer.data.ok_or_else(|| format("no data".to_string()))?;
    if data.result_type != "vector" {
        return Err(format(format!(
            "a {} instead of a vector",
            data.result_type
        )));
    }
    data.result
        .into_iter()
        .map(|s| {
            let value = s
                .value
                .1
                .parse::<f64>()
                .map_err(|e| format(e.to_string()))?;
            Ok(Sample {
                labels: s.metric,
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_parse_and_errors_keep_prometheus_words() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"http_route":"/a","instance":"n1"},"value":[1733490000.1,"1733480000.25"]}]}}"#;
        let samples = parse("u", 200, body).unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].labels["http_route"], "/a");
        assert_eq!(samples[0].value, 1733480000.25);
        let refused =
            br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        let error = parse("u", 400, refused).unwrap_err().to_string();
        assert_eq!(error, "u answered 400: parse error at char 3");
        let html = parse("u", 502, b"<html>bad gateway</html>")
            .unwrap_err()
            .to_string();
        assert!(
            html.starts_with("u answered 502: <html>bad gateway</html>"),
            "{html}"
        );
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(
            parse("u", 200, matrix)
                .unwrap_err()
                .to_string()
                .contains("a matrix")
        );
    }
}
