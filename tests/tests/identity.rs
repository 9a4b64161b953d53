//! Identity of both ends of a call: processes in real cgroups with kubelet- and Docker-style
//! paths, pods from a Kubernetes API server (a real HTTP server answering list/watch), hosts in
//! network namespaces joined by a veth pair, naming rules from a config file, a pod IP reused by
//! a second pod, and the TLS server name.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use sightline_tests::{
    Agent, Program, calls_on_port, cgroups::TestCgroup, curl, curl_status, free_port,
    kube::FakeApiServer, netns::TwoHosts, the_one, tls_nginx, wait_for_port,
};

const NODE: &str = "test-node";

/// Starts the agent with `config` (TOML) written next to its outputs.
fn agent_with_config(config: &str, extra: &[&str]) -> (Agent, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sightline.toml");
    std::fs::write(&path, config).unwrap();
    (Agent::with_config(&path, extra), dir)
}

/// Waits until the agent has listed every Kubernetes kind once.
fn wait_synced(agent: &mut Agent) {
    agent.wait_until("the Kubernetes metadata to sync", |a| {
        a.stderr().contains("kubernetes metadata synced")
    });
}

/// tests/fixtures/kube/held_server.py on port 8080 of `bind` in namespace `ns`: `/held` waits
/// for the file `release`; `extra` arguments are ignored by the script.
fn held_server(ns: &str, bind: &str, release: &str, extra: &[&str]) -> Program {
    let script = sightline_tests::fixture("kube/held_server.py");
    let mut args = vec![script.to_str().unwrap(), bind, "8080", release];
    args.extend_from_slice(extra);
    Program::spawn(TwoHosts::command(ns, "python3", &args))
}

/// A Kubernetes pod object.
fn pod(name: &str, uid: &str, ip: &str, labels: Value, owner: Option<(&str, &str)>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "labels": labels},
        "spec": {"nodeName": NODE, "serviceAccountName": "shop-sa",
                 "containers": [{"name": "app", "image": "shop/app:1"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    });
    if let Some((kind, owner_name)) = owner {
        pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": kind,
            "name": owner_name, "uid": "owner-uid", "controller": true}]);
    }
    pod
}

/// A 64-hex container id that differs between runs.
fn container_id(seed: u64) -> String {
    format!("{:016x}", seed ^ u64::from(std::process::id()) << 20).repeat(4)
}

/// The one call seen by `kind` on `path`.
fn call<'a>(calls: &'a [Value], kind: &str, path: &str) -> &'a Value {
    the_one(calls, &format!("{kind} calls on {path}"), |c| {
        c["span.kind"] == kind && c["url.path"] == path
    })
}

/// Without the API server (no `[kubernetes]`), a pod is still told apart by the UID in its
/// kubelet cgroup path, at both ends (it was dropped from every output once).
#[test]
fn a_pod_keeps_its_uid_without_the_api_server() {
    let run = std::process::id();
    let uid = format!("{run:08x}-1a2b-4c3d-8e9f-0a1b2c3d4e5f");
    let id = container_id(3);
    let cgroup = TestCgroup::create(&format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{id}.scope",
        uid.replace('-', "_")
    ));
    let mut agent = Agent::start(&[]);
    let port = free_port();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "hello\n").unwrap();
    let _server = Program::spawn(cgroup.command(&format!(
        "python3 -m http.server {port} --bind 127.0.0.1 --directory {}",
        site.path().display()
    )));
    wait_for_port(port);
    curl(&[&format!("http://127.0.0.1:{port}/index.html")]);
    let calls = agent.collect(port, 1, 1);
    let served = call(&calls, "server", "/index.html");
    assert_eq!(served["k8s.pod.uid"], uid.as_str(), "{served:#}");
    assert_eq!(served["container.id"], id.as_str());
    assert_eq!(served["container.runtime"], "containerd");
    assert!(served.get("k8s.pod.name").is_none(), "{served:#}");
    let client = call(&calls, "client", "/index.html");
    assert_eq!(client["peer.k8s.pod.uid"], uid.as_str(), "{client:#}");
    assert!(client.get("k8s.pod.uid").is_none(), "{client:#}");
}

