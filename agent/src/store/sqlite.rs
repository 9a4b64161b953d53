//! The inventory on disk: one SQLite database (WAL, so `sightline inventory` and the sqlite3
//! shell can read it while the agent writes), one row per endpoint, replaced with the
//! endpoint's cumulative statistics. The schema is documented in the README; sets are JSON
//! arrays of strings. Its size is bounded by the inventory's endpoint cap.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, params};

use crate::findings::model::{Finding, FindingKey, Rule, Severity};

use crate::inventory::{
    classify::{Class, Specs},
    endpoint::{Direction, EndpointKey, EndpointStats},
    report::Unused,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the inventory database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("creating {path}: {source}")]
    Directory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("making {path} private (mode 0600): {source}")]
    Private {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the inventory database {path} has schema version {found}; this agent knows \
         {SCHEMA_VERSION} (move the file away to start a new one)"
    )]
    SchemaVersion { path: String, found: i64 },
    #[error("inventory database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("inventory database: bad JSON in a row: {0}")]
    Json(#[from] serde_json::Error),
}

/// Version of the schema below; a newer database is refused, not guessed at, an older one is
/// migrated.
const SCHEMA_VERSION: i64 = 3;

/// Version 1 kept shadow and zombie endpoints in a `findings` table of its own; version 2
/// keeps every rule's findings. The old rows become findings of the inventory rules.
const MIGRATE_1_TO_2: &str = "
ALTER TABLE findings RENAME TO findings_v1;
";

/// The rest of [`MIGRATE_1_TO_2`], after the new findings table.
const MIGRATE_1_TO_2_ROWS: &str = "
INSERT INTO findings SELECT
    CASE kind WHEN 'zombie' THEN 'SL-INV-002' ELSE 'SL-INV-001' END,
    CASE kind WHEN 'zombie' THEN 'zombie-endpoint' ELSE 'shadow-endpoint' END,
    CASE kind WHEN 'zombie' THEN 'medium' ELSE 'low' END,
    'API9:2023 Improper Inventory Management',
    api, namespace, direction, method, route, '', client,
    first_seen_unix_nano, first_seen_unix_nano, 1,
    json_object('class', kind, 'status', status, 'spec_file', spec_file)
    FROM findings_v1;
DROP TABLE findings_v1;
";

/// Version 3 adds each endpoint's posture (exposure and what its risk is judged on) and the
/// changes table.
const MIGRATE_2_TO_3: &str = "
ALTER TABLE endpoints ADD COLUMN posture TEXT;
";

/// The endpoints table, then [`FINDINGS_TABLE`] and [`SPEC_OPERATIONS_TABLE`].
const ENDPOINTS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS endpoints (
    api TEXT NOT NULL,
    namespace TEXT NOT NULL,
    direction TEXT NOT NULL,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    first_seen_unix_nano INTEGER NOT NULL,
    last_seen_unix_nano INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    status_1xx INTEGER NOT NULL,
    status_2xx INTEGER NOT NULL,
    status_3xx INTEGER NOT NULL,
    status_4xx INTEGER NOT NULL,
    status_5xx INTEGER NOT NULL,
    status_none INTEGER NOT NULL,
    duration_sum_ns INTEGER NOT NULL,
    duration_max_ns INTEGER NOT NULL,
    duration_histogram TEXT NOT NULL,
    request_content_types TEXT NOT NULL,
    response_content_types TEXT NOT NULL,
    auth_schemes TEXT NOT NULL,
    clients TEXT NOT NULL,
    more_clients INTEGER NOT NULL,
    tls_calls INTEGER NOT NULL,
    class TEXT,
    status_codes TEXT NOT NULL,
    query_params TEXT NOT NULL,
    request_schema TEXT,
    response_schema TEXT,
    posture TEXT,
    PRIMARY KEY (api, namespace, direction, method, route)
);
";
/// One row per finding, its cumulative state.
const FINDINGS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS findings (
    rule_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    owasp TEXT NOT NULL,
    api TEXT NOT NULL,
    namespace TEXT NOT NULL,
    direction TEXT NOT NULL,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    key_client TEXT NOT NULL,
    client TEXT NOT NULL,
    first_seen_unix_nano INTEGER NOT NULL,
    last_seen_unix_nano INTEGER NOT NULL,
    count INTEGER NOT NULL,
    evidence TEXT NOT NULL,
    PRIMARY KEY (rule_id, api, namespace, direction, method, route, key_client)
);
";
/// Each endpoint's changes, oldest first (bounded: see `MAX_CHANGES`).
const CHANGES_TABLE: &str = "
CREATE TABLE IF NOT EXISTS changes (
    at_unix_nano INTEGER NOT NULL,
    api TEXT NOT NULL,
    namespace TEXT NOT NULL,
    direction TEXT NOT NULL,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_time ON changes (at_unix_nano);
";
/// Every spec operation (for the unused ones).
const SPEC_OPERATIONS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS spec_operations (
    api TEXT NOT NULL,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    retired_or_deprecated INTEGER NOT NULL,
    spec_file TEXT NOT NULL,
    PRIMARY KEY (api, method, route)
);
";

/// Creates `path` with mode 0600, or takes group and other permissions away from an existing
/// file (databases made by earlier versions followed the umask). Endpoint and client names and
/// credential fingerprints are for the agent's operators only.
fn private_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let error = |source| StoreError::Private {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(error)?;
    let mode = file.metadata().map_err(error)?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))
            .map_err(error)?;
        tracing::info!(path = %path.display(), "inventory database made private (mode 0600)");
    }
    Ok(())
}

