//! `sightline record -- COMMAND`: runs a command (a service's integration tests) under the
//! agent, captures only that command's process tree (its own cgroup), and keeps the run's
//! inventory and findings in a database of their own for `sightline gate`. The command's
//! standard streams and exit status pass through unchanged.

pub mod cgroup;
pub mod user;

use std::{
    path::{Path, PathBuf},
    process::ExitStatus,
    time::Duration,
};

use cgroup::RecordCgroup;

use crate::{
    cli::RecordArgs,
    config::{OutputFormat, RunConfig},
    identity::naming::{Conditions, Pattern, ServiceRule},
    inventory::spec_source::ApiSpecEntry,
};

/// What the run came to: the command's exit code, and what the database holds.
pub struct Recorded {
    pub exit_code: u8,
    /// Processes the command left running, killed after the grace period.
    pub left_running: usize,
    pub calls: u64,
    pub endpoints: usize,
    pub findings: usize,
}

/// Runs the command under capture; returns its exit code (128 + signal when a signal ended
/// it, as shells report it).
pub fn run(args: RecordArgs) -> anyhow::Result<Recorded> {
    let db = args.db.clone();
    remove_database(&db)?;
    let cgroup = RecordCgroup::create()?;
    let config = config(&args, &cgroup)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("sightline")
        .build()?;
    let grace = Duration::from_secs(args.wait_secs);
    let command = args.command.clone();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    // Under sudo: the run's files are the invoking user's, and so is the command unless
    // --as-root.
    let invoking = user::InvokingUser::from_environment(&passwd);
    let runs_as = invoking.as_ref().filter(|_| !args.as_root);
    let outcome = runtime.block_on(crate::pipeline::run_until(config, async {
        let status = run_command(&command, &cgroup, runs_as).await;
        let left_running = cgroup.wait_empty(grace).await;
        (status, left_running)
    }))?;
    let Some((status, left_running)) = outcome else {
        // The command's child was killed with its future; its descendants go with the cgroup.
        runtime.block_on(cgroup.kill_all());
        anyhow::bail!("stopped by a signal before the command ended");
    };
    let exit_code = exit_code(status?);
    // Read before the files change owner: a read opens SQLite's shared-memory file, and one
    // made by root afterwards would be root's.
    let store = crate::store::Store::open_read_only(&db)?;
    let endpoints = store.load()?;
    let findings = store.load_findings()?.len();
    drop(store);
    if let Some(user) = &invoking {
        user.give(&db);
    }
    Ok(Recorded {
        exit_code,
        left_running,
        calls: endpoints.iter().map(|(_, s)| s.calls).sum(),
        endpoints: endpoints.len(),
        findings,
    })
}

/// The agent's settings for a recording: the run's cgroup only, the run's database, no local
/// output unless asked, the specs of `--spec`, and the command's servers named `--service`.
fn config(args: &RecordArgs, cgroup: &RecordCgroup) -> anyhow::Result<RunConfig> {
    let mut run = args.agent_options();
    run.cgroups = vec![cgroup.dir().display().to_string()];
    let mut config = run.into_config()?;
    config.inventory_db = Some(args.db.clone());
    if let Some(tls) = &mut config.tls {
        tls.report_path = None;
    }
    if config.file.findings.fingerprint_key_file.is_none() {
        let mut key = args.db.clone().into_os_string();
        key.push(".key");
        config.file.findings.fingerprint_key_file = Some(key.into());
    }
    config
        .file
        .api_specs
        .extend(spec_entries(&args.specs, &args.services)?);
    if let [service] = args.services.as_slice() {
        config
            .file
            .service_rules
            .push(serving_rule(service, cgroup.inside())?);
    }
    if args.output.is_none() {
        config.output = OutputFormat::None;
    }
    Ok(config)
}

/// `--spec` and `--service` in pairs; one `--service` for several specs applies to each.
fn spec_entries(specs: &[PathBuf], services: &[String]) -> anyhow::Result<Vec<ApiSpecEntry>> {
    let service_of = |i: usize| match services {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many if many.len() == specs.len() => Ok(Some(many[i].clone())),
        _ => anyhow::bail!(
            "give one --service for all the specs, or one per --spec ({} specs, {} services)",
            specs.len(),
            services.len()
        ),
    };
    specs
        .iter()
        .enumerate()
        .map(|(i, path)| {
            Ok(ApiSpecEntry {
                path: path.clone(),
                service: service_of(i)?,
                retired: false,
            })
        })
        .collect()
}

/// Names `service` every end in the run's cgroup that serves a call (its clients keep their
/// own names); rules of the config file come first and win.
fn serving_rule(service: &str, cgroup_inside: &str) -> anyhow::Result<ServiceRule> {
    let pattern = format!("^{}(/|$)", regex::escape(cgroup_inside));
    Ok(ServiceRule {
        name: service.to_string(),
        namespace: None,
        conditions: Conditions {
            cgroup: Some(Pattern(regex::Regex::new(&pattern)?)),
            serving: true,
            ..Conditions::default()
        },
    })
}

/// Starts the command in the cgroup and waits for it; a SIGINT or SIGTERM to the recorder
/// ends the whole run (the pipeline stops, and the cgroup's processes are killed).
async fn run_command(
    command: &[String],
    cgroup: &RecordCgroup,
    user: Option<&user::InvokingUser>,
) -> anyhow::Result<ExitStatus> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no command to record"))?;
    let mut child = tokio::process::Command::new(program);
    child.args(args).kill_on_drop(true);
    // In this order in the child: join the cgroup (root), then become the user.
    cgroup.enter_on_spawn(&mut child)?;
    if let Some(user) = user {
        user.apply(&mut child);
    }
    let mut child = child
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {program}: {e}"))?;
    Ok(child.wait().await?)
}

fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.saturating_add(signal as u8),
        (None, None) => 1,
    }
}

/// The database holds one run: a previous one at the same path is removed first.
fn remove_database(db: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!(
                "removing the previous run's {}: {e}",
                Path::new(&path).display()
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_pair_with_one_service_or_one_each() {
        let specs = [PathBuf::from("a.yaml"), PathBuf::from("b.yaml")];
        let services = |entries: Vec<ApiSpecEntry>| -> Vec<Option<String>> {
            entries.into_iter().map(|e| e.service).collect()
        };
        assert_eq!(services(spec_entries(&specs, &[]).unwrap()), [None, None]);
        let one = ["demo".to_string()];
        assert_eq!(
            services(spec_entries(&specs, &one).unwrap()),
            [Some("demo".into()), Some("demo".into())]
        );
        let two = ["a".to_string(), "b".to_string()];
        assert_eq!(
            services(spec_entries(&specs, &two).unwrap()),
            [Some("a".into()), Some("b".into())]
        );
        let three = ["a".to_string(), "b".to_string(), "c".to_string()];
        assert!(spec_entries(&specs, &three).is_err());
    }

    #[test]
    fn the_serving_rule_matches_the_runs_cgroup_and_below_only() {
        let rule = serving_rule("demo", "/sightline-record-7").unwrap();
        let pattern = &rule.conditions.cgroup.as_ref().unwrap().0;
        assert!(pattern.is_match("/sightline-record-7"));
        assert!(pattern.is_match("/sightline-record-7/child"));
        assert!(!pattern.is_match("/sightline-record-70"));
        assert!(rule.conditions.serving);
    }

    #[test]
    fn exit_codes_are_the_shells() {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }
}
