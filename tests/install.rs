//! docs/install.md, followed on the local cluster as far as it allows. kwok
//! simulates pods: no node pulls or runs an image. So "load the image" is
//! checked as the names a node's image store would see (the tarball's tag,
//! normalized the way Docker and containerd name it, is the image the
//! chart's Deployment asks for), and "the pod runs" is the operator binary
//! taken out of that very image, run with the installed Deployment's
//! arguments and environment under a token of the chart's ServiceAccount,
//! until the sample ModelDeployment is Ready.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::Api;
use kube::api::ListParams;
use model_operator::api::ModelDeployment;
use serde_json::{Value, json};
use support::helm::{Release, chart};
use support::identity::{service_account_kubeconfig, wait_authorized};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(120);
/// The release name and the command docs/install.md gives.
const RELEASE: &str = "model-operator";
const DOCUMENTED_INSTALL: &str = "helm install model-operator charts/model-operator";
const SAMPLE: &str = "config/samples/fraud-detector.yaml";

/// The image `make image` wrote to .local/image, read from both of its forms.
struct Image {
    /// The tag in the docker-archive tarball (what `kind load image-archive`,
    /// `minikube image load` and `docker load` import).
    tarball_tag: String,
    /// The config digest the tarball names, and the OCI layout's.
    tarball_config: String,
    layout_config: String,
    /// The OCI layout's config: entrypoint, user.
    config: Value,
    /// The OCI layout's only layer, a tar (gzip or not).
    layer: PathBuf,
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

fn json_file(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("JSON")
}

impl Image {
    fn read() -> Self {
        let dir = repo_root().join(".local/image");
        let tarball = dir.join("model-operator.tar");
        assert!(
            tarball.exists() && dir.join("oci/index.json").exists(),
            "no image in {}: run `make image` (make test builds it when missing)",
            dir.display()
        );
        let out = Command::new("tar")
            .arg("-xOf")
            .arg(&tarball)
            .arg("manifest.json")
            .output()
            .expect("run tar");
        assert!(out.status.success(), "no manifest.json in the tarball");
        let manifest: Value = serde_json::from_slice(&out.stdout).expect("manifest.json");
        let [entry] = manifest.as_array().expect("a list").as_slice() else {
            panic!("the tarball holds more than one image: {manifest}");
        };
        let tarball_tag = match entry["RepoTags"].as_array().map(Vec::as_slice) {
            Some([tag]) => tag.as_str().expect("a tag").to_string(),
            _ => panic!("the tarball's image has not exactly one tag: {entry}"),
        };
        let tarball_config = entry["Config"].as_str().expect("Config").to_string();

        let layout = dir.join("oci");
        let index = json_file(&layout.join("index.json"));
        let [descriptor] = index["manifests"].as_array().expect("manifests").as_slice() else {
            panic!("the OCI layout holds more than one image: {index}");
        };
        let manifest = json_file(&blob(&layout, descriptor["digest"].as_str().unwrap()));
        let layout_config = manifest["config"]["digest"].as_str().unwrap().to_string();
        let config = json_file(&blob(&layout, &layout_config));
        let [layer] = manifest["layers"].as_array().expect("layers").as_slice() else {
            panic!("the image has not exactly one layer: {manifest}");
        };
        Self {
            tarball_tag,
            tarball_config,
            layout_config,
            config,
            layer: blob(&layout, layer["digest"].as_str().unwrap()),
        }
    }

