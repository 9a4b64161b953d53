//! OTLP log records with stable event names (the record's event name, and an `event.name`
//! attribute for backends that index attributes only, as Loki does), from which a backend can rebuild what every node
//! knows: `sightline.finding` for each new (or more severe) finding, and
//! `sightline.inventory.endpoint` each time an endpoint is discovered, first seen in this run
//! of the agent, or changes class (shadow, zombie, documented). Attribute names are those of
//! the JSON lines; keys without a namespace get `sightline.finding.` in front, and evidence
//! entries `sightline.finding.evidence.`.

use std::time::{Duration, SystemTime};

use opentelemetry::{
    InstrumentationScope,
    logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity},
};
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLogRecord, SdkLogger, SdkLoggerProvider};

use super::queue::BatchExporter;
use crate::{
    call::ApiCall,
    findings::model::{self, Finding},
    inventory::{Announce, classify::Class},
};

pub const FINDING_EVENT: &str = "sightline.finding";
pub const ENDPOINT_EVENT: &str = "sightline.inventory.endpoint";

/// Makes the records (the SDK creates them only through a logger; this provider has no
/// processor: records go to the export queue instead).
pub struct LogRecords {
    _provider: SdkLoggerProvider,
    logger: SdkLogger,
}

impl LogRecords {
    pub fn new(scope: InstrumentationScope) -> Self {
        let provider = SdkLoggerProvider::builder().build();
        let logger = provider.logger_with_scope(scope);
        Self {
            _provider: provider,
            logger,
        }
    }

    pub fn finding(&self, finding: &Finding) -> SdkLogRecord {
        let mut record = self.logger.create_log_record();
        record.set_event_name(FINDING_EVENT);
        record.add_attribute("event.name", FINDING_EVENT);
        let at = unix(finding.last_seen_unix_nano);
        record.set_timestamp(at);
        record.set_observed_timestamp(SystemTime::now());
        let (number, text) = severity(finding.severity);
        record.set_severity_number(number);
        record.set_severity_text(text);
        let endpoint = &finding.key.endpoint;
        record.set_body(AnyValue::String(
            format!(
                "{} ({}): {} {} of {} called by {}: {}",
                finding.key.rule.name(),
                finding.severity.name(),
                endpoint.method,
                endpoint.route,
                endpoint.api,
                finding.client,
                finding.summary()
            )
            .into(),
        ));
        let serde_json::Value::Object(fields) = finding.to_json() else {
            return record;
        };
        for (key, value) in fields {
            match key.as_str() {
                "event.name" | "first_seen" | "last_seen" => {}
                "evidence" => {
                    if let serde_json::Value::Object(evidence) = value {
                        for (name, value) in evidence {
                            if let Some(value) = any_value(&value) {
                                record.add_attribute(
                                    format!("sightline.finding.evidence.{name}"),
                                    value,
                                );
                            }
                        }
                    }
                }
                _ => {
                    let Some(value) = any_value(&value) else {
                        continue;
                    };
                    if key.contains('.') {
                        record.add_attribute(key, value);
                    } else {
                        record.add_attribute(format!("sightline.finding.{key}"), value);
                    }
                }
            }
        }
        record
    }

    /// A change of an endpoint (`sightline.inventory.change`), its attributes those of its
    /// JSON line.
    pub fn change(&self, change: &crate::inventory::changes::Change) -> SdkLogRecord {
        use crate::inventory::changes::CHANGE_EVENT;
        let mut record = self.logger.create_log_record();
        record.set_event_name(CHANGE_EVENT);
        record.add_attribute("event.name", CHANGE_EVENT);
        record.set_timestamp(unix(change.at_unix_nano));
        record.set_observed_timestamp(SystemTime::now());
        record.set_severity_number(Severity::Info);
        record.set_severity_text("INFO");
        record.set_body(AnyValue::String(change.summary().into()));
        let serde_json::Value::Object(fields) = change.to_json() else {
            return record;
        };
        for (key, value) in fields {
            if matches!(key.as_str(), "event.name" | "time" | "time_unix_nano")
                || (key == "service.namespace" && value == "")
            {
                continue;
            }
            if let Some(value) = any_value(&value) {
                record.add_attribute(key, value);
            }
        }
        record
    }