#[test]
fn processes_in_pod_docker_and_systemd_cgroups_are_named_at_both_ends() {
    let run = std::process::id();
    let uid = format!("{run:08x}-7c1d-4e2f-9a3b-5c6d7e8f9a0b");
    let pod_container = container_id(1);
    let docker_container = container_id(2);
    let pod_cgroup = TestCgroup::create(&format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{pod_container}.scope",
        uid.replace('-', "_")
    ));
    let docker_cgroup = TestCgroup::create(&format!(
        "sightline-test-{run}.slice/docker-{docker_container}.scope"
    ));
    let unit_cgroup = TestCgroup::create(&format!("sightline-test-{run}.slice/billing.service"));

    // Docker's state for the Docker-style container: its name.
    let docker_root = tempfile::tempdir().unwrap();
    let state = docker_root
        .path()
        .join("containers")
        .join(&docker_container);
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("config.v2.json"),
        json!({"ID": docker_container, "Name": "/web", "State": {"Running": true}}).to_string(),
    )
    .unwrap();

    let mut checkout = pod(
        "checkout-5d8f7c9b6-x2x7q",
        &uid,
        "10.244.1.7",
        json!({"pod-template-hash": "5d8f7c9b6", "app": "checkout"}),
        Some(("ReplicaSet", "checkout-5d8f7c9b6")),
    );
    checkout["status"]["containerStatuses"] = json!([{"name": "app", "image": "shop/app:1",
        "imageID": "x", "ready": true, "restartCount": 0,
        "containerID": format!("containerd://{pod_container}")}]);
    let api = FakeApiServer::start(&json!({"pods": [checkout]}));

    let (mut agent, _config) = agent_with_config(
        &format!(
            "[identity]\ndocker_root = {:?}\n\n[kubernetes]\nkubeconfig = {:?}\nnode_name = {NODE:?}\n",
            docker_root.path(),
            api.kubeconfig()
        ),
        &[],
    );
    wait_synced(&mut agent);

    let port = free_port();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "hello\n").unwrap();
    let server = Program::spawn(pod_cgroup.command(&format!(
        "python3 -m http.server {port} --bind 127.0.0.1 --directory {}",
        site.path().display()
    )));
    wait_for_port(port);
    for (cgroup, path) in [
        (&docker_cgroup, "/from-web"),
        (&unit_cgroup, "/from-billing"),
    ] {
        let status = cgroup
            .command(&format!(
                "curl -s -o /dev/null http://127.0.0.1:{port}{path}"
            ))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let calls = agent.collect(port, 2, 2);
    let calls: Vec<Value> = calls_on_port(&calls, "server", port)
        .into_iter()
        .chain(calls_on_port(&calls, "client", port))
        .cloned()
        .collect();

    // The server end: a pod named by its Deployment, found through its real cgroup.
    for path in ["/from-web", "/from-billing"] {
        let served = call(&calls, "server", path);
        assert_eq!(served["process.pid"], server.pid());
        assert_eq!(served["service.name"], "checkout", "{served:#}");
        assert_eq!(served["service.namespace"], "shop");
        assert_eq!(served["sightline.service.name_source"], "k8s.workload");
        assert_eq!(served["k8s.namespace.name"], "shop");
        assert_eq!(served["k8s.pod.name"], "checkout-5d8f7c9b6-x2x7q");
        assert_eq!(served["k8s.pod.uid"], uid.as_str());
        assert_eq!(served["k8s.deployment.name"], "checkout");
        assert_eq!(served["k8s.container.name"], "app");
        assert_eq!(served["k8s.node.name"], NODE);
        assert_eq!(served["sightline.k8s.service_account.name"], "shop-sa");
        assert_eq!(served["container.id"], pod_container.as_str());
        assert_eq!(served["container.runtime"], "containerd");
        assert_eq!(served["process.linux.cgroup"], pod_cgroup.path.as_str());
        assert_eq!(served["sightline.peer.kind"], "process");
    }
    let web_seen_by_server = call(&calls, "server", "/from-web");
    assert_eq!(web_seen_by_server["peer.service"], "web");
    assert_eq!(
        web_seen_by_server["peer.container.id"],
        docker_container.as_str()
    );
    assert_eq!(web_seen_by_server["peer.container.runtime"], "docker");
    assert_eq!(web_seen_by_server["peer.container.name"], "web");
    assert_eq!(
        call(&calls, "server", "/from-billing")["peer.service"],
        "billing"
    );

    // The client ends: a Docker container named by its name, a systemd unit by the unit.
    let web = call(&calls, "client", "/from-web");
    assert_eq!(web["service.name"], "web");
    assert_eq!(web["sightline.service.name_source"], "container");
    assert_eq!(web["container.id"], docker_container.as_str());
    assert_eq!(web["container.runtime"], "docker");
    assert_eq!(web["process.linux.cgroup"], docker_cgroup.path.as_str());
    assert!(web.get("k8s.pod.name").is_none(), "{web:#}");
    assert_eq!(web["peer.service"], "checkout");
    assert_eq!(web["peer.service.namespace"], "shop");
    assert_eq!(web["peer.k8s.pod.name"], "checkout-5d8f7c9b6-x2x7q");
    assert_eq!(web["peer.k8s.deployment.name"], "checkout");
    let billing = call(&calls, "client", "/from-billing");
    assert_eq!(billing["service.name"], "billing");
    assert_eq!(billing["sightline.systemd.unit"], "billing.service");
    assert!(billing.get("container.id").is_none(), "{billing:#}");
    assert_eq!(billing["peer.service"], "checkout");

    // The pod watch asked only for this node's pods, and watched.
    let requests = api.requests();
    assert!(
        requests.iter().any(|r| r["path"] == "/api/v1/pods"
            && r["query"]["fieldSelector"] == format!("spec.nodeName={NODE}")
            && r["query"]["watch"] == "true"),
        "{requests:#?}"
    );
    for path in [
        "/api/v1/services",
        "/api/v1/nodes",
        "/apis/discovery.k8s.io/v1/endpointslices",
    ] {
        assert!(
            requests
                .iter()
                .any(|r| r["path"] == path && r["query"]["watch"] == "true"),
            "no watch of {path}: {requests:#?}"
        );
    }
}

