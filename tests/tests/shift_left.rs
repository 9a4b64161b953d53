//! Shift left: `sightline record` runs a service's integration tests (fixtures/shift_left: a
//! Python API, its spec, and a test script that starts the API and calls it) and keeps exactly
//! their calls, none of another service called beside them at the same time; the command's
//! output and exit status pass through. `sightline gate` then fails as the README says, passes
//! once a baseline accepts the results, and its SARIF (checked by Microsoft's SARIF Multitool
//! and field by field) and JUnit XML say the same.
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use serde_json::Value;
use sightline_tests::{agent_binary, curl_status, fixture, free_port, python_fixture, report};

/// The Multitool's npm package, pinned: a self-contained .NET program (no runtime to install).
const MULTITOOL: &str = "@microsoft/sarif-multitool@5.7.0";

fn sightline(dir: &Path, args: &[&str]) -> Output {
    Command::new(agent_binary())
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The executable name python3 runs as (`python3.11`): what the agent names the test client.
fn python_name() -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, sys; print(os.path.basename(os.path.realpath(sys.executable)))",
        ])
        .output()
        .unwrap();
    text(&out.stdout).trim().to_string()
}

#[test]
fn record_keeps_only_the_commands_calls_and_gate_fails_until_a_baseline_accepts_them() {
    let multitool = sarif_multitool();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("shift_left/api.yaml"), dir.path().join("api.yaml")).unwrap();

    // Another service, called all through the recording from outside the command.
    let other_port = free_port();
    let mut other = python_fixture("people_api.py", other_port);
    assert_eq!(other.line(), "ready");
    let stop = Arc::new(AtomicBool::new(false));
    let other_calls = Arc::new(AtomicU64::new(0));
    let caller = {
        let (stop, calls) = (stop.clone(), other_calls.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let url = format!("http://127.0.0.1:{other_port}/api/users/alice");
                assert_eq!(curl_status(None, &[&url]), "200");
                calls.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let port = free_port().to_string();
    let tests = fixture("shift_left/tests.py");
    let recorded = sightline(
        dir.path(),
        &[
            "record",
            "--spec",
            "api.yaml",
            "--service",
            "demo",
            "--",
            "python3",
            tests.to_str().unwrap(),
            &port,
            "fail",
        ],
    );
    stop.store(true, Ordering::Relaxed);
    caller.join().unwrap();
    assert!(other_calls.load(Ordering::Relaxed) > 0);

    // The command's own output and status, unchanged; then one line from sightline.
    assert_eq!(
        recorded.status.code(),
        Some(3),
        "{}",
        text(&recorded.stderr)
    );
    assert_eq!(
        text(&recorded.stdout),
        "tests: statuses [200, 200, 200, 201]\n"
    );
    let stderr = text(&recorded.stderr);
    assert!(
        stderr.ends_with(
            "sightline: record: 4 calls to 4 endpoints, 2 findings, in sightline-record.sqlite\n"
        ),
        "{stderr}"
    );
    assert_inventory(&dir.path().join("sightline-record.sqlite"));

    let client = python_name();
    let gate = sightline(
        dir.path(),
        &[
            "gate",
            "--fail-on",
            "shadow,unauthenticated-success",
            "--sarif",
            "out.sarif",
            "--junit",
            "junit.xml",
            "--json",
            "gate.json",
        ],
    );
    assert_eq!(gate.status.code(), Some(1), "{}", text(&gate.stderr));
    assert_eq!(
        text(&gate.stdout),
        format!(
            "FAIL          high     unauthenticated-success  demo POST /items: a call without credentials succeeded where authentication is expected (1 call from {client})\n\
             FAIL          low      shadow                   demo serves GET /debug/config, which api.yaml does not document (1 call)\n\
             note          info     unused                   demo DELETE /items/{{id}} is in api.yaml but no call reached it\n\
             sightline gate: FAILED (--fail-on shadow,unauthenticated-success): 2 failed, 0 accepted by the baseline, 1 reported only\n"
        )
    );
    let sarif: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out.sarif")).unwrap()).unwrap();
    assert_sarif(&sarif, None);
    validate_sarif(&multitool, &dir.path().join("out.sarif"));
    assert_junit(
        &std::fs::read_to_string(dir.path().join("junit.xml")).unwrap(),
        false,
    );
    let json: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("gate.json")).unwrap()).unwrap();
    assert_eq!(
        (&json["passed"], &json["failed"], &json["reported"]),
        (&Value::Bool(false), &Value::from(2), &Value::from(1))
    );

    // The team accepts these results: the same gate passes against the baseline.
    let written = sightline(dir.path(), &["gate", "--write-baseline", "baseline.json"]);
    assert!(written.status.success(), "{}", text(&written.stderr));
    let gate = sightline(
        dir.path(),
        &[
            "gate",
            "--fail-on",
            "shadow,unauthenticated-success",
            "--baseline",
            "baseline.json",
            "--sarif",
            "out.sarif",
            "--junit",
            "junit.xml",
        ],
    );
    assert!(gate.status.success(), "{}", text(&gate.stdout));
    assert!(text(&gate.stdout).ends_with(
        "sightline gate: passed (--fail-on shadow,unauthenticated-success): 0 failed, 2 accepted by the baseline, 1 reported only\n"
    ));
    let sarif: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out.sarif")).unwrap()).unwrap();
    assert_sarif(&sarif, Some(()));
    validate_sarif(&multitool, &dir.path().join("out.sarif"));
    assert_junit(
        &std::fs::read_to_string(dir.path().join("junit.xml")).unwrap(),
        true,
    );
    // An unknown condition is refused before anything is read.
    let refused = sightline(dir.path(), &["gate", "--fail-on", "shadwo"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("\"shadwo\" is not a check"));
}