    /// The call's endpoint as an inventory change, when the inventory marked it so.
    pub fn endpoint(&self, call: &ApiCall) -> Option<SdkLogRecord> {
        let endpoint = call.endpoint.as_deref()?;
        let announce = endpoint.announce?;
        let key = &endpoint.key;
        let mut record = self.logger.create_log_record();
        record.set_event_name(ENDPOINT_EVENT);
        record.add_attribute("event.name", ENDPOINT_EVENT);
        record.set_timestamp(unix(call.start_unix_ns));
        record.set_observed_timestamp(SystemTime::now());
        let notable = matches!(
            endpoint.class,
            Class::Shadow | Class::SuspectedShadow | Class::Zombie
        );
        let (number, text) = if notable {
            (Severity::Warn, "WARN")
        } else {
            (Severity::Info, "INFO")
        };
        record.set_severity_number(number);
        record.set_severity_text(text);
        record.set_body(AnyValue::String(
            format!(
                "{} endpoint {}: {} {} of {}",
                endpoint.class.name(),
                announce.name(),
                key.method,
                key.route,
                key.api
            )
            .into(),
        ));
        record.add_attribute("service.name", key.api.clone());
        if !key.namespace.is_empty() {
            record.add_attribute("service.namespace", key.namespace.clone());
        }
        record.add_attribute("sightline.endpoint.direction", key.direction.name());
        record.add_attribute("http.request.method", key.method.clone());
        record.add_attribute("http.route", key.route.clone());
        record.add_attribute("sightline.inventory.class", endpoint.class.name());
        record.add_attribute("sightline.inventory.change", announce.name());
        if let Announce::Reclassified { from } = announce {
            record.add_attribute("sightline.inventory.previous_class", from.name());
        }
        if let Some(file) = &endpoint.spec_file {
            record.add_attribute("sightline.inventory.spec_file", file.to_string());
        }
        Some(record)
    }
}

fn unix(ns: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(ns)
}

fn severity(severity: model::Severity) -> (Severity, &'static str) {
    match severity {
        model::Severity::Info => (Severity::Info, "INFO"),
        model::Severity::Low => (Severity::Info4, "INFO"),
        model::Severity::Medium => (Severity::Warn, "WARN"),
        model::Severity::High => (Severity::Error, "ERROR"),
        model::Severity::Critical => (Severity::Fatal, "FATAL"),
    }
}

/// Sends log records (all under the agent's resource, set once on the exporter).
pub struct LogBatches<E> {
    pub exporter: E,
    pub scope: InstrumentationScope,
}

impl<E: LogExporter + 'static> BatchExporter for LogBatches<E> {
    type Item = SdkLogRecord;

    async fn export(&mut self, batch: &mut Vec<SdkLogRecord>) -> Result<(), String> {
        let pairs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
            batch.iter().map(|r| (r, &self.scope)).collect();
        self.exporter
            .export(LogBatch::new(&pairs))
            .await
            .map_err(|e| e.to_string())
    }
}

