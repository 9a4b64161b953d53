//! The findings as a pipeline stage on the processor task, after the inventory (the rules need
//! the endpoint it names): [`FindingsStage::evaluate`] per call. The call arrives with its
//! authentication classified and its secrets stripped (`crate::credentials::stage`).

use std::{collections::HashMap, sync::Arc};

use super::{
    auth::CallAuth,
    config::FindingsSection,
    model::{Finding, Rule},
    rules::{
        Context,
        abuse::{self, Tracker},
        access::{self, EndpointAccess},
        exposure, inventory,
        object_access::{self, ObjectAccess},
        request_data,
        settings::{RuleSettings, SettingsError},
        tokens,
    },
    table::FindingsTable,
};
use crate::{call::ApiCall, credentials::redact, inventory::endpoint::EndpointKey, stats::Stats};

/// The evidence key of the concrete path of the call that raised (or last matched) a finding.
pub const SAMPLE_PATH: &str = "sample_path";

/// Findings kept, at most.
pub const MAX_FINDINGS: usize = 10_000;
/// Endpoints whose per-endpoint rule state is kept, at most (as many as the inventory).
const MAX_ENDPOINTS: usize = 50_000;

pub struct FindingsStage {
    enabled: bool,
    settings: RuleSettings,
    table: FindingsTable,
    /// The unauthenticated-success rule's memory of each endpoint.
    endpoints: HashMap<EndpointKey, EndpointAccess>,
    enumeration: Tracker,
    failures: Tracker,
    objects: ObjectAccess,
    stats: Arc<Stats>,
}

impl FindingsStage {
    pub fn new(section: &FindingsSection, stats: Arc<Stats>) -> Result<Self, SettingsError> {
        Ok(Self {
            enabled: section.enabled,
            settings: RuleSettings::new(section)?,
            table: FindingsTable::new(MAX_FINDINGS),
            endpoints: HashMap::new(),
            enumeration: Tracker::default(),
            failures: Tracker::default(),
            objects: ObjectAccess::default(),
            stats,
        })
    }

    /// The settings of a reloaded config (already checked when it loaded). The findings
    /// raised so far and the rules' memory of endpoints and clients stay.
    pub fn reconfigure(&mut self, section: &FindingsSection) -> Result<(), SettingsError> {
        self.settings = RuleSettings::new(section)?;
        self.enabled = section.enabled;
        Ok(())
    }

    /// Starts from the findings a previous run stored.
    pub fn restore(&mut self, stored: Vec<Finding>) {
        self.table.restore(stored);
    }

    /// Runs the rules on a call the inventory counted; returns the findings worth showing
    /// (new, or more severe than before).
    pub fn evaluate(&mut self, call: &mut ApiCall) -> Vec<Finding> {
        let Some(endpoint) = call.endpoint.clone() else {
            return Vec::new();
        };
        if !self.enabled {
            return Vec::new();
        }
        let none = CallAuth::default();
        let auth = call.auth.as_ref().unwrap_or(&none);
        let ctx = Context {
            call,
            auth,
            endpoint: &endpoint,
        };
        let mut hits = Vec::new();
        let full = self.endpoints.len() >= MAX_ENDPOINTS;
        match self.endpoints.get_mut(&endpoint.key) {
            Some(state) => access::unauthenticated_success(&ctx, state, &mut hits),
            None if full => Stats::inc(&self.stats.findings_state_full),
            None => {
                let state = self.endpoints.entry(endpoint.key.clone()).or_default();
                access::unauthenticated_success(&ctx, state, &mut hits);
            }
        }
        // Bodies are sampled by the endpoint's call count (the inventory's).
        if exposure::sampled(endpoint.calls) && !exposure::compressed(ctx.call) {
            exposure::check(&ctx, &mut hits);
        }
        if exposure::sampled(endpoint.calls) && !exposure::request_compressed(ctx.call) {
            request_data::check(&ctx, &mut hits);
        }
        access::cleartext_credentials(&ctx, &mut hits);
        tokens::check(&ctx, self.settings.jwt_leeway_s, &mut hits);
        abuse::enumeration(
            &ctx,
            self.settings.enumeration,
            &mut self.enumeration,
            &mut hits,
        );
        if self.settings.enabled(Rule::ObjectIdNeverGiven)
            || self.settings.enabled(Rule::ObjectReadByManyCredentials)
        {
            object_access::check(
                &ctx,
                self.settings.read_by_many,
                &mut self.objects,
                &mut hits,
            );
        }
        abuse::auth_failures(
            &ctx,
            self.settings.auth_failures,
            &mut self.failures,
            &mut hits,
        );
        inventory::check(&ctx, &mut hits);
        let untracked = self.enumeration.untracked
            + self.failures.untracked
            + std::mem::take(&mut self.objects.forgotten);
        self.enumeration.untracked = 0;
        self.failures.untracked = 0;
        Stats::add(&self.stats.findings_state_full, untracked);

        let mut shown = Vec::new();
        // Which call it was: its concrete path, as the sinks will write it (token-like segments
        // removed), beside the templated route.
        let sample_path = (!hits.is_empty()).then(|| redact::path(&call.path).into_owned());
        for mut hit in hits {
            if let Some(path) = &sample_path {
                hit.evidence
                    .insert(SAMPLE_PATH.into(), serde_json::Value::from(path.as_str()));
            }
            if !self.settings.enabled(hit.rule) || self.settings.allowed(&hit, &endpoint.key) {
                continue;
            }
            hit.severity = self.settings.severity(&hit);
            if !call.findings.contains(&hit.rule) {
                call.findings.push(hit.rule);
            }
            let dropped = self.table.dropped;
            if let Some(finding) = self.table.record(hit, &endpoint.key) {
                log(&finding);
                Stats::inc(&self.stats.findings_raised);
                shown.push(finding);
            }
            Stats::add(&self.stats.findings_dropped, self.table.dropped - dropped);
        }
        shown
    }

