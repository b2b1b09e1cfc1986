//! The Helm chart in charts/model-operator: lint, values schema, what it
//! renders (CRD, RBAC, restricted pod, flags), what the API server accepts,
//! and a real install, upgrade with a CRD schema change, and uninstall.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;
use model_operator::api::ModelDeployment;
use serde_json::{Value, json};
use support::helm::{KUBE_VERSION, Release, chart, helm, objects, ok, template};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(60);
const CRD_FILE: &str = "files/mlops.dev_modeldeployments.yaml";
/// The optional field the upgrade test adds to the shared CRD, for a moment.
const PROBE_FIELD: &str = "helmUpgradeProbe";

fn rendered(sets: &[&str]) -> Vec<Value> {
    objects(&ok("helm template", template(&chart(), "ops", sets)))
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn single<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    match of_kind(objects, kind)[..] {
        [one] => one,
        ref all => panic!("expected one {kind}, found {}", all.len()),
    }
}

/// Asserts the operator container is started with each of these flags.
fn assert_flags(objects: &[Value], flags: &[&str]) -> Vec<String> {
    let args: Vec<String> = serde_json::from_value(
        single(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"].clone(),
    )
    .expect("args are strings");
    for flag in flags {
        assert!(args.iter().any(|a| a == flag), "{flag} missing: {args:?}");
    }
    args
}

#[test]
fn lint_is_clean() {
    let chart = chart();
    let chart = chart.to_string_lossy();
    for set in [
        "replicas=1",
        "watchNamespaces={a,b}",
        "serviceMonitor.enabled=true",
        "metrics.networkPolicy.enabled=true",
        "metrics.secure=false",
    ] {
        let out = ok(
            "helm lint",
            helm(&[
                "lint",
                &chart,
                "--strict",
                "--kube-version",
                KUBE_VERSION,
                "--set",
                set,
            ]),
        );
        assert!(
            !out.contains("[WARNING]") && !out.contains("[ERROR]"),
            "helm lint --set {set}:\n{out}"
        );
    }
}

#[test]
fn the_values_schema_rejects_bad_values() {
    for (set, complaint) in [
        ("replicas=abc", "/replicas"),
        ("replicas=-1", "/replicas"),
        ("logFormat=xml", "/logFormat"),
        ("watchNamespaces=models", "/watchNamespaces"),
        ("watchNamespaces={Not_A_Namespace}", "/watchNamespaces/0"),
        ("listen.metricsPort=70000", "/listen/metricsPort"),
        ("serviceMonitor.interval=often", "/serviceMonitor/interval"),
        ("metrics.secure=maybe", "/metrics/secure"),
        ("metrics.readers[0].name=prom", "/metrics/readers/0"),
        ("replica=2", "replica"),
    ] {
        let out = template(&chart(), "ops", &[set]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(
            stderr.contains(complaint),
            "--set {set}: the error does not name {complaint}:\n{stderr}"
        );
    }
}

#[test]
fn the_chart_ships_the_crds_folder_crd_and_keeps_it_on_uninstall() {
    let objects = rendered(&[]);
    let crd = single(&objects, "CustomResourceDefinition");
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
        "helm uninstall must never delete the CRD (and every ModelDeployment with it)"
    );
    assert_eq!(
        crd["metadata"]["annotations"]["argocd.argoproj.io/sync-options"], "Delete=false",
        "nor Argo CD, which does not read Helm's annotation"
    );
    let committed =
        std::fs::read_to_string(repo_root().join("crds/mlops.dev_modeldeployments.yaml"))
            .expect("crds/ file");
    let committed: Value = serde_yaml::from_str(&committed).expect("CRD parses");
    let mut shipped = crd.clone();
    let metadata = shipped["metadata"].as_object_mut().expect("metadata");
    metadata.remove("annotations");
    metadata.remove("labels");
    assert!(
        shipped == committed,
        "the chart's CRD differs from crds/ beyond its Helm metadata: run `make crds`"
    );

    let without = rendered(&["crds.install=false"]);
    assert!(of_kind(&without, "CustomResourceDefinition").is_empty());
}

#[test]
fn the_operator_pod_meets_the_restricted_pod_security_standard() {
    let objects = rendered(&[]);
    let pod = &single(&objects, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    for key in ["hostNetwork", "hostPID", "hostIPC", "volumes"] {
        assert!(pod.get(key).is_none(), "{key} is set");
    }
    let containers = pod["containers"].as_array().expect("containers");
    for c in containers {
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}));
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        assert!(sc.get("privileged").is_none());
        assert!(c["resources"]["requests"].is_object() && c["resources"]["limits"].is_object());
    }
}