    /// The image's root filesystem, unpacked into `dir`.
    fn unpack(&self, dir: &Path) -> PathBuf {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("rootfs dir");
        // GNU tar recognizes a gzip layer by its magic number.
        let status = Command::new("tar")
            .arg("-xf")
            .arg(&self.layer)
            .arg("-C")
            .arg(dir)
            .status()
            .expect("run tar");
        assert!(status.success(), "unpack {}", self.layer.display());
        dir.to_path_buf()
    }
}

/// A reference as Docker and containerd store it: a name without a registry
/// is on docker.io, and a one-part name there is under library/.
fn normalized(reference: &str) -> String {
    let (first, rest) = reference.split_once('/').unwrap_or(("", reference));
    let has_registry = first.contains(['.', ':']) || first == "localhost";
    match (has_registry, first.is_empty()) {
        (true, _) => reference.to_string(),
        (false, true) => format!("docker.io/library/{rest}"),
        (false, false) => format!("docker.io/{reference}"),
    }
}

#[test]
fn references_are_normalized_as_docker_and_containerd_do() {
    for (given, stored) in [
        (
            "model-operator:0.1.0",
            "docker.io/library/model-operator:0.1.0",
        ),
        ("team/op:1", "docker.io/team/op:1"),
        ("ghcr.io/team/op:1", "ghcr.io/team/op:1"),
        ("localhost:5000/op:1", "localhost:5000/op:1"),
        ("localhost/op:1", "localhost/op:1"),
    ] {
        assert_eq!(normalized(given), stored, "{given}");
    }
}

/// The operator process; killed when the test ends, even when it fails.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Deployment's container arguments with the two listen addresses moved
/// to free loopback ports: the process shares the host's network, where the
/// pod's 0.0.0.0:8080 is neither free nor ours to take.
fn on_loopback(args: &[String]) -> (Vec<String>, String) {
    let mut health = String::new();
    let args = args
        .iter()
        .map(|a| {
            for flag in ["--metrics-addr=", "--health-addr="] {
                if a.starts_with(flag) {
                    let addr = format!("127.0.0.1:{}", free_port());
                    if flag == "--health-addr=" {
                        health = addr.clone();
                    }
                    return format!("{flag}{addr}");
                }
            }
            a.clone()
        })
        .collect();
    assert!(!health.is_empty(), "the chart sets no --health-addr");
    (args, health)
}

/// The image config's `Env`, as name and value.
fn image_env(config: &Value) -> Vec<(String, String)> {
    config["config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str()?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn env_value(container: &Container, name: &str) -> Option<String> {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

fn ready(md: &ModelDeployment) -> bool {
    md.status.as_ref().is_some_and(|s| {
        s.observed_generation == md.metadata.generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

#[tokio::test]
async fn the_documented_install_runs_the_images_operator_until_the_sample_is_ready() {
    let doc = std::fs::read_to_string(repo_root().join("docs/install.md")).expect("install doc");
    assert!(
        doc.contains(DOCUMENTED_INSTALL),
        "docs/install.md no longer says `{DOCUMENTED_INSTALL}`: update this test with it"
    );

    // 1. The image: both forms are the same image.
    let image = Image::read();
    let layout_config = image.layout_config.trim_start_matches("sha256:");
    assert!(
        image.tarball_config.contains(layout_config),
        "the tarball ({}) and the OCI layout ({layout_config}) hold different images",
        image.tarball_config
    );

    let client = client().await;
    ensure_crd(&client).await;
    // The operator's namespace enforces the restricted Pod Security
    // Standard, as a hardened cluster's would.
    let system = TestNamespace::with_labels(
        &client,
        "install",
        json!({"pod-security.kubernetes.io/enforce": "restricted"}),
    )
    .await;
    let models = TestNamespace::new(&client, "install-models").await;

    // 3. The documented helm install, with two additions the shared test
    // cluster needs: the CRD exists already (every test installs it), and
    // the operator watches only this test's namespace, not other tests'.
    let _release = Release::install(
        RELEASE,
        &system.name,
        &chart(),
        &[
            "--take-ownership",
            "--set",
            &format!("watchNamespaces={{{}}}", models.name),
        ],
    );
    let deployments = Api::<Deployment>::namespaced(client.clone(), &system.name);
    let deployment = wait_for(
        &deployments,
        RELEASE,
        "have its (simulated) pod available",
        TIMEOUT,
        |d| d.status.as_ref().and_then(|s| s.available_replicas) == Some(1),
    )
    .await;
    let pod_spec = deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod template");
    let container = &pod_spec.containers[0];

    // 2. "Loaded": the name the image has on a node after `kind load
    // image-archive` (or minikube's, docker's, containerd's import) is the
    // one the chart's Deployment runs, and a loaded image is never pulled.
    // Both normalized, as the kubelet asks the runtime for the pod's image.
    assert_eq!(
        normalized(container.image.as_deref().expect("an image")),
        normalized(&image.tarball_tag),
        "the chart's default image is not what `make image` tags"
    );
    assert_eq!(
        image.tarball_tag,
        format!("model-operator:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"));

    // The pod, as the operator: the image's entrypoint with the container's
    // arguments and environment, and a token of the pod's ServiceAccount.
    let rootfs = image.unpack(&repo_root().join("target/install-test/rootfs"));
    let entrypoint: Vec<String> =
        serde_json::from_value(image.config["config"]["Entrypoint"].clone()).expect("Entrypoint");
    let program = rootfs.join(entrypoint[0].trim_start_matches('/'));
    let (args, health) = on_loopback(container.args.as_deref().unwrap_or_default());
    let account = pod_spec
        .service_account_name
        .clone()
        .expect("ServiceAccount");
    let kubeconfig = service_account_kubeconfig(&system.name, &account);
    wait_authorized(
        &format!("system:serviceaccount:{}:{account}", system.name),
        &["list", "modeldeployments.mlops.dev", "-n", &models.name],
    );
    let pods = Api::<Pod>::namespaced(client.clone(), &system.name);
    let pod = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=model-operator"))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .next()
        .and_then(|p| p.metadata.name)
        .expect("the simulated operator pod");
    let log_path = repo_root().join("target/e2e-logs/install.log");
    std::fs::create_dir_all(log_path.parent().unwrap()).unwrap();
    let log = std::fs::File::create(&log_path).expect("log file");
    let _operator = Running(
        Command::new(&program)
            .args(&entrypoint[1..])
            .args(&args)
            .env_clear()
            // The image's environment (SSL_CERT_FILE: the same path on this
            // Debian host), then the container's.
            .envs(image_env(&image.config))
            .env("KUBECONFIG", &kubeconfig)
            .env(
                "RUST_LOG",
                env_value(container, "RUST_LOG").expect("RUST_LOG"),
            )
            // What the downward API gives the pod.
            .env("POD_NAMESPACE", &system.name)
            .env("POD_NAME", &pod)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", program.display())),
    );
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();
    eventually("the image's operator answers /readyz", TIMEOUT, || async {
        match reqwest::get(format!("http://{health}/readyz")).await {
            Ok(r) if r.status().is_success() => Ok(()),
            _ => Err(logs()),
        }
    })
    .await;
    // It leads through the chart's Lease, in the release namespace.
    let leases = Api::<Lease>::namespaced(client.clone(), &system.name);
    wait_for(
        &leases,
        "model-operator",
        "be held by the pod",
        TIMEOUT,
        |l| {
            l.spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                .is_some_and(|h| h.starts_with(&format!("{pod}-")))
        },
    )
    .await;

    // The sample, as docs/install.md applies it, becomes Ready.
    let sample = repo_root().join(SAMPLE);
    let out = kubectl(&["apply", "-n", &models.name, "-f", &sample.to_string_lossy()]);
    assert!(
        out.status.success(),
        "kubectl apply {SAMPLE}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &models.name);
    let md = wait_for(&mds, "fraud-detector", "be Ready", TIMEOUT, ready).await;
    assert!(ready(&md), "{}", logs());
}