#[test]
fn hosts_in_network_namespaces_are_named_at_both_ends_by_config_rules() {
    let hosts = TwoHosts::create(0);
    let server_ip = hosts.b_ips[0].clone();
    let port = 8080;
    // The server's command line carries secrets (ignored by the script), to be removed.
    let mut server = held_server(
        &hosts.b,
        &server_ip,
        "/nonexistent",
        &[
            "--api-token=cmdline-s3cr3t",
            "postgres://app:pw-s3cr3t@db/shop?password=q-s3cr3t&sslmode=require",
        ],
    );
    assert_eq!(server.line(), "ready");

    let config = format!(
        "[kubernetes]\nmode = \"off\"\n\n\
         [[service_rules]]\nname = \"orders\"\nnamespace = \"shop\"\nport = 8080\nexecutable = {:?}\n\n\
         [[service_rules]]\nname = \"storefront\"\ncommand_line = \"^curl .*/checkout\"\n",
        server.executable_name()
    );
    let (mut agent, _config) = agent_with_config(&config, &[]);
    let url = format!("http://{server_ip}:{port}/checkout");
    let status = curl_status(Some(&hosts.a), &["-u", "alice:hunter2", &url]);
    assert_eq!(status, "200");
    let calls = agent.collect(port, 1, 1);
    let served = calls_on_port(&calls, "server", port)[0];
    let made = calls_on_port(&calls, "client", port)[0];

    assert_eq!(served["service.name"], "orders", "{served:#}");
    assert_eq!(served["service.namespace"], "shop");
    assert_eq!(served["sightline.service.name_source"], "config");
    assert_eq!(served["network.peer.address"], hosts.a_ip.as_str());
    assert_eq!(served["peer.service"], "storefront");
    assert_eq!(served["sightline.peer.kind"], "process");
    assert_eq!(served["peer.process.executable.name"], "curl");
    let command_line = served["process.command_line"].as_str().unwrap();
    assert!(
        command_line.ends_with(&format!(
            "held_server.py {server_ip} 8080 /nonexistent --api-token=REDACTED \
             postgres://app:REDACTED@db/shop?password=REDACTED&sslmode=require"
        )),
        "{command_line}"
    );
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(served["host.name"], host_name.trim());
    assert_eq!(
        served["peer.host.name"],
        host_name.trim(),
        "a local peer is on this host"
    );

    assert_eq!(made["service.name"], "storefront", "{made:#}");
    assert!(made.get("service.namespace").is_none());
    assert_eq!(made["server.address"], server_ip.as_str());
    assert_eq!(made["network.peer.address"], server_ip.as_str());
    assert_eq!(made["network.local.address"], hosts.a_ip.as_str());
    assert_eq!(made["peer.service"], "orders");
    assert_eq!(made["peer.service.namespace"], "shop");
    assert_eq!(made["peer.process.pid"], server.pid());
    // The arguments as the kernel copied them at exec: curl has not blanked its password yet
    // (it does once it has read it), and the process may be gone before /proc could be read.
    assert_eq!(
        made["process.command_line"],
        format!("curl -s -o /dev/null -w %{{http_code}} -u alice:REDACTED {url}").as_str()
    );
    // The passwords (and curl's Basic encoding) reached no output.
    let everything = agent.all_output();
    assert!(!everything.contains("s3cr3t"));
    assert!(!everything.contains("hunter2"));
    assert!(!everything.contains("YWxpY2U6aHVudGVyMg"));
}