/// Takes group and other permissions away from `path` if it exists, by path alone (see
/// [`Store::open`] for why no descriptor is opened).
fn make_private_if_present(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt as _;
    let error = |source| StoreError::Private {
        path: path.display().to_string(),
        source,
    };
    let mode = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions().mode(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(error(e)),
    };
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
            .map_err(error)?;
    }
    Ok(())
}

fn open_error(path: &Path) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Open {
        path: path.display().to_string(),
        source,
    }
}

/// One operation of a spec, as stored for the reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecOperation {
    pub api: String,
    pub method: String,
    pub route: String,
    pub retired_or_deprecated: bool,
    pub spec_file: String,
}

pub struct Store {
    pub(super) conn: Connection,
}

impl Store {
    /// Opens (creating it and its directory when missing) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
                path: dir.display().to_string(),
                source,
            })?;
        }
        // Private before SQLite opens it: its write-ahead log and shared-memory files are
        // created with the database's mode; ones left by a crash are tightened by path. Never
        // open and close one of these files once SQLite has: closing any descriptor of a file
        // drops every POSIX lock the process holds on it, SQLite's included, and another
        // process would then take the agent for gone and truncate the shared memory the agent
        // has mapped (SIGBUS, seen once in CI with `sightline inventory` reading).
        private_file(path)?;
        for suffix in ["-wal", "-shm"] {
            let mut companion = path.as_os_str().to_owned();
            companion.push(suffix);
            make_private_if_present(std::path::Path::new(&companion))?;
        }
        let conn = Connection::open(path).map_err(open_error(path))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version == 0 {
            conn.execute_batch(&format!(
                "{ENDPOINTS_TABLE}{FINDINGS_TABLE}{SPEC_OPERATIONS_TABLE}{CHANGES_TABLE}"
            ))?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        } else if version == 1 || version == 2 {
            let to_2 = if version == 1 {
                format!("{MIGRATE_1_TO_2} {FINDINGS_TABLE} {MIGRATE_1_TO_2_ROWS}")
            } else {
                String::new()
            };
            let has_endpoints: i64 = conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'endpoints'",
                [],
                |r| r.get(0),
            )?;
            let to_3 = if has_endpoints > 0 {
                MIGRATE_2_TO_3
            } else {
                ENDPOINTS_TABLE
            };
            conn.execute_batch(&format!(
                "BEGIN; {to_2} {to_3} {CHANGES_TABLE} {SPEC_OPERATIONS_TABLE} \
                 PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))?;
        } else if version != SCHEMA_VERSION {
            return Err(StoreError::SchemaVersion {
                path: path.display().to_string(),
                found: version,
            });
        }
        Ok(Self { conn })
    }

    /// Opens an existing database read-only (the CLI, while the agent may be writing).
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(open_error(path))?;
        Ok(Self { conn })
    }

    /// Every endpoint stored.
    pub fn load(&self) -> Result<Vec<(EndpointKey, EndpointStats)>, StoreError> {
        let mut statement = self.conn.prepare(
            "SELECT api, namespace, direction, method, route, first_seen_unix_nano,
                    last_seen_unix_nano, calls, status_1xx, status_2xx, status_3xx, status_4xx,
                    status_5xx, status_none, duration_sum_ns, duration_max_ns,
                    duration_histogram, request_content_types, response_content_types,
                    auth_schemes, clients, more_clients, tls_calls, class, status_codes,
                    query_params, request_schema, response_schema, posture
             FROM endpoints ORDER BY api, namespace, direction, route, method",
        )?;
        let rows = statement.query_map([], |r| {
            let direction: String = r.get(2)?;
            let texts: [String; 5] = [r.get(16)?, r.get(17)?, r.get(18)?, r.get(19)?, r.get(20)?];
            Ok((
                EndpointKey {
                    api: r.get(0)?,
                    namespace: r.get(1)?,
                    direction: Direction::parse(&direction).unwrap_or(Direction::Served),
                    method: r.get(3)?,
                    route: r.get(4)?,
                },
                [
                    r.get::<_, i64>(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                    r.get(11)?,
                    r.get(12)?,
                    r.get(13)?,
                    r.get(14)?,
                    r.get(15)?,
                    r.get(21)?,
                    r.get(22)?,
                ],
                texts,
                r.get::<_, Option<String>>(23)?,
                [
                    Some(r.get::<_, String>(24)?),
                    Some(r.get::<_, String>(25)?),
                    r.get::<_, Option<String>>(26)?,
                    r.get::<_, Option<String>>(27)?,
                    r.get::<_, Option<String>>(28)?,
                ],
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key, n, texts, class, more) = row?;
            let json = |text: &Option<String>| -> Result<Option<serde_json::Value>, StoreError> {
                Ok(match text {
                    Some(t) => Some(serde_json::from_str(t)?),
                    None => None,
                })
            };
            let n: Vec<u64> = n.iter().map(|v| *v as u64).collect();
            let stats = EndpointStats {
                first_seen_unix_nano: n[0],
                last_seen_unix_nano: n[1],
                calls: n[2],
                status_classes: [n[3], n[4], n[5], n[6], n[7], n[8]],
                duration_sum_ns: n[9],
                duration_max_ns: n[10],
                duration_histogram: serde_json::from_str(&texts[0])?,
                request_content_types: serde_json::from_str(&texts[1])?,
                response_content_types: serde_json::from_str(&texts[2])?,
                auth_schemes: serde_json::from_str(&texts[3])?,
                clients: serde_json::from_str(&texts[4])?,
                more_clients: n[11] != 0,
                tls_calls: n[12],
                class: class.as_deref().and_then(Class::parse),
                status_codes: serde_json::from_str(more[0].as_deref().unwrap_or("[]"))?,
                query_params: serde_json::from_str(more[1].as_deref().unwrap_or("[]"))?,
                request_schema: json(&more[2])?,
                response_schema: json(&more[3])?,
                posture: match &more[4] {
                    Some(text) => serde_json::from_str(text)?,
                    None => Default::default(),
                },
                announced: None,
            };
            out.push((key, stats));
        }
        Ok(out)
    }

    /// Writes findings (each row a finding's cumulative state), in one transaction.
    pub fn save_findings(&mut self, findings: &[Finding]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut statement = tx.prepare_cached(
                "INSERT OR REPLACE INTO findings VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,
                    ?10, ?11, ?12, ?13, ?14, ?15)",
            )?;
            for f in findings {
                let (rule, e) = (f.key.rule, &f.key.endpoint);
                statement.execute(params![
                    rule.id(),
                    rule.name(),
                    f.severity.name(),
                    rule.owasp(),
                    e.api,
                    e.namespace,
                    e.direction.name(),
                    e.method,
                    e.route,
                    f.key.client,
                    f.client,
                    f.first_seen_unix_nano as i64,
                    f.last_seen_unix_nano as i64,
                    f.count as i64,
                    serde_json::Value::Object(f.evidence.clone()).to_string(),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every finding stored (rows of rules this agent does not know are skipped), most severe
    /// and most recent first.
    pub fn load_findings(&self) -> Result<Vec<Finding>, StoreError> {
        let mut statement = self.conn.prepare(
            "SELECT rule_id, severity, api, namespace, direction, method, route, key_client,
                    client, first_seen_unix_nano, last_seen_unix_nano, count, evidence
             FROM findings
             ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1
                      WHEN 'medium' THEN 2 WHEN 'low' THEN 3 ELSE 4 END,
                      last_seen_unix_nano DESC, rule_id, api, route, method, key_client",
        )?;
        let rows = statement.query_map([], |r| {
            let texts: [String; 10] = [
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(12)?,
            ];
            let numbers: [i64; 3] = [r.get(9)?, r.get(10)?, r.get(11)?];
            Ok((texts, numbers))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                [
                    rule,
                    severity,
                    api,
                    namespace,
                    direction,
                    method,
                    route,
                    key_client,
                    client,
                    evidence,
                ],
                n,
            ) = row?;
            let (Some(rule), Some(severity), Some(direction)) = (
                Rule::parse(&rule),
                Severity::parse(&severity),
                Direction::parse(&direction),
            ) else {
                continue;
            };
            let evidence = match serde_json::from_str(&evidence)? {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            };
            out.push(Finding {
                key: FindingKey {
                    rule,
                    endpoint: EndpointKey {
                        api,
                        namespace,
                        direction,
                        method,
                        route,
                    },
                    client: key_client,
                },
                severity,
                client,
                first_seen_unix_nano: n[0] as u64,
                last_seen_unix_nano: n[1] as u64,
                count: n[2] as u64,
                evidence,
            });
        }
        Ok(out)
    }

    /// Replaces the operations of the specs (for the report's unused endpoints).
    pub fn save_spec_operations(&mut self, specs: &Specs) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM spec_operations", [])?;
        {
            let mut statement = tx.prepare_cached(
                "INSERT OR REPLACE INTO spec_operations VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for bound in specs.bound() {
                let apis: Vec<&String> = bound.service.iter().chain(&bound.spec.hosts).collect();
                for api in apis {
                    for (method, route, old) in bound.routes() {
                        statement.execute(params![
                            api,
                            method,
                            route,
                            i64::from(old),
                            bound.spec.file.display().to_string()
                        ])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every operation of the specs, as of the last time the agent read them.
    pub fn spec_operations(&self) -> Result<Vec<SpecOperation>, StoreError> {
        let mut statement = self.conn.prepare(
            "SELECT api, method, route, retired_or_deprecated, spec_file FROM spec_operations
             ORDER BY api, route, method",
        )?;
        let rows = statement.query_map([], |r| {
            Ok(SpecOperation {
                api: r.get(0)?,
                method: r.get(1)?,
                route: r.get(2)?,
                retired_or_deprecated: r.get::<_, i64>(3)? != 0,
                spec_file: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Spec operations no call matched since `since_unix_nano`: (api, method, route, spec file).
    pub fn unused_operations(&self, since_unix_nano: u64) -> Result<Vec<Unused>, StoreError> {
        let mut statement = self.conn.prepare(
            "SELECT s.api, s.method, s.route, s.spec_file FROM spec_operations s
             WHERE NOT EXISTS (SELECT 1 FROM endpoints e
                 WHERE e.api = s.api AND e.method = s.method AND e.route = s.route
                   AND e.last_seen_unix_nano >= ?1)
             ORDER BY s.api, s.route, s.method",
        )?;
        let rows = statement.query_map([since_unix_nano as i64], |r| {
            Ok(Unused {
                api: r.get(0)?,
                method: r.get(1)?,
                route: r.get(2)?,
                spec_file: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Writes the endpoints' current statistics, in one transaction.
    pub fn save(&mut self, endpoints: &[(EndpointKey, EndpointStats)]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut statement = tx.prepare_cached(
                // A row holds an endpoint's cumulative statistics: replacing it is the update.
                "INSERT OR REPLACE INTO endpoints VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,
                    ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24,
                    ?25, ?26, ?27, ?28, ?29)",
            )?;
            for (key, s) in endpoints {
                let c = s.status_classes.map(|n| n as i64);
                statement.execute(params![
                    key.api,
                    key.namespace,
                    key.direction.name(),
                    key.method,
                    key.route,
                    s.first_seen_unix_nano as i64,
                    s.last_seen_unix_nano as i64,
                    s.calls as i64,
                    c[0],
                    c[1],
                    c[2],
                    c[3],
                    c[4],
                    c[5],
                    s.duration_sum_ns as i64,
                    s.duration_max_ns as i64,
                    serde_json::to_string(&s.duration_histogram)?,
                    serde_json::to_string(&s.request_content_types)?,
                    serde_json::to_string(&s.response_content_types)?,
                    serde_json::to_string(&s.auth_schemes)?,
                    serde_json::to_string(&s.clients)?,
                    i64::from(s.more_clients),
                    s.tls_calls as i64,
                    s.class.map(Class::name),
                    serde_json::to_string(&s.status_codes)?,
                    serde_json::to_string(&s.query_params)?,
                    s.request_schema.as_ref().map(serde_json::Value::to_string),
                    s.response_schema.as_ref().map(serde_json::Value::to_string),
                    serde_json::to_string(&s.posture)?,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_survive_a_reopen_and_writes_replace() {
        let dir = tempfile_dir();
        let path = dir.join("inventory.sqlite");
        let key = EndpointKey {
            api: "orders".into(),
            namespace: "shop".into(),
            direction: Direction::Served,
            method: "GET".into(),
            route: "/orders/{id}".into(),
        };
        let mut stats = EndpointStats::default();
        stats.record(&crate::call::tests::sample(), "web");
        let mut store = Store::open(&path).unwrap();
        store.save(&[(key.clone(), stats.clone())]).unwrap();
        stats.record(&crate::call::tests::sample(), "cart");
        store.save(&[(key.clone(), stats.clone())]).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.load().unwrap(), vec![(key.clone(), stats.clone())]);
        let read_only = Store::open_read_only(&path).unwrap();
        assert_eq!(read_only.load().unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A version 2 database keeps its endpoints, which get an empty posture, and gains the
    /// changes table.
    #[test]
    fn version_2_is_migrated_with_its_endpoints() {
        let dir = tempfile_dir().join("v2");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("inventory.sqlite");
        let key = EndpointKey::served_get("orders", "/orders/{id}");
        let mut stats = EndpointStats::default();
        stats.record(&crate::call::tests::sample(), "web");
        {
            let mut store = Store::open(&path).unwrap();
            store.save(&[(key.clone(), stats.clone())]).unwrap();
        }
        {
            // Back to version 2's layout: no posture column, no changes table.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "ALTER TABLE endpoints DROP COLUMN posture; DROP TABLE changes;
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        stats.posture = Default::default();
        assert_eq!(store.load().unwrap(), vec![(key.clone(), stats.clone())]);
        assert!(store.load_changes(0, None).unwrap().is_empty());
        stats
            .posture
            .reach
            .insert(crate::inventory::reach::Reach::Internet);
        store.save(&[(key.clone(), stats.clone())]).unwrap();
        assert_eq!(store.load().unwrap(), vec![(key, stats)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn findings_round_trip_and_version_1_is_migrated() {
        let dir = tempfile_dir().join("v1");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("inventory.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE findings (kind TEXT NOT NULL, api TEXT NOT NULL, namespace TEXT NOT NULL,
                   direction TEXT NOT NULL, method TEXT NOT NULL, route TEXT NOT NULL,
                   first_seen_unix_nano INTEGER NOT NULL, client TEXT NOT NULL, status INTEGER,
                   spec_file TEXT, PRIMARY KEY (kind, api, namespace, direction, method, route));
                 INSERT INTO findings VALUES ('zombie', 'shop', '', 'served', 'DELETE', '/u/{id}', 5, 'web', 204, 'shop.yaml');
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        let mut findings = store.load_findings().unwrap();
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!(
            (f.key.rule, f.severity, f.client.as_str(), f.count),
            (Rule::ZombieEndpoint, Severity::Medium, "web", 1)
        );
        assert_eq!(f.evidence["spec_file"], "shop.yaml");
        findings[0].count = 7;
        findings[0].evidence.insert("status".into(), 200.into());
        store.save_findings(&findings).unwrap();
        assert_eq!(store.load_findings().unwrap(), findings);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sightline-store-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_database_and_its_log_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile_dir();
        let path = dir.join("inventory.sqlite");
        // One made by an earlier version, under a permissive umask.
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = Store::open(&path).unwrap();
        drop(store);
        let fresh = dir.join("new.sqlite");
        let _store = Store::open(&fresh).unwrap();
        for file in [path, fresh.clone(), dir.join("new.sqlite-wal")] {
            if file.exists() {
                let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", file.display());
            }
        }
        assert!(
            dir.join("new.sqlite-wal").exists(),
            "WAL mode makes a log file"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A shared-memory file left by a crash (and made under a permissive umask) is tightened
    /// without the agent losing SQLite's lock on it: /proc/locks still shows this process's
    /// lock on the file once the store is open, so no other process can take it for gone and
    /// truncate the memory the agent has mapped.
    #[test]
    fn opening_keeps_sqlites_lock_on_a_leftover_shared_memory_file() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let dir = tempfile_dir();
        let path = dir.join("crashed.sqlite");
        drop(Store::open(&path).unwrap());
        let shm = dir.join("crashed.sqlite-shm");
        std::fs::write(&shm, b"").unwrap();
        std::fs::set_permissions(&shm, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = Store::open(&path).unwrap();
        store.load().unwrap();
        let inode = std::fs::metadata(&shm).unwrap().ino();
        let pid = std::process::id();
        let locks = std::fs::read_to_string("/proc/locks").unwrap();
        let held = locks.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.iter().any(|f| *f == pid.to_string())
                && fields
                    .iter()
                    .any(|f| f.rsplit(':').next() == Some(&inode.to_string()))
        });
        assert!(held, "no lock of pid {pid} on inode {inode}:\n{locks}");
        let mode = std::fs::metadata(&shm).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