#[test]
fn values_reach_the_operators_flags() {
    let args = assert_flags(
        &rendered(&[]),
        &[
            "--metrics-addr=0.0.0.0:8080",
            "--health-addr=0.0.0.0:8081",
            "--log-format=json",
            "--concurrency=16",
            "--metrics-auth=kubernetes",
        ],
    );
    assert!(!args.iter().any(|a| a.starts_with("--metrics-cert-dir")));
    assert!(!args.iter().any(|a| a.starts_with("--namespace")));
    assert_flags(
        &rendered(&[
            "listen.address=::",
            "listen.metricsPort=9090",
            "watchNamespaces={a,b}",
        ]),
        &[
            "--metrics-addr=[::]:9090",
            "--health-addr=[::]:8081",
            "--namespace=a",
            "--namespace=b",
        ],
    );
    assert_flags(
        &rendered(&["metrics.secure=false"]),
        &["--metrics-auth=none"],
    );
    // A mounted certificate instead of the self-signed one.
    let objects = rendered(&["metrics.certSecret=metrics-tls"]);
    assert_flags(
        &objects,
        &["--metrics-cert-dir=/etc/model-operator/metrics-tls"],
    );
    let pod = &single(&objects, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "metrics-tls");
}

#[test]
fn the_metrics_network_policy_admits_only_the_selected_namespaces() {
    assert!(of_kind(&rendered(&[]), "NetworkPolicy").is_empty());
    let objects = rendered(&["metrics.networkPolicy.enabled=true"]);
    let policy = single(&objects, "NetworkPolicy");
    let pod_labels = &single(&objects, "Deployment")["spec"]["selector"]["matchLabels"];
    assert_eq!(&policy["spec"]["podSelector"]["matchLabels"], pod_labels);
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        policy["spec"]["ingress"],
        json!([
            {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
             "ports": [{"port": "metrics", "protocol": "TCP"}]},
            {"ports": [{"port": "health", "protocol": "TCP"}]},
        ])
    );
}

/// Each purpose's list reaches its own flag; nothing is allowed unless
/// listed (no outbound flag at all by default), and `allowAny` must be
/// said. The deprecated list still reaches its flag.
#[test]
fn outbound_lists_reach_their_flags_by_purpose() {
    let args = assert_flags(&rendered(&[]), &[]);
    assert!(
        !args.iter().any(|a| a.starts_with("--allow")),
        "no outbound flag by default: {args:?}"
    );
    assert_flags(
        &rendered(&[
            "outbound.allowedPrometheus={http://prometheus.monitoring:9090}",
            "outbound.allowedAlertmanager={http://alertmanager.monitoring:9093}",
            "outbound.allowedWebhooks={https://hooks.example/team-a}",
            "outbound.allowedEndpoints={http://old:9090}",
            "outbound.allowAny=true",
        ]),
        &[
            "--allowed-prometheus=http://prometheus.monitoring:9090",
            "--allowed-alertmanager=http://alertmanager.monitoring:9093",
            "--allowed-webhook=https://hooks.example/team-a",
            "--allowed-endpoint=http://old:9090",
            "--allow-any-endpoint",
        ],
    );
    assert_flags(
        &rendered(&[
            "analysisRounds.perEndpoint=4",
            "outbound.scopeQueriesToNamespace=true",
        ]),
        &["--analysis-per-endpoint=4", "--scope-queries-to-namespace"],
    );
    let out = template(
        &chart(),
        "ops",
        &["outbound.allowedWebhooks={hooks.example}"],
    );
    assert!(
        !out.status.success(),
        "a prefix without a scheme was accepted"
    );
}

/// Every rule of every (Cluster)Role the chart renders.
fn rules(objects: &[Value]) -> Vec<(String, Value)> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
        .flat_map(|role| {
            let name = format!(
                "{} {}/{}",
                role["kind"].as_str().unwrap_or_default(),
                role["metadata"]["namespace"].as_str().unwrap_or("-"),
                role["metadata"]["name"].as_str().unwrap_or_default()
            );
            role["rules"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |rule| (name.clone(), rule))
        })
        .collect()
}