    pub fn take_changed(&mut self) -> Vec<Finding> {
        self.table.take_changed()
    }

    pub fn requeue(&mut self, findings: Vec<Finding>) {
        self.table.requeue(findings.into_iter().map(|f| f.key));
    }
}

fn log(finding: &Finding) {
    let e = &finding.key.endpoint;
    tracing::warn!(
        rule = finding.key.rule.id(),
        name = finding.key.rule.name(),
        severity = finding.severity.name(),
        service = %e.api,
        method = %e.method,
        route = %e.route,
        client = %finding.client,
        evidence = %finding.summary(),
        "finding"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        credentials::{fingerprint::Fingerprinter, stage::CredentialsStage},
        findings::{model::Rule, rules::tests::call},
        protocol::http1::Header,
    };

    fn stage(config: &str) -> (CredentialsStage, FindingsStage) {
        let section: FindingsSection = toml::from_str(config).unwrap();
        let credentials =
            CredentialsStage::new(section.credential_names(), Fingerprinter::with_key([5; 32]));
        let findings = FindingsStage::new(&section, Arc::new(Stats::default())).unwrap();
        (credentials, findings)
    }

    /// A POST answered 201 without credentials, and one with a JWT without `exp` in the query.
    fn calls() -> [ApiCall; 2] {
        let anonymous = call("POST", "/orders", "/orders", "web", 201);
        let mut token = call("GET", "/o/1", "/o/{id}", "web", 200);
        token.query = Some("t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln".into());
        token.request_headers.push(Header {
            name: "X-Trace".into(),
            value: b"1".to_vec(),
        });
        [anonymous, token]
    }

    fn run(
        (credentials, stage): &mut (CredentialsStage, FindingsStage),
    ) -> (Vec<Vec<Rule>>, Vec<(Rule, Severity)>) {
        let mut per_call = Vec::new();
        let mut shown = Vec::new();
        for mut call in calls() {
            credentials.prepare(&mut call);
            shown.extend(
                stage
                    .evaluate(&mut call)
                    .into_iter()
                    .map(|f| (f.key.rule, f.severity)),
            );
            per_call.push(call.findings);
        }
        (per_call, shown)
    }

    use crate::findings::model::Severity;

    #[test]
    fn rules_are_switched_off_allowlisted_and_reseveritied_by_config() {
        let (per_call, shown) = run(&mut stage(""));
        assert_eq!(
            per_call,
            [
                vec![Rule::UnauthenticatedSuccess],
                // The sample's client is 10.0.0.9, over plaintext.
                vec![
                    Rule::CleartextCredentials,
                    Rule::JwtWithoutExpiry,
                    Rule::JwtInUrl
                ]
            ]
        );
        assert_eq!(
            shown,
            [
                (Rule::UnauthenticatedSuccess, Severity::Medium),
                (Rule::CleartextCredentials, Severity::High),
                (Rule::JwtWithoutExpiry, Severity::Low),
                (Rule::JwtInUrl, Severity::Medium)
            ]
        );
        let (per_call, shown) = run(&mut stage(
            "[rules.jwt-in-url]\nseverity = \"critical\"\n[rules.jwt-without-expiry]\nenabled = false\n[[allow]]\nroute = \"/orders\"\n",
        ));
        assert_eq!(
            per_call,
            [vec![], vec![Rule::CleartextCredentials, Rule::JwtInUrl]]
        );
        assert_eq!(
            shown,
            [
                (Rule::CleartextCredentials, Severity::High),
                (Rule::JwtInUrl, Severity::Critical)
            ]
        );
        let (per_call, _) = run(&mut stage("enabled = false"));
        assert_eq!(per_call, [vec![], vec![]]);
    }

    #[test]
    fn the_same_hit_again_is_counted_not_shown() {
        let mut stage = stage("");
        run(&mut stage);
        let (_, shown) = run(&mut stage);
        assert_eq!(shown, []);
        let counts: Vec<u64> = stage.1.take_changed().iter().map(|f| f.count).collect();
        assert_eq!(counts, [2, 2, 2, 2]);
    }

    #[test]
    fn findings_name_the_concrete_path_without_its_secrets() {
        let (mut credentials, mut stage) = stage("");
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let mut reset = call(
            "POST",
            &format!("/reset/{token}"),
            "/reset/{token}",
            "web",
            201,
        );
        credentials.prepare(&mut reset);
        let found = stage.evaluate(&mut reset);
        assert!(!found.is_empty());
        for finding in &found {
            assert_eq!(
                finding.evidence[SAMPLE_PATH], "/reset/REDACTED",
                "{finding:?}"
            );
        }
        let mut plain = call("POST", "/orders/42", "/orders/{id}", "web", 201);
        credentials.prepare(&mut plain);
        let found = stage.evaluate(&mut plain);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].evidence[SAMPLE_PATH], "/orders/42");
    }
}