#[test]
fn remote_ends_are_named_by_who_had_the_address_at_the_time() {
    // Host B is "another machine": its server is not captured, so the client's peer is named
    // from the API server alone. Its addresses: .2 a pod's IP (reused later by another pod),
    // .3 a node's, .4 nobody's, .5 a Service's cluster IP, .6 a pod of another node known
    // only from its Service's EndpointSlice.
    let hosts = TwoHosts::create(4);
    let (pod_ip, node_ip, external_ip) = (&hosts.b_ips[0], &hosts.b_ips[1], &hosts.b_ips[2]);
    let (cluster_ip, remote_pod_ip) = (&hosts.b_ips[3], &hosts.b_ips[4]);
    let release = tempfile::tempdir().unwrap();
    let release_file = release.path().join("release");
    let mut server = held_server(&hosts.b, "0.0.0.0", release_file.to_str().unwrap(), &[]);
    assert_eq!(server.line(), "ready");

    let old = pod(
        "orders-old",
        "uid-old",
        pod_ip,
        json!({"app.kubernetes.io/name": "orders-v1"}),
        Some(("StatefulSet", "orders")),
    );
    let new = pod(
        "orders-new",
        "uid-new",
        pod_ip,
        json!({"app.kubernetes.io/name": "orders-v2"}),
        Some(("StatefulSet", "orders")),
    );
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-b"},
        "status": {"addresses": [{"type": "InternalIP", "address": node_ip}]}});
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "orders-svc", "namespace": "shop"},
        "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                 "ports": [{"port": 8080}]}});
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "payments-x7k2p", "namespace": "billing",
                     "labels": {"kubernetes.io/service-name": "payments"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [remote_pod_ip], "nodeName": "node-b",
                       "conditions": {"ready": true},
                       "targetRef": {"kind": "Pod", "name": "payments-0", "namespace": "billing"}}]});
    let api = FakeApiServer::start(&json!({"pods": [old], "nodes": [node],
        "services": [service], "endpointslices": [slice]}));
    let server_pid = server.pid().to_string();
    let (mut agent, _config) = agent_with_config(
        &format!(
            "[kubernetes]\nkubeconfig = {:?}\nnode_name = {NODE:?}\n",
            api.kubeconfig()
        ),
        &["--exclude-pid", &server_pid],
    );
    wait_synced(&mut agent);

    let curl = |ip: &str, path: &str, extra: &[&str]| {
        let url = format!("http://{ip}:8080{path}");
        let mut args = vec!["-s", "-o", "/dev/null", &url];
        args.extend_from_slice(extra);
        TwoHosts::command(&hosts.a, "curl", &args)
    };
    assert!(curl(pod_ip, "/before", &[]).status().unwrap().success());
    assert!(curl(node_ip, "/node", &[]).status().unwrap().success());
    assert!(
        curl(cluster_ip, "/service", &[])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        curl(remote_pod_ip, "/payments", &[])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        curl(
            external_ip,
            "/external",
            &["-H", "Host: partner.example:8443"]
        )
        .status()
        .unwrap()
        .success()
    );
    // A call that starts while the old pod has the address and ends after the agent knows
    // the new pod has it.
    let mut held = curl(pod_ip, "/held", &[]).spawn().unwrap();
    assert_eq!(server.line(), "held", "the held request reached the server");
    agent.wait_for_calls("the first calls", |c| {
        ["/before", "/node", "/external", "/service", "/payments"]
            .iter()
            .all(|path| c.iter().any(|c| c["url.path"] == *path))
    });

    api.event("pods", "DELETED", &old);
    api.event("pods", "ADDED", &new);
    // Calls until one is named by the new pod (the agent has seen the change).
    agent.wait_until("a call named by the new pod", |a| {
        assert!(curl(pod_ip, "/after", &[]).status().unwrap().success());
        a.calls().iter().any(|c| c["peer.service"] == "orders-v2")
    });
    std::fs::write(&release_file, "").unwrap();
    assert!(held.wait().unwrap().success());
    agent.wait_for_calls("the held call", |c| {
        c.iter().any(|c| c["url.path"] == "/held")
    });
    agent.stop();
    let calls = agent.calls();

    let before = call(&calls, "client", "/before");
    assert_eq!(before["peer.service"], "orders-v1", "{before:#}");
    assert_eq!(before["sightline.peer.kind"], "pod");
    assert_eq!(before["peer.k8s.pod.name"], "orders-old");
    assert_eq!(before["peer.k8s.pod.uid"], "uid-old");
    assert_eq!(before["peer.k8s.statefulset.name"], "orders");
    assert_eq!(before["peer.k8s.namespace.name"], "shop");
    assert_eq!(before["peer.k8s.node.name"], NODE);
    assert_eq!(before["service.name"], "curl");

    // Started under the old pod, finished under the new one: still the old pod's call.
    let held_call = call(&calls, "client", "/held");
    assert_eq!(
        held_call["peer.k8s.pod.name"], "orders-old",
        "{held_call:#}"
    );

    let node_call = call(&calls, "client", "/node");
    assert_eq!(node_call["sightline.peer.kind"], "node");
    assert_eq!(node_call["peer.k8s.node.name"], "node-b");
    assert!(node_call.get("peer.service").is_none(), "{node_call:#}");

    let service = call(&calls, "client", "/service");
    assert_eq!(service["sightline.peer.kind"], "service", "{service:#}");
    assert_eq!(service["peer.service"], "orders-svc");
    assert_eq!(service["peer.service.namespace"], "shop");
    assert_eq!(service["sightline.peer.k8s.service.name"], "orders-svc");
    assert_eq!(service["sightline.peer.service.name_source"], "k8s.service");

    let payments = call(&calls, "client", "/payments");
    assert_eq!(payments["sightline.peer.kind"], "pod", "{payments:#}");
    assert_eq!(payments["peer.service"], "payments");
    assert_eq!(payments["peer.service.namespace"], "billing");
    assert_eq!(payments["peer.k8s.pod.name"], "payments-0");
    assert_eq!(payments["peer.k8s.node.name"], "node-b");
    assert!(payments.get("peer.k8s.pod.uid").is_none(), "{payments:#}");

    let external = call(&calls, "client", "/external");
    assert_eq!(external["sightline.peer.kind"], "external");
    assert!(external.get("peer.service").is_none(), "{external:#}");
    assert_eq!(external["server.address"], "partner.example");
    assert_eq!(external["network.peer.address"], external_ip.as_str());
    assert_eq!(external["network.peer.port"], 8080);

    // Calls after the change: the old pod's until the agent saw the change, then only the new
    // pod's, in the order they were made.
    let mut after: Vec<&Value> = calls
        .iter()
        .filter(|c| c["span.kind"] == "client" && c["url.path"] == "/after")
        .collect();
    after.sort_by_key(|c| c["start_time_unix_nano"].as_u64());
    let names: Vec<&str> = after
        .iter()
        .map(|c| c["peer.k8s.pod.name"].as_str().unwrap_or("none"))
        .collect();
    let first_new = names.iter().position(|n| *n == "orders-new").unwrap();
    assert!(
        names[..first_new].iter().all(|n| *n == "orders-old")
            && names[first_new..].iter().all(|n| *n == "orders-new"),
        "{names:?}"
    );
    let newest = after[first_new];
    assert_eq!(newest["peer.k8s.pod.uid"], "uid-new");
    assert_eq!(newest["peer.service"], "orders-v2");
}