#[test]
fn record_ends_what_the_command_leaves_running_and_removes_its_cgroup() {
    let dir = tempfile::tempdir().unwrap();
    let recorded = sightline(
        dir.path(),
        &[
            "record",
            "--wait-secs",
            "1",
            "--",
            "sh",
            "-c",
            "sleep 300 & echo $!",
        ],
    );
    assert_eq!(
        recorded.status.code(),
        Some(0),
        "{}",
        text(&recorded.stderr)
    );
    let pid = text(&recorded.stdout).trim().to_string();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "sleep {pid} still runs"
    );
    assert!(
        text(&recorded.stderr)
            .contains("sightline: record: the command left 1 process running; killed after 1 s\n"),
        "{}",
        text(&recorded.stderr)
    );
    let cgroups = Command::new("sh")
        .args(["-c", "ls -d /sys/fs/cgroup/sightline-record-* /sys/fs/cgroup/unified/sightline-record-* 2>/dev/null"])
        .output()
        .unwrap();
    assert_eq!(text(&cgroups.stdout), "");
    // Under sudo the command runs as the user who invoked it (here nobody), unless --as-root.
    let db = dir.path().join("as-user.sqlite");
    let as_user = |extra: &[&str]| {
        let out = Command::new(agent_binary())
            .current_dir("/")
            .env("SUDO_UID", "65534")
            .env("SUDO_GID", "65534")
            .args(["record", "--db", db.to_str().unwrap()])
            .args(extra)
            .args(["--", "sh", "-c", "id -u; id -g; id -G; echo $HOME"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let nobody_home = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find(|l| l.split(':').nth(2) == Some("65534"))
        .map(|l| l.split(':').nth(5).unwrap().to_string())
        .unwrap();
    assert_eq!(
        as_user(&[]),
        format!("65534\n65534\n65534\n{nobody_home}\n")
    );
    assert!(as_user(&["--as-root"]).starts_with("0\n0\n"));
    // The run's files are the invoking user's.
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(std::fs::metadata(&db).unwrap().uid(), 65534);
    // A command that cannot start is one line and exit 1; one a signal ends is 128 + it.
    let missing = sightline(dir.path(), &["record", "--", "/nonexistent/command"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("sightline: error: starting /nonexistent/command: "));
    let killed = sightline(dir.path(), &["record", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(killed.status.code(), Some(143));
}

/// Exactly the API's endpoints, one call each, and none of the other service's.
fn assert_inventory(db: &Path) {
    let endpoints: Value =
        serde_json::from_slice(&report("inventory", db, &["--format", "json"])).unwrap();
    let mut seen: Vec<String> = endpoints
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {} {} calls={}",
                e["api"].as_str().unwrap(),
                e["direction"].as_str().unwrap_or("-"),
                e["method"].as_str().unwrap(),
                e["route"].as_str().unwrap(),
                e["class"].as_str().unwrap(),
                e["calls"]
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            "demo - DELETE /items/{id} unused calls=0",
            "demo served GET /debug/config shadow calls=1",
            "demo served GET /items documented calls=1",
            "demo served GET /items/{id} documented calls=1",
            "demo served POST /items documented calls=1",
        ]
    );
}

/// The SARIF log field by field; `baseline`: the run compared with an accepting baseline.
fn assert_sarif(sarif: &Value, baseline: Option<()>) {
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "Sightline");
    let rules = driver["rules"].as_array().unwrap();
    let results = run["results"].as_array().unwrap();
    let summary: Vec<String> = results
        .iter()
        .map(|r| {
            let rule = &rules[r["ruleIndex"].as_u64().unwrap() as usize];
            assert_eq!(rule["id"], r["ruleId"]);
            let location = &r["locations"][0];
            format!(
                "{} {} {} {}:{} {} {} {}",
                r["ruleId"].as_str().unwrap(),
                r["level"].as_str().unwrap(),
                r["properties"]["verdict"].as_str().unwrap(),
                location["physicalLocation"]["artifactLocation"]["uri"]
                    .as_str()
                    .unwrap(),
                location["physicalLocation"]["region"]["startLine"],
                location["logicalLocations"][0]["fullyQualifiedName"]
                    .as_str()
                    .unwrap(),
                r["baselineState"].as_str().unwrap_or("-"),
                r["suppressions"][0]["kind"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    let expected = match baseline {
        None => [
            "SL-AUTH-001 error fail api.yaml:13 demo POST /items - -",
            "SL-INV-001 error fail api.yaml:12 demo GET /debug/config - -",
            "SL-INV-004 note reported api.yaml:23 demo DELETE /items/{id} - -",
        ],
        Some(()) => [
            "SL-AUTH-001 error accepted api.yaml:13 demo POST /items unchanged external",
            "SL-INV-001 note accepted api.yaml:12 demo GET /debug/config unchanged external",
            "SL-INV-004 note reported api.yaml:23 demo DELETE /items/{id} unchanged -",
        ],
    };
    assert_eq!(summary, expected);
    for r in results {
        assert_eq!(
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"],
            "%SRCROOT%"
        );
        assert!(r["message"]["text"].as_str().unwrap().ends_with('.'));
        assert!(
            !r["partialFingerprints"]["sightlineResult/v1"]
                .as_str()
                .unwrap()
                .is_empty()
        );
    }
    assert_eq!(
        results[0]["properties"]["evidence"]["reasons"],
        serde_json::json!(["spec-secured", "state-changing-method"])
    );
}

/// The JUnit report: a suite per condition, a case per endpoint and spec operation.
fn assert_junit(xml: &str, accepted: bool) {
    let (failures, skipped) = if accepted { (0, 2) } else { (2, 0) };
    assert!(
        xml.contains(&format!(
            "<testsuites name=\"sightline gate\" tests=\"10\" failures=\"{failures}\" skipped=\"{skipped}\">"
        )),
        "{xml}"
    );
    for (suite, bad) in [
        ("shadow", "GET /debug/config"),
        ("unauthenticated-success", "POST /items"),
    ] {
        let start = xml
            .find(&format!(
                "<testsuite name=\"sightline gate: {suite}\" tests=\"5\""
            ))
            .unwrap();
        let body = &xml[start..xml[start..].find("</testsuite>").unwrap() + start];
        for case in [
            "GET /debug/config",
            "GET /items",
            "GET /items/{id}",
            "POST /items",
            "DELETE /items/{id}",
        ] {
            let opening = format!("<testcase classname=\"demo.served\" name=\"{case}\">");
            let at = body
                .find(&opening)
                .unwrap_or_else(|| panic!("{case} in {suite}: {body}"));
            let rest = &body[at + opening.len()..];
            let inside = &rest[..rest.find("</testcase>").unwrap()];
            let expected = match (case == bad, accepted) {
                (false, _) => "",
                (true, true) => "<skipped message=\"accepted by the baseline\"/>",
                (true, false) => "<failure type=",
            };
            assert_eq!(
                inside.trim().get(..expected.len()),
                Some(expected),
                "{case} in {suite}"
            );
        }
    }
}

/// Installs Microsoft's SARIF Multitool from npm once per target directory.
fn sarif_multitool() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sarif-multitool");
    let binary = dir.join("node_modules/@microsoft/sarif-multitool-linux/Sarif.Multitool");
    if !binary.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg(MULTITOOL)
            .status()
            .unwrap();
        assert!(status.success(), "npm could not install {MULTITOOL}");
    }
    // npm 11 does not run the package's install script (its chmod) unless allowed.
    let _ = Command::new("chmod").arg("u+x").arg(&binary).status();
    binary
}

/// The Multitool's SARIF and GitHub rules find nothing but the one warning the README names
/// (no `informationUri`: the project has no public address yet).
fn validate_sarif(multitool: &Path, sarif: &Path) {
    let out = sarif.with_extension("validation.sarif");
    let _ = std::fs::remove_file(&out);
    let run = Command::new(multitool)
        .env("DOTNET_SYSTEM_GLOBALIZATION_INVARIANT", "1")
        .args(["validate", "--rule-kind", "Sarif;Gh", "--output"])
        .arg(&out)
        .arg(sarif)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stdout));
    let report: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let found: Vec<String> = report["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["ruleId"].as_str().unwrap(),
                r["message"]["id"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        found,
        ["SARIF2005 Warning_ProvideToolnformationUri"],
        "{}",
        text(&run.stdout)
    );
}