/// A JSON value as a log attribute value (`null` as `None`).
pub fn any_value(value: &serde_json::Value) -> Option<AnyValue> {
    use serde_json::Value as Json;
    Some(match value {
        Json::Null => return None,
        Json::Bool(b) => AnyValue::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => AnyValue::Int(i),
            None => AnyValue::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => AnyValue::String(s.clone().into()),
        Json::Array(items) => {
            AnyValue::ListAny(Box::new(items.iter().filter_map(any_value).collect()))
        }
        Json::Object(map) => AnyValue::Map(Box::new(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone().into(), any_value(v)?)))
                .collect(),
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{
        EndpointRef,
        endpoint::{Direction, EndpointKey},
    };
    use std::sync::Arc;

    fn attributes(record: &SdkLogRecord) -> Vec<(String, AnyValue)> {
        record
            .attributes_iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn get<'a>(attrs: &'a [(String, AnyValue)], key: &str) -> Option<&'a AnyValue> {
        attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    #[test]
    fn a_shadow_endpoint_discovery_is_a_warning_with_its_endpoint() {
        let records = LogRecords::new(InstrumentationScope::builder("sightline").build());
        let mut call = crate::call::tests::sealed();
        assert!(records.endpoint(&call).is_none());
        call.endpoint = Some(Arc::new(EndpointRef {
            key: EndpointKey {
                api: "shop".into(),
                namespace: "prod".into(),
                direction: Direction::Served,
                method: "GET".into(),
                route: "/users/{id}".into(),
            },
            client: "web".into(),
            class: Class::Shadow,
            secured: None,
            spec_file: Some("/specs/shop.yaml".into()),
            suspected: None,
            calls: 1,
            announce: Some(Announce::Reclassified {
                from: Class::Documented,
            }),
        }));
        let record = records.endpoint(&call).unwrap();
        assert_eq!(record.event_name(), Some(ENDPOINT_EVENT));
        assert_eq!(record.severity_number(), Some(Severity::Warn));
        let attrs = attributes(&record);
        let s = |v: &str| AnyValue::String(v.to_string().into());
        assert_eq!(get(&attrs, "service.name"), Some(&s("shop")));
        assert_eq!(get(&attrs, "http.route"), Some(&s("/users/{id}")));
        assert_eq!(get(&attrs, "sightline.inventory.class"), Some(&s("shadow")));
        assert_eq!(
            get(&attrs, "sightline.inventory.change"),
            Some(&s("reclassified"))
        );
        assert_eq!(
            get(&attrs, "sightline.inventory.previous_class"),
            Some(&s("documented"))
        );
        assert_eq!(
            record.body(),
            Some(&s("shadow endpoint reclassified: GET /users/{id} of shop"))
        );
    }

    #[test]
    fn a_finding_carries_its_rule_severity_and_evidence() {
        let records = LogRecords::new(InstrumentationScope::builder("sightline").build());
        let mut evidence = serde_json::Map::new();
        evidence.insert("status".into(), 200.into());
        let finding = Finding {
            key: model::FindingKey {
                rule: model::Rule::ALL[0],
                endpoint: EndpointKey {
                    api: "shop".into(),
                    namespace: String::new(),
                    direction: Direction::Served,
                    method: "POST".into(),
                    route: "/orders".into(),
                },
                client: "web".into(),
            },
            severity: model::Severity::High,
            client: "web".into(),
            first_seen_unix_nano: 1,
            last_seen_unix_nano: 2,
            count: 3,
            evidence,
        };
        let record = records.finding(&finding);
        assert_eq!(record.event_name(), Some(FINDING_EVENT));
        assert_eq!(record.severity_number(), Some(Severity::Error));
        let attrs = attributes(&record);
        let s = |v: &str| AnyValue::String(v.to_string().into());
        assert_eq!(
            get(&attrs, "sightline.finding.rule_id"),
            Some(&s(model::Rule::ALL[0].id()))
        );
        assert_eq!(
            get(&attrs, "sightline.finding.count"),
            Some(&AnyValue::Int(3))
        );
        assert_eq!(
            get(&attrs, "sightline.finding.evidence.status"),
            Some(&AnyValue::Int(200))
        );
        assert_eq!(get(&attrs, "event.name"), Some(&s(FINDING_EVENT)));
        assert!(get(&attrs, "first_seen").is_none());
    }

    #[test]
    fn json_values_become_log_values() {
        let value = serde_json::json!({"n": 3, "list": ["a"], "none": null, "f": 1.5});
        let AnyValue::Map(map) = any_value(&value).unwrap() else {
            panic!("not a map");
        };
        assert_eq!(map.len(), 3);
        assert_eq!(map["n"], AnyValue::Int(3));
        assert_eq!(map["f"], AnyValue::Double(1.5));
    }
}
