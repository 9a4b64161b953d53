//! Endpoints by API and class, kept up to date as endpoints appear and change class, for the
//! inventory gauges of the exports. Updated only on those changes (rare), read by the metrics
//! export every interval.

use std::{collections::HashMap, sync::Mutex};

use super::{
    classify::Class,
    endpoint::{Direction, EndpointKey},
};

/// Whose endpoints are counted: an API (service name and namespace), its direction, a class.
pub type CountKey = (String, String, Direction, Class);

#[derive(Debug, Default)]
pub struct InventoryCounts {
    counts: Mutex<HashMap<CountKey, u64>>,
}

impl InventoryCounts {
    /// The endpoint `key` moved from class `from` (`None`: it is new) to `to`.
    pub fn moved(&self, key: &EndpointKey, from: Option<Class>, to: Class) {
        if from == Some(to) {
            return;
        }
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        let api = |class| (key.api.clone(), key.namespace.clone(), key.direction, class);
        if let Some(from) = from
            && let Some(n) = counts.get_mut(&api(from))
        {
            *n = n.saturating_sub(1);
        }
        *counts.entry(api(to)).or_default() += 1;
    }

    /// Every count, zeros included (a class that emptied reports 0 rather than vanishing).
    pub fn snapshot(&self) -> Vec<(CountKey, u64)> {
        self.counts
            .lock()
            .map(|counts| counts.iter().map(|(k, n)| (k.clone(), *n)).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_class_changes() {
        let counts = InventoryCounts::default();
        let key = |route: &str| EndpointKey {
            api: "shop".into(),
            namespace: String::new(),
            direction: Direction::Served,
            method: "GET".into(),
            route: route.into(),
        };
        counts.moved(&key("/a"), None, Class::Shadow);
        counts.moved(&key("/b"), None, Class::Shadow);
        counts.moved(&key("/a"), Some(Class::Shadow), Class::Documented);
        counts.moved(&key("/b"), Some(Class::Shadow), Class::Shadow);
        let mut snapshot = counts.snapshot();
        snapshot.sort_by_key(|((.., class), _)| class.name());
        let shop = |class| ("shop".to_string(), String::new(), Direction::Served, class);
        assert_eq!(
            snapshot,
            vec![(shop(Class::Documented), 1), (shop(Class::Shadow), 1)]
        );
    }
}
