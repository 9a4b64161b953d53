//! The `changes` table: each endpoint's changes, appended, read by `sightline changes` and by
//! the agent at start (which endpoints it already reported gone quiet). Bounded: past
//! [`MAX_CHANGES`] rows the oldest go.

use rusqlite::params;

use super::sqlite::{Store, StoreError};
use crate::inventory::{
    changes::{Change, ChangeKind},
    endpoint::{Direction, EndpointKey},
};

/// Rows kept.
pub const MAX_CHANGES: i64 = 200_000;

impl Store {
    /// Appends changes, in one transaction, and drops the oldest past [`MAX_CHANGES`].
    pub fn save_changes(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut statement =
                tx.prepare_cached("INSERT INTO changes VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?;
            for c in changes {
                let e = &c.endpoint;
                statement.execute(params![
                    c.at_unix_nano as i64,
                    e.api,
                    e.namespace,
                    e.direction.name(),
                    e.method,
                    e.route,
                    c.kind.name(),
                    c.detail,
                ])?;
            }
        }
        tx.execute(
            "DELETE FROM changes WHERE rowid <= (SELECT max(rowid) FROM changes) - ?1",
            [MAX_CHANGES],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Changes at or after `since` (Unix ns), of `service` when given, oldest first (rows of
    /// kinds this agent does not know are skipped).
    pub fn load_changes(
        &self,
        since_unix_nano: u64,
        service: Option<&str>,
    ) -> Result<Vec<Change>, StoreError> {
        let mut statement = self.conn.prepare(
            "SELECT at_unix_nano, api, namespace, direction, method, route, kind, detail
             FROM changes WHERE at_unix_nano >= ?1 AND (?2 IS NULL OR api = ?2)
             ORDER BY at_unix_nano, rowid",
        )?;
        let rows = statement.query_map(params![since_unix_nano as i64, service], |r| {
            Ok((r.get::<_, i64>(0)?, text_columns::<7>(r, 1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (at, [api, namespace, direction, method, route, kind, detail]) = row?;
            let (Some(endpoint), Some(kind)) = (
                endpoint_key([api, namespace, direction, method, route]),
                ChangeKind::parse(&kind),
            ) else {
                continue;
            };
            out.push(Change {
                at_unix_nano: at as u64,
                endpoint,
                kind,
                detail,
            });
        }
        Ok(out)
    }

    /// Endpoints whose last gone-quiet or resumed change is gone-quiet.
    pub fn quiet_endpoints(&self) -> Result<Vec<EndpointKey>, StoreError> {
        let changes = self.conn.prepare(
            "SELECT api, namespace, direction, method, route, kind FROM changes
             WHERE kind IN ('gone-quiet', 'resumed') ORDER BY at_unix_nano, rowid",
        );
        let mut statement = changes?;
        let rows = statement.query_map([], |r| text_columns::<6>(r, 0))?;
        let mut quiet = std::collections::BTreeSet::new();
        for row in rows {
            let [api, namespace, direction, method, route, kind] = row?;
            let Some(key) = endpoint_key([api, namespace, direction, method, route]) else {
                continue;
            };
            if kind == "gone-quiet" {
                quiet.insert(key);
            } else {
                quiet.remove(&key);
            }
        }
        Ok(quiet.into_iter().collect())
    }
}

/// Columns `first..first + N` of a row, as text.
fn text_columns<const N: usize>(
    row: &rusqlite::Row<'_>,
    first: usize,
) -> rusqlite::Result<[String; N]> {
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = row.get(first + i)?;
    }
    Ok(out)
}

/// An endpoint from its stored columns (`None`: a direction this agent does not know).
fn endpoint_key([api, namespace, direction, method, route]: [String; 5]) -> Option<EndpointKey> {
    Some(EndpointKey {
        api,
        namespace,
        direction: Direction::parse(&direction)?,
        method,
        route,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(route: &str) -> EndpointKey {
        EndpointKey::served_get("shop", route)
    }

    fn change(at: u64, route: &str, kind: ChangeKind, detail: &str) -> Change {
        Change {
            at_unix_nano: at,
            endpoint: key(route),
            kind,
            detail: detail.into(),
        }
    }

    #[test]
    fn changes_round_trip_by_time_and_service_and_quiet_endpoints_are_remembered() {
        let dir = std::env::temp_dir().join(format!("sl-changes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut store = Store::open(&dir.join("inventory.sqlite")).unwrap();
        let changes = [
            change(1, "/a", ChangeKind::NewEndpoint, ""),
            change(2, "/b", ChangeKind::GoneQuiet, "last called x"),
            change(3, "/a", ChangeKind::GoneQuiet, "last called y"),
            change(4, "/a", ChangeKind::Resumed, ""),
            change(5, "/a", ChangeKind::NewResponseField, "owner.email"),
        ];
        store.save_changes(&changes).unwrap();
        assert_eq!(store.load_changes(0, None).unwrap(), changes);
        assert_eq!(store.load_changes(4, Some("shop")).unwrap(), changes[3..]);
        assert!(store.load_changes(0, Some("other")).unwrap().is_empty());
        assert_eq!(store.quiet_endpoints().unwrap(), [key("/b")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