#[test]
fn rbac_has_no_wildcards_and_reads_secrets_only_by_name() {
    let names = |objects: &[Value], kind: &str| -> Vec<String> {
        let mut names: Vec<String> = of_kind(objects, kind)
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap_or_default().into())
            .collect();
        names.sort();
        names
    };
    // Secured /metrics (the default) adds the token and access reviews
    // (bound) and the readers' role (bound only to metrics.readers), in
    // namespaced mode too: those reviews are cluster-scoped requests.
    let operator = "ops-model-operator";
    let (auth, reader) = (
        "ops-model-operator-metrics-auth",
        "ops-model-operator-metrics-reader",
    );
    // People's ModelDeployment rights, aggregated into admin/edit/view:
    // bound by nobody here, in every mode.
    let (edit, view) = ("ops-model-operator-edit", "ops-model-operator-view");
    for (sets, cluster_roles, bindings) in [
        (
            vec![],
            vec![operator, edit, auth, reader, view],
            vec![operator, auth],
        ),
        (
            vec!["watchNamespaces={a,b}"],
            vec![edit, auth, reader, view],
            vec![auth],
        ),
        (
            vec!["metrics.secure=false"],
            vec![operator, edit, view],
            vec![operator],
        ),
        (
            vec!["watchNamespaces={a,b}", "metrics.secure=false"],
            vec![edit, view],
            vec![],
        ),
        (
            vec!["metrics.secure=false", "rbac.aggregateToDefaultRoles=false"],
            vec![operator],
            vec![operator],
        ),
    ] {
        let objects = rendered(&sets);
        assert_eq!(names(&objects, "ClusterRole"), cluster_roles, "{sets:?}");
        assert_eq!(names(&objects, "ClusterRoleBinding"), bindings, "{sets:?}");
        for (role, rule) in rules(&objects) {
            // A rule names resources or (the readers' role) URLs.
            let resources = rule.get("resources").is_some();
            let fields: &[&str] = if resources {
                &["apiGroups", "resources", "verbs"]
            } else {
                &["nonResourceURLs", "verbs"]
            };
            for field in fields {
                assert!(
                    !rule[field].as_array().expect(field).contains(&json!("*")),
                    "{role} has a wildcard: {rule}"
                );
            }
            if rule["resources"]
                .as_array()
                .is_some_and(|r| r.contains(&json!("secrets")))
            {
                assert_eq!(rule["verbs"], json!(["get"]), "{role}: {rule}");
            }
        }
    }
    // Namespaced mode: the same rules in each watched namespace, nothing else.
    let objects = rendered(&["watchNamespaces={a,b}"]);
    let namespaces: Vec<_> = of_kind(&objects, "RoleBinding")
        .iter()
        .map(|b| b["metadata"]["namespace"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        namespaces,
        ["a", "b", "ops"],
        "ops: the leader-election lease"
    );
}

