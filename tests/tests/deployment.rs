//! The image and the manifests, checked as a deployment would meet them, without a cluster:
//! hadolint passes the Dockerfile; `kubectl kustomize` renders `k8s/base` and both overlays,
//! and every object passes strict validation against the schemas of a pinned Kubernetes
//! version (an unknown field fails, as the control case shows); every setting the manifests
//! give a service is one that service reads (asked of the binaries themselves:
//! `<service> settings`, run with the rendered environment); every probe names a port its
//! container declares, and the ports declared are the ones the settings make it listen on;
//! pods run as non-root on a read-only root filesystem and get longer to stop than a stop
//! takes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use e2e::{binary, test_tool, workspace_root};
use serde_json::Value;

/// The Kubernetes version whose schemas the objects must satisfy.
const KUBERNETES: &str = "1.33.0";

const SERVICES: [&str; 4] = ["order-svc", "stock-svc", "orchestrator", "notify-svc"];

fn run(command: &mut Command) -> String {
    let output = command.output().expect("the tool runs");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// `k8s/<dir>` rendered by kustomize.
fn render(dir: &str) -> String {
    run(Command::new(test_tool("kubectl"))
        .args(["kustomize"])
        .arg(workspace_root().join("k8s").join(dir)))
}

/// The objects of a rendered YAML stream.
fn objects(yaml: &str) -> Vec<Value> {
    let file = temp_file("objects.yaml", yaml);
    let json = run(Command::new(e2e::test_python())
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(&file));
    serde_json::from_str(&json).expect("JSON")
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("t_k8s_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// Whether `kubernetes-validate --strict` passes every object of `yaml`; its report.
fn validate(yaml: &str) -> (bool, String) {
    let file = temp_file("rendered.yaml", yaml);
    let output = Command::new(test_tool("kubernetes-validate"))
        .args(["--strict", "--quiet", "-k", KUBERNETES])
        .arg(&file)
        .output()
        .expect("kubernetes-validate runs");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> impl Iterator<Item = &'a Value> {
    objects.iter().filter(move |o| o["kind"] == kind)
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    of_kind(objects, kind)
        .find(|o| o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

#[test]
fn the_dockerfile_passes_hadolint_and_the_build_context_leaves_out_the_build_output() {
    let root = workspace_root();
    run(Command::new(test_tool("hadolint"))
        .args(["--failure-threshold", "info"])
        .arg(root.join("Dockerfile")));
    let ignored = std::fs::read_to_string(root.join(".dockerignore")).expect(".dockerignore");
    for path in ["target/", ".git/", ".stack/"] {
        assert!(
            ignored.lines().any(|l| l == path),
            "{path} in .dockerignore"
        );
    }
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    for service in SERVICES.iter().chain(&["ticketctl"]) {
        assert!(
            dockerfile.contains(&format!("target/release/{service}")),
            "the image holds {service}"
        );
    }
}

#[test]
fn base_and_both_overlays_render_and_pass_strict_validation() {
    for dir in ["base", "overlays/dev", "overlays/prod"] {
        let rendered = render(dir);
        let (passed, report) = validate(&rendered);
        assert!(passed, "k8s/{dir}: {report}");
        let objects = objects(&rendered);
        for service in SERVICES {
            for kind in [
                "Deployment",
                "Service",
                "PodDisruptionBudget",
                "HorizontalPodAutoscaler",
            ] {
                named(&objects, kind, service);
            }
            let job = named(&objects, "Job", &format!("{service}-migrate"));
            assert_eq!(
                job["spec"]["template"]["spec"]["containers"][0]["command"],
                serde_json::json!([format!("/usr/local/bin/{service}"), "migrate"])
            );
        }
        for map in ["ticket-settings", "ticket-alert-rules", "ticket-dashboard"] {
            named(&objects, "ConfigMap", map);
        }
        assert!(
            objects
                .iter()
                .all(|o| o["metadata"]["namespace"] == "ticketing" || o["kind"] == "Namespace"),
            "k8s/{dir}: everything in the ticketing namespace"
        );
    }
    // The secrets' template is never real: the dev overlay replaces it, prod leaves it out.
    let base = objects(&render("base"));
    let template = named(&base, "Secret", "ticket-secrets");
    for (key, value) in template["stringData"].as_object().expect("keys") {
        assert_eq!(value, "", "{key} has no value in the template");
    }
    let prod = objects(&render("overlays/prod"));
    assert_eq!(
        of_kind(&prod, "Secret").count(),
        0,
        "prod creates no Secret"
    );
    let dev = objects(&render("overlays/dev"));
    for workload in ["rocketmq-namesrv", "rocketmq-broker", "postgres", "redis"] {
        named(&dev, "StatefulSet", workload);
    }
}

#[test]
fn the_validation_refuses_an_unknown_field() {
    let rendered = render("base");
    let broken = rendered.replacen(
        "terminationGracePeriodSeconds: 50",
        "terminationGracePeriodSeconds: 50\n      terminationGraceSeconds: 50",
        1,
    );
    assert_ne!(broken, rendered);
    let (passed, report) = validate(&broken);
    assert!(!passed, "a misspelt field must fail: {report}");
}

/// Each service's environment in `objects`: the settings ConfigMap and the secrets it is given
/// (with a placeholder value: only the names matter).
fn environment(objects: &[Value], container: &Value) -> BTreeMap<String, String> {
    let settings = named(objects, "ConfigMap", "ticket-settings");
    let mut env: BTreeMap<String, String> = settings["data"]
        .as_object()
        .expect("data")
        .iter()
        .map(|(k, v)| (k.clone(), text(v)))
        .collect();
    for var in container["env"].as_array().into_iter().flatten() {
        let value = var["value"]
            .as_str()
            .map_or_else(|| "secret".to_owned(), str::to_owned);
        env.insert(text(&var["name"]), value);
    }
    env
}

/// What `service` reads, asked of its binary with `env` as its whole environment.
fn settings_read(service: &str, env: &BTreeMap<String, String>) -> BTreeSet<String> {
    let output = run(Command::new(binary(service))
        .arg("settings")
        .env_clear()
        .envs(env));
    output
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.to_owned()))
        .collect()
}

/// The prefix of `service`'s settings.
fn prefix_of(service: &str) -> &'static str {
    match service {
        "order-svc" => "TICKET_ORDER",
        "stock-svc" => "TICKET_STOCK",
        "orchestrator" => "TICKET_ORCHESTRATOR",
        _ => "TICKET_NOTIFY",
    }
}

/// The port of a listen address setting (`0.0.0.0:50051`).
fn port_of(addr: &str) -> u64 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{addr} has no port"))
}

#[test]
fn every_setting_given_is_read_and_every_probe_and_port_is_one_the_service_listens_on() {
    let (mut optional, mut optional_read) = (BTreeSet::new(), BTreeSet::new());
    for dir in ["base", "overlays/dev", "overlays/prod"] {
        let objects = objects(&render(dir));
        let settings = named(&objects, "ConfigMap", "ticket-settings");
        let given: BTreeSet<String> = settings["data"]
            .as_object()
            .expect("data")
            .keys()
            .cloned()
            .collect();
        let mut read = BTreeSet::new();
        for service in SERVICES {
            let deployment = named(&objects, "Deployment", service);
            let pod = &deployment["spec"]["template"]["spec"];
            let container = &pod["containers"][0];
            assert_eq!(
                container["envFrom"][0]["configMapRef"]["name"], "ticket-settings",
                "k8s/{dir}: {service} is given the settings"
            );
            let env = environment(&objects, container);
            let reads = settings_read(service, &env);
            // Its database is migrated before it runs, by its init container and its Job, both
            // given the settings and the database's URL.
            let job = named(&objects, "Job", &format!("{service}-migrate"));
            for migrator in [
                &pod["initContainers"][0],
                &job["spec"]["template"]["spec"]["containers"][0],
            ] {
                assert_eq!(
                    migrator["command"],
                    serde_json::json!([format!("/usr/local/bin/{service}"), "migrate"]),
                    "k8s/{dir}: {service}"
                );
                assert_eq!(
                    migrator["envFrom"], container["envFrom"],
                    "k8s/{dir}: {service}"
                );
                let url = format!("{}_DATABASE__URL", prefix_of(service));
                assert!(
                    migrator["env"]
                        .as_array()
                        .is_some_and(|env| env.iter().any(|v| v["name"] == url.as_str())),
                    "k8s/{dir}: {service}'s migration is given {url}"
                );
            }
            // Everything it reads (with these settings) is given, in the base: the ConfigMap
            // holds every setting, and the secrets the rest.
            if dir == "base" {
                let missing: Vec<&String> =
                    reads.iter().filter(|r| !env.contains_key(*r)).collect();
                assert!(
                    missing.is_empty(),
                    "k8s/base: {service} reads, but is not given: {missing:?}"
                );
            }
            // Every secret the container is given, it reads; an optional one (a channel's
            // credentials) where that channel is configured: in some overlay.
            for var in container["env"].as_array().into_iter().flatten() {
                let name = text(&var["name"]);
                if var["valueFrom"]["secretKeyRef"]["optional"] == true {
                    if reads.contains(&name) {
                        optional_read.insert((service, name.clone()));
                    }
                    optional.insert((service, name));
                    continue;
                }
                assert!(
                    reads.contains(&name),
                    "k8s/{dir}: {service} reads no {name}"
                );
            }
            // Ports: declared by name, probed by name, listened on as the settings say.
            let ports: BTreeMap<String, u64> = container["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .map(|p| {
                    (
                        text(&p["name"]),
                        p["containerPort"].as_u64().expect("number"),
                    )
                })
                .collect();
            let prefix = prefix_of(service);
            for (port, setting) in [("grpc", "GRPC__ADDR"), ("admin", "ADMIN__ADDR")] {
                let addr = &env[&format!("{prefix}_{setting}")];
                assert!(addr.starts_with("0.0.0.0:"), "{service} {setting} = {addr}");
                assert_eq!(
                    ports.get(port),
                    Some(&port_of(addr)),
                    "k8s/{dir}: {service} declares {port} as it listens"
                );
            }
            for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                let probe = &container[probe];
                let port = [
                    &probe["httpGet"]["port"],
                    &probe["grpc"]["port"],
                    &probe["tcpSocket"]["port"],
                ]
                .into_iter()
                .find(|p| !p.is_null())
                .unwrap_or_else(|| panic!("k8s/{dir}: {service} has a {probe}"));
                let known = match port {
                    Value::String(name) => ports.contains_key(name),
                    Value::Number(n) => ports.values().any(|p| Some(*p) == n.as_u64()),
                    _ => false,
                };
                assert!(
                    known,
                    "k8s/{dir}: {service}'s probe port {port} is declared"
                );
            }
            let service_object = named(&objects, "Service", service);
            for port in service_object["spec"]["ports"].as_array().expect("ports") {
                assert!(
                    ports.contains_key(&text(&port["targetPort"])),
                    "k8s/{dir}: Service {service} targets a declared port: {port}"
                );
            }
            // Runs as non-root on a read-only root, and is given longer than a stop takes.
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{service}");
            assert_eq!(
                container["securityContext"]["readOnlyRootFilesystem"], true,
                "{service}"
            );
            let grace = pod["terminationGracePeriodSeconds"]
                .as_u64()
                .expect("grace");
            assert!(
                grace > ticket_platform::app::STOP_TAKES_AT_MOST.as_secs() + 5,
                "k8s/{dir}: {service}'s grace {grace} s, a stop takes up to {:?} and the preStop 5 s",
                ticket_platform::app::STOP_TAKES_AT_MOST
            );
            let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
            assert_eq!(
                annotations["prometheus.io/port"]
                    .as_str()
                    .map(str::parse::<u64>),
                Some(Ok(ports["admin"])),
                "k8s/{dir}: {service} is scraped on its admin port"
            );
            read.extend(reads);
        }
        let unread: Vec<&String> = given.difference(&read).collect();
        assert!(
            unread.is_empty(),
            "k8s/{dir}: settings no service reads: {unread:?}"
        );
    }
    let never: Vec<_> = optional.difference(&optional_read).collect();
    assert!(never.is_empty(), "secrets read in no overlay: {never:?}");
}

#[test]
fn the_monitoring_configmaps_carry_the_files_the_tests_check() {
    let objects = objects(&render("base"));
    let root = workspace_root().join("k8s/monitoring");
    let rules = named(&objects, "ConfigMap", "ticket-alert-rules");
    assert_eq!(
        text(&rules["data"]["alerts.rules.yaml"]),
        std::fs::read_to_string(Path::new(&root).join("alerts.rules.yaml")).expect("rules")
    );
    let dashboard = named(&objects, "ConfigMap", "ticket-dashboard");
    assert_eq!(
        text(&dashboard["data"]["ticket-sale.json"]),
        std::fs::read_to_string(root.join("dashboard.json")).expect("dashboard")
    );
}