#[test]
fn the_tls_server_name_names_the_server_when_no_host_header_does() {
    let mut agent = Agent::start(&[]);
    let nginx = tls_nginx(&mut agent);
    let port = nginx.port;
    let resolve = format!("partner.test:{port}:127.0.0.1");
    let url = format!("https://partner.test:{port}/hello.txt");
    // With a Host header, then HTTP/1.0 without one (curl's `-H Host:` removes it).
    curl(&["-k", "--resolve", &resolve, &url, "-o", "/dev/null"]);
    curl(&[
        "-k",
        "--http1.0",
        "-H",
        "Host:",
        "--resolve",
        &resolve,
        &format!("{url}?bare"),
        "-o",
        "/dev/null",
    ]);
    let calls = agent.collect(port, 2, 2);
    let calls: Vec<&Value> = calls_on_port(&calls, "server", port)
        .into_iter()
        .chain(calls_on_port(&calls, "client", port))
        .collect();
    assert_eq!(calls.len(), 4, "{calls:#?}");
    for call in &calls {
        assert_eq!(call["tls.client.server_name"], "partner.test", "{call:#}");
        assert_eq!(call["server.address"], "partner.test", "{call:#}");
        assert_eq!(call["http.response.status_code"], 200, "{call:#}");
    }
    let bare: Vec<&&Value> = calls.iter().filter(|c| c["url.query"] == "bare").collect();
    assert_eq!(bare.len(), 2);
    assert!(
        bare.iter()
            .all(|c| c.get("user_agent.original").is_some()
                && c["network.protocol.version"] == "1.0")
    );
}