#[test]
fn the_service_monitor_is_off_by_default_and_scrapes_metrics_when_on() {
    assert!(of_kind(&rendered(&[]), "ServiceMonitor").is_empty());
    let objects = rendered(&[
        "serviceMonitor.enabled=true",
        "serviceMonitor.labels.release=prom",
    ]);
    let monitor = single(&objects, "ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    // Secured by default: HTTPS with the Prometheus pod's own token.
    assert_eq!(endpoint["scheme"], "https");
    assert_eq!(
        endpoint["bearerTokenFile"],
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    );
    assert_eq!(endpoint["tlsConfig"], json!({"insecureSkipVerify": true}));
    let plain = rendered(&["serviceMonitor.enabled=true", "metrics.secure=false"]);
    let plain = &single(&plain, "ServiceMonitor")["spec"]["endpoints"][0];
    assert!(plain.get("scheme").is_none() && plain.get("bearerTokenFile").is_none());
    let service = single(&objects, "Service");
    assert_eq!(service["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"]
    );
}

fn chart_file(name: &str) -> String {
    std::fs::read_to_string(chart().join("files").join(name)).expect("chart file")
}

#[test]
fn the_prometheus_rule_is_off_by_default_and_ships_the_tested_rules_when_on() {
    assert!(of_kind(&rendered(&[]), "PrometheusRule").is_empty());
    let file: Value =
        serde_yaml::from_str(&chart_file("prometheus-rules.yaml")).expect("rules file parses");
    let expected = |selector: &str| -> Value {
        let text = serde_json::to_string(&file["groups"]).expect("JSON");
        serde_json::from_str(&text.replace(r#"job=\"model-operator\""#, selector)).expect("JSON")
    };

    let objects = rendered(&[
        "prometheusRule.enabled=true",
        "prometheusRule.labels.release=prom",
    ]);
    let rule = single(&objects, "PrometheusRule");
    assert_eq!(rule["metadata"]["labels"]["release"], "prom");
    assert_eq!(rule["metadata"]["namespace"], "ops");
    // By default the job the ServiceMonitor's Service gives.
    let service = single(&objects, "Service");
    let job = service["metadata"]["name"].as_str().expect("service name");
    assert_eq!(job, "model-operator-metrics");
    assert_eq!(
        rule["spec"]["groups"],
        expected(&format!(r#"job=\"{job}\""#))
    );
    let alerts: Vec<&str> = rule["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for alert in [
        "ModelDeploymentRolledBack",
        "ModelDeploymentRolloutInconclusive",
        "ModelDeploymentMetricBreach",
        "ModelOperatorReconcileErrors",
        "ModelOperatorNoLeader",
        "ModelOperatorDown",
        "ModelOperatorApiRequestRateHigh",
    ] {
        assert!(alerts.contains(&alert), "{alert} missing from {alerts:?}");
    }
    // Every selector was replaced.
    assert!(
        !rule["spec"]
            .to_string()
            .contains(r#"job=\"model-operator\""#)
    );

    let objects = rendered(&[
        "prometheusRule.enabled=true",
        r#"prometheusRule.operatorSelector=namespace="ops"\,service="mo""#,
    ]);
    let rule = single(&objects, "PrometheusRule");
    assert_eq!(
        rule["spec"]["groups"],
        expected(r#"namespace=\"ops\",service=\"mo\""#)
    );
}

#[test]
fn the_dashboard_configmap_is_off_by_default_and_carries_the_sidecar_label() {
    let is_dashboard = |o: &&Value| {
        o["kind"] == "ConfigMap" && o["metadata"]["name"] == "model-operator-dashboard"
    };
    assert!(!rendered(&[]).iter().any(|o| is_dashboard(&o)));
    let objects = rendered(&["grafanaDashboard.enabled=true"]);
    let cm = objects
        .iter()
        .find(is_dashboard)
        .expect("dashboard ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(cm["metadata"]["namespace"], "ops");
    let shipped: Value =
        serde_json::from_str(cm["data"]["model-operator.json"].as_str().expect("data"))
            .expect("JSON");
    let file: Value = serde_json::from_str(&chart_file("dashboard.json")).expect("JSON");
    assert_eq!(shipped, file);

    let objects = rendered(&[
        "grafanaDashboard.enabled=true",
        "grafanaDashboard.namespace=monitoring",
        "grafanaDashboard.annotations.grafana_folder=MLOps",
    ]);
    let cm = objects
        .iter()
        .find(is_dashboard)
        .expect("dashboard ConfigMap");
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "MLOps");
}

#[test]
fn the_default_image_tag_is_the_crate_version() {
    let chart_yaml: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml parses");
    assert_eq!(chart_yaml["appVersion"], env!("CARGO_PKG_VERSION"));
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains(&format!("\nARG VERSION={}\n", env!("CARGO_PKG_VERSION"))),
        "the Dockerfile's VERSION label default is not the crate version"
    );
    let objects = rendered(&[]);
    let image =
        &single(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"];
    assert_eq!(
        image.as_str(),
        Some(
            format!(
                "docker.io/library/model-operator:{}",
                env!("CARGO_PKG_VERSION")
            )
            .as_str()
        )
    );
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = repo_root().join("target/helm-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The two tests that write the CRD take turns: the upgrade test adds a
/// field with Helm, and a concurrent `ensure_crd` (server-side apply of the
/// code's CRD, whose `versions` list is atomic) would take it away again
/// between the upgrade and the check.
static CRD_WRITERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn the_api_server_accepts_what_the_chart_renders() {
    let _turn = CRD_WRITERS.lock().await;
    let client = client().await;
    ensure_crd(&client).await;
    let ops = TestNamespace::new(&client, "helm-dry").await;
    let watched = TestNamespace::new(&client, "helm-dry-watched").await;
    let dir = scratch_dir(&ops.name);
    let modes = [
        ("cluster-wide", String::from("replicas=1")),
        (
            "namespaced",
            format!("watchNamespaces={{{}}}", watched.name),
        ),
    ];
    for (mode, set) in modes {
        let manifest = ok("helm template", template(&chart(), &ops.name, &[&set]));
        let file = dir.join(format!("{mode}.yaml"));
        std::fs::write(&file, manifest).expect("write manifest");
        let out = kubectl(&["apply", "--dry-run=server", "-f", &file.to_string_lossy()]);
        let applied = ok(&format!("kubectl apply --dry-run=server ({mode})"), out);
        assert!(
            applied.contains("deployment.apps/model-operator"),
            "{applied}"
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read chart dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The chart with one more optional field in the CRD's spec schema: a
/// purely additive change, since the CRD is shared with every other test.
fn chart_with_a_new_crd_field(dir: &Path) -> PathBuf {
    let copy = dir.join("model-operator");
    copy_dir(&chart(), &copy);
    let path = copy.join(CRD_FILE);
    let mut crd: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).expect("chart CRD")).expect("parses");
    let spec = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let spec = spec.as_mapping_mut().expect("spec properties");
    spec.insert(
        PROBE_FIELD.into(),
        serde_yaml::from_str("{type: string, description: Added by the Helm upgrade test.}")
            .expect("field schema"),
    );
    std::fs::write(&path, serde_yaml::to_string(&crd).expect("CRD YAML")).expect("write CRD");
    copy
}

/// Puts the code's CRD back exactly (spec and metadata) when the test ends,
/// even when it fails: an update, because server-side apply would leave the
/// field Helm added in place.
struct RestoreCrd;

impl Drop for RestoreCrd {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime is busy dropping us.
        let restored = std::thread::spawn(|| {
            tokio::runtime::Runtime::new()
                .expect("runtime")
                .block_on(restore_crd())
        })
        .join();
        if restored.is_err() && !std::thread::panicking() {
            panic!("could not put the code's CRD back; run any e2e test to reapply it");
        }
    }
}

async fn restore_crd() {
    let client = client().await;
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let mut crd = model_operator::api::crd();
    let name = crd.metadata.name.clone().expect("CRD name");
    let mut attempts = 0;
    loop {
        crd.metadata.resource_version = api
            .get(&name)
            .await
            .expect("the CRD")
            .metadata
            .resource_version;
        match api.replace(&name, &PostParams::default(), &crd).await {
            Ok(_) => break,
            // Another test applied it in between.
            Err(kube::Error::Api(s)) if s.code == 409 && attempts < 5 => attempts += 1,
            Err(e) => panic!("put the CRD back: {e}"),
        }
    }
    ensure_crd(&client).await;
}

fn has_probe_field(crd: &Value) -> bool {
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        .get(PROBE_FIELD)
        .is_some()
}

#[tokio::test]
async fn install_upgrade_with_a_crd_change_and_uninstall_keeping_the_crd() {
    let _turn = CRD_WRITERS.lock().await;
    let client = client().await;
    ensure_crd(&client).await;
    let _restore = RestoreCrd;
    // The operator's pod must be admitted where the restricted Pod Security
    // Standard is enforced.
    let ns = TestNamespace::with_labels(
        &client,
        "helm-install",
        json!({"pod-security.kubernetes.io/enforce": "restricted"}),
    )
    .await;
    // The CRD exists already (installed from the code by every test); the
    // release takes it over, as it would one installed by an older release.
    let release = Release::install("model-operator", &ns.name, &chart(), &["--take-ownership"]);

    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns.name);
    wait_for(
        &deployments,
        "model-operator",
        "have its (simulated) pod available",
        TIMEOUT,
        |d| d.status.as_ref().and_then(|s| s.available_replicas) == Some(1),
    )
    .await;
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    mds.create(&PostParams::default(), &minimal_model("kept"))
        .await
        .expect("create");

    let changed = chart_with_a_new_crd_field(&scratch_dir(&ns.name));
    release.upgrade(&changed, &["--set", "concurrency=8"]);
    let crd: Value = serde_json::from_str(&ok(
        "kubectl get crd",
        kubectl(&["get", "crd", "modeldeployments.mlops.dev", "-o", "json"]),
    ))
    .expect("CRD JSON");
    assert!(
        has_probe_field(&crd),
        "helm upgrade did not apply the CRD's new field"
    );
    // Served, not only stored: the API server keeps the new field instead
    // of pruning it (once its handler has the new schema).
    let probe = repo_root()
        .join("target/helm-tests")
        .join(&ns.name)
        .join("probe.yaml");
    std::fs::write(
        &probe,
        json!({
            "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "probe", "namespace": ns.name},
            "spec": {"model": {"version": "1.0"}, "server": {"image": "srv:1"}, PROBE_FIELD: "kept"},
        })
        .to_string(),
    )
    .expect("write probe");
    let what = format!("the API server keeps {PROBE_FIELD}");
    eventually(&what, TIMEOUT, || async {
        let out = kubectl(&[
            "create",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            &probe.to_string_lossy(),
        ]);
        let created: Value =
            serde_json::from_str(&ok("kubectl create --dry-run=server", out)).expect("json");
        if created["spec"][PROBE_FIELD] == "kept" {
            Ok(())
        } else {
            Err(created["spec"].clone())
        }
    })
    .await;
    let deployment = deployments.get("model-operator").await.expect("Deployment");
    let args = deployment
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers[0].args.clone());
    assert!(
        args.flatten()
            .unwrap_or_default()
            .contains(&"--concurrency=8".to_string()),
        "helm upgrade did not change the Deployment"
    );

    release.uninstall();
    wait_gone(&deployments, "model-operator", TIMEOUT).await;
    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get_opt("modeldeployments.mlops.dev")
        .await
        .expect("get CRD");
    assert!(crd.is_some(), "helm uninstall deleted the CRD");
    assert!(
        mds.get_opt("kept").await.expect("get").is_some(),
        "helm uninstall deleted a user's ModelDeployment"
    );
}

#[test]
fn the_admission_policy_matches_only_the_operators_account_and_is_bound() {
    let objects = rendered(&[]);
    let policy = single(&objects, "ValidatingAdmissionPolicy");
    let binding = single(&objects, "ValidatingAdmissionPolicyBinding");
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    assert_eq!(
        policy["spec"]["matchConditions"][0]["expression"],
        "request.userInfo.username == 'system:serviceaccount:ops:model-operator'"
    );
    let protected = policy["spec"]["validations"][0]["expression"].to_string();
    for ns in ["kube-system", "kube-public", "kube-node-lease"] {
        assert!(protected.contains(&format!("'{ns}'")), "{protected}");
    }
    assert!(
        of_kind(
            &rendered(&["admissionPolicy.enabled=false"]),
            "ValidatingAdmissionPolicy"
        )
        .is_empty()
    );
}

#[test]
fn secret_namespaces_replace_the_cluster_wide_secret_rule_with_roles() {
    let reads_secrets = |rule: &Value| {
        rule["resources"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("secrets")))
    };
    for sets in [vec![], vec!["watchNamespaces={a,b}"]] {
        let objects = rendered(&sets);
        assert!(
            rules(&objects).iter().any(|(_, r)| reads_secrets(r)),
            "{sets:?}"
        );
    }
    for sets in [
        vec!["secretNamespaces={team-a,team-b}"],
        vec!["secretNamespaces={team-a,team-b}", "watchNamespaces={a,b}"],
    ] {
        let objects = rendered(&sets);
        let with_secrets: Vec<String> = rules(&objects)
            .into_iter()
            .filter(|(_, r)| reads_secrets(r))
            .map(|(role, r)| {
                assert_eq!(r["verbs"], json!(["get"]), "{role}");
                role
            })
            .collect();
        assert_eq!(
            with_secrets,
            [
                "Role team-a/model-operator-secrets",
                "Role team-b/model-operator-secrets"
            ],
            "{sets:?}"
        );
        let bound: Vec<&str> = of_kind(&objects, "RoleBinding")
            .iter()
            .filter(|b| b["roleRef"]["name"] == "model-operator-secrets")
            .map(|b| b["metadata"]["namespace"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(bound, ["team-a", "team-b"]);
    }
}
