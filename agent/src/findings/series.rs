//! The findings as their metrics show them: one series per finding (rule, endpoint, client),
//! refreshed whenever the findings are written to the database (every few seconds) and read by
//! the metrics export, so a metrics store that every node feeds holds the cluster's findings.
//! Bounded like the findings table itself.

use std::{collections::HashMap, sync::Mutex};

use super::model::{Finding, FindingKey};

#[derive(Debug, Default)]
pub struct FindingSeries {
    findings: Mutex<HashMap<FindingKey, Finding>>,
}

impl FindingSeries {
    /// Takes the current state of findings that changed (or were loaded).
    pub fn update<'a>(&self, changed: impl IntoIterator<Item = &'a Finding>) {
        let Ok(mut findings) = self.findings.lock() else {
            return;
        };
        for finding in changed {
            match findings.get_mut(&finding.key) {
                Some(old) => *old = finding.clone(),
                None => {
                    findings.insert(finding.key.clone(), finding.clone());
                }
            }
        }
    }

    /// The findings raised on `endpoints` (copied: only these).
    pub fn of_endpoints(
        &self,
        endpoints: &std::collections::HashSet<&crate::inventory::endpoint::EndpointKey>,
    ) -> Vec<Finding> {
        self.findings
            .lock()
            .map(|f| {
                f.values()
                    .filter(|finding| endpoints.contains(&finding.key.endpoint))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn snapshot(&self) -> Vec<Finding> {
        self.findings
            .lock()
            .map(|f| f.values().cloned().collect())
            .unwrap_or_default()
    }
}
