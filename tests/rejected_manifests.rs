//! Bad input is refused at `kubectl apply`, by the CRD's schema and CEL
//! rules, with a message that says what to fix.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod support;

use kube::Api;
use kube::api::PostParams;
use model_operator::api::ModelDeployment;
use serde_json::{Value, json};
use support::*;

/// Every manifest here is refused by the API server (schema or CEL rule),
/// with a message that says what is wrong.
#[tokio::test]
async fn invalid_manifests_are_refused_with_clear_messages() {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "md-reject").await;
    let api = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let base = json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"}});
    let with = |patch: Value| {
        let mut spec = base.clone();
        json_merge(&mut spec, patch);
        spec
    };
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "empty version",
            "m",
            with(json!({"model": {"version": ""}})),
            "model.version must not be empty",
        ),
        (
            "version with spaces",
            "m",
            with(json!({"model": {"version": "2.1 beta"}})),
            "model.version must be letters, digits",
        ),
        (
            "version too long",
            "m",
            with(json!({"model": {"version": "1".repeat(64)}})),
            "spec.model.version: Too long",
        ),
        (
            "model name not a label",
            "m",
            with(json!({"model": {"name": "fraud/detector"}})),
            "model.name must be letters, digits",
        ),
        (
            "empty image",
            "m",
            with(json!({"server": {"image": ""}})),
            "server.image must not be empty",
        ),
        (
            "image with a space",
            "m",
            with(json!({"server": {"image": "srv 1"}})),
            "server.image must not contain spaces",
        ),
        (
            "negative replicas",
            "m",
            with(json!({"replicas": -1})),
            "spec.replicas in body should be greater than or equal to 0",
        ),
        (
            "min above max",
            "m",
            with(json!({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}})),
            "autoscaling.minReplicas must not be greater than autoscaling.maxReplicas",
        ),
        (
            "min below one",
            "m",
            with(json!({"autoscaling": {"minReplicas": 0, "maxReplicas": 2}})),
            "autoscaling.minReplicas 0 is refused for the built-in HPA",
        ),
        (
            "server port too high",
            "m",
            with(json!({"server": {"port": 70000}})),
            "spec.server.port in body should be less than or equal to 65535",
        ),
        (
            "service port zero",
            "m",
            with(json!({"service": {"port": 0}})),
            "spec.service.port in body should be greater than or equal to 1",
        ),
        (
            "cpu target above 100",
            "m",
            with(json!({"autoscaling": {"maxReplicas": 2, "targetCPUUtilizationPercentage": 150}})),
            "less than or equal to 100",
        ),
        (
            "cpu target zero",
            "m",
            with(json!({"autoscaling": {"maxReplicas": 2, "targetCPUUtilizationPercentage": 0}})),
            "greater than or equal to 1",
        ),
        (
            "unknown service type",
            "m",
            with(json!({"service": {"type": "ExternalName"}})),
            "Unsupported value: \"ExternalName\"",
        ),
        (
            "surge and unavailable both zero",
            "m",
            with(json!({"rollout": {"maxSurge": 0, "maxUnavailable": 0}})),
            "must not both be 0",
        ),
        (
            "bad surge",
            "m",
            with(json!({"rollout": {"maxSurge": "lots"}})),
            "rollout.maxSurge must be a non-negative number or a percentage",
        ),
        (
            "unavailable above 100%",
            "m",
            with(json!({"rollout": {"maxUnavailable": "150%"}})),
            "from 0% to 100%",
        ),
        (
            "reserved env var",
            "m",
            with(json!({"server": {"env": [{"name": "MODEL_VERSION", "value": "9"}]}})),
            "server.env may not set MODEL_NAME",
        ),
        (
            "operator label override",
            "m",
            with(json!({"podMetadata": {"labels": {"app.kubernetes.io/version": "x"}}})),
            "may not set the operator's own labels",
        ),
        (
            "name not a DNS label",
            "fraud.detector",
            base.clone(),
            "metadata.name must be at most 63 lowercase letters",
        ),
        (
            "missing version",
            "m",
            json!({"model": {}, "server": {"image": "srv:1"}}),
            "spec.model.version: Required value",
        ),
        (
            "bad quantity",
            "m",
            with(json!({"server": {"resources": {"limits": {"cpu": "lots"}}}})),
            "spec.server.resources.limits[cpu]: Invalid value: \"lots\": must be a quantity",
        ),
        (
            "zero progress deadline",
            "m",
            with(json!({"rollout": {"progressDeadlineSeconds": 0}})),
            "greater than or equal to 1",
        ),
        (
            "analysis interval that is not a duration",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"interval": "soon"}))}})),
            "analysis.interval must be a duration from 1s to 1h",
        ),
        (
            "analysis interval too short",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"interval": "100ms"}))}})),
            "analysis.interval must be a duration from 1s to 1h",
        ),
        (
            "bake time that is not a duration",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"bakeTime": "2 minutes"}))}})),
            "analysis.bakeTime must be a duration up to 24h",
        ),
        (
            "metric without any bound",
            "m",
            with(
                json!({"rollout": {"analysis": analysis(json!({"metrics": [{"name": "e", "query": "up"}]}))}}),
            ),
            "every analysis metric needs a bound",
        ),
        (
            "metric min above max",
            "m",
            with(
                json!({"rollout": {"analysis": analysis(json!({"metrics": [{"name": "e", "query": "up", "min": 2.0, "max": 1.0}]}))}}),
            ),
            "analysis metric min must not be greater than max",
        ),
        (
            "two metrics with one name",
            "m",
            with(
                json!({"rollout": {"analysis": analysis(json!({"metrics": [{"name": "e", "query": "up", "max": 1.0}, {"name": "e", "query": "down", "max": 1.0}]}))}}),
            ),
            "every metric needs a unique name",
        ),
        (
            "no metrics",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"metrics": []}))}})),
            "spec.rollout.analysis.metrics: Invalid value: 0",
        ),
        (
            "Prometheus address that is not a URL",
            "m",
            with(
                json!({"rollout": {"analysis": analysis(json!({"prometheus": {"address": "prometheus:9090"}}))}}),
            ),
            "analysis.prometheus.address must be an http:// or https:// URL",
        ),
        (
            "unknown onNoData",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"onNoData": "Ignore"}))}})),
            "spec.rollout.analysis.onNoData: Unsupported value: \"Ignore\"",
        ),
        (
            "negative relative bound",
            "m",
            with(
                json!({"rollout": {"analysis": analysis(json!({"metrics": [{"name": "e", "query": "up", "maxIncreasePercent": -5.0}]}))}}),
            ),
            "maxIncreasePercent must not be negative",
        ),
        (
            "comparison and query together",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"metrics": [
                {"name": "e", "query": "up", "comparison": proportions(json!({}))}]}))}})),
            "every analysis metric needs either a query (with bounds) or a comparison, not both",
        ),
        (
            "neither query nor comparison",
            "m",
            with(
                json!({"rollout": {"analysis": analysis(json!({"metrics": [{"name": "e", "max": 1.0}]}))}}),
            ),
            "every analysis metric needs either a query (with bounds) or a comparison, not both",
        ),
        (
            "comparison with a bound",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"metrics": [
                {"name": "e", "comparison": proportions(json!({})), "max": 0.05}]}))}})),
            "a comparison metric takes no min, max, maxIncreasePercent or maxDecreasePercent",
        ),
        (
            "TwoProportions without a margin",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"metrics": [
                {"name": "e", "comparison": {"test": "TwoProportions", "failures": "f", "total": "t"}}]}))}})),
            "comparison test TwoProportions needs failures, total and margin",
        ),
        (
            "TwoProportions with buckets",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"metrics": [
                {"name": "e", "comparison": proportions(json!({"buckets": "b"}))}]}))}})),
            "comparison test TwoProportions takes no buckets or worseWhen",
        ),
        (
            "MannWhitney without buckets",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"metrics": [
                {"name": "l", "comparison": {"test": "MannWhitney"}}]}))}})),
            "comparison test MannWhitney needs buckets",
        ),
        (
            "MannWhitney with a margin",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"metrics": [
                {"name": "l", "comparison": {"test": "MannWhitney", "buckets": "b", "margin": "10%"}}]}))}})),
            "comparison test MannWhitney takes no failures, total or margin",
        ),
        (
            "margin in words",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"metrics": [
                {"name": "e", "comparison": proportions(json!({"margin": "ten percent"}))}]}))}})),
            "comparison.margin must be a percentage of the stable revision's rate such as 10%",
        ),
        (
            "absolute margin of 1 or more",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"metrics": [
                {"name": "e", "comparison": proportions(json!({"margin": "1.5"}))}]}))}})),
            "comparison.margin must be a percentage of the stable revision's rate such as 10%",
        ),
        (
            "margin as a YAML number",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"metrics": [
                {"name": "e", "comparison": proportions(json!({"margin": 0.002}))}]}))}})),
            "comparison.margin in body must be of type string",
        ),
        (
            "confidence of 1",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"metrics": [
                {"name": "e", "comparison": proportions(json!({"confidence": 1.0}))}]}))}})),
            "comparison.confidence must be between 0.5 and 0.9999",
        ),
        (
            "minSamples too small",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"metrics": [
                {"name": "e", "comparison": proportions(json!({"minSamples": 0}))}]}))}})),
            "comparison.minSamples in body should be greater than or equal to 10",
        ),
        (
            "unknown test",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"metrics": [
                {"name": "e", "comparison": proportions(json!({"test": "TTest"}))}]}))}})),
            "Unsupported value: \"TTest\"",
        ),
        (
            "unknown direction",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"metrics": [
                {"name": "l", "comparison": {"test": "MannWhitney", "buckets": "b", "worseWhen": "Slower"}}]}))}})),
            "Unsupported value: \"Slower\"",
        ),
        (
            "window that is not a duration",
            "m",
            with(json!({"rollout": {"analysis": analysis(json!({"window": "forever"}))}})),
            "analysis.window must be a duration from 1s to 24h",
        ),
        (
            "alertmanager URL that is not a URL",
            "m",
            with(json!({"alerts": {"alertmanager": {"url": "alertmanager"}}})),
            "alerts.alertmanager.url must be an http:// or https:// URL",
        ),
        (
            "podMetadata label that would make a pod look like a canary's",
            "m",
            with(json!({"podMetadata": {"labels": {"mlops.dev/track": "canary"}}})),
            "may not set the operator's own labels",
        ),
        (
            "Canary strategy without steps",
            "m",
            with(json!({"rollout": {"strategy": "Canary"}})),
            "rollout.strategy Canary needs rollout.canary",
        ),
        (
            "a canary replacing pods in place",
            "m",
            with(
                json!({"rollout": {"strategy": "Canary", "podReplacement": "ReplaceInPlace",
                    "canary": {"steps": [{"setWeight": 50}]}}}),
            ),
            "rollout.podReplacement ReplaceInPlace needs strategy RollingUpdate",
        ),
        (
            "dynamic stable scale without a traffic router",
            "m",
            with(json!({"rollout": {"strategy": "Canary",
                "canary": {"steps": [{"setWeight": 50}], "dynamicStableScale": true}}})),
            "canary.dynamicStableScale needs trafficRouting",
        ),
        (
            "dynamic stable scale with autoscaling",
            "m",
            with(json!({
                "autoscaling": {"minReplicas": 1, "maxReplicas": 4},
                "rollout": {"strategy": "Canary", "canary": {
                    "steps": [{"setWeight": 50}], "dynamicStableScale": true,
                    "trafficRouting": {"gatewayAPI": {"httpRoute": "r"}}}}})),
            "dynamicStableScale cannot be used with spec.autoscaling",
        ),
        (
            "a warm rollback window with dynamic stable scale",
            "m",
            with(json!({"rollout": {"strategy": "Canary", "canary": {
                "steps": [{"setWeight": 50}], "dynamicStableScale": true,
                "warmRollbackWindow": "10m",
                "trafficRouting": {"gatewayAPI": {"httpRoute": "r"}}}}})),
            "canary.warmRollbackWindow cannot be used with dynamicStableScale",
        ),
        (
            "a warm rollback window with autoscaling",
            "m",
            with(json!({
                "autoscaling": {"minReplicas": 1, "maxReplicas": 4},
                "rollout": {"strategy": "Canary", "canary": {
                    "steps": [{"setWeight": 50}], "warmRollbackWindow": "10m"}}})),
            "warmRollbackWindow cannot be used with spec.autoscaling",
        ),
        (
            "a warm rollback window of two days",
            "m",
            with(json!({"rollout": {"strategy": "Canary", "canary": {
                "steps": [{"setWeight": 50}], "warmRollbackWindow": "48h"}}})),
            "canary.warmRollbackWindow must be a duration up to 24h",
        ),
        (
            "an unknown pod replacement",
            "m",
            with(json!({"rollout": {"podReplacement": "Recreate"}})),
            "spec.rollout.podReplacement: Unsupported value",
        ),
        (
            "canary with an empty step list",
            "m",
            with(json!({"rollout": {"strategy": "Canary", "canary": {"steps": []}}})),
            "spec.rollout.canary.steps: Invalid value",
        ),
        (
            "canary weight above 100",
            "m",
            with(
                json!({"rollout": {"strategy": "Canary", "canary": {"steps": [{"setWeight": 120}]}}}),
            ),
            "should be less than or equal to 100",
        ),
        (
            "canary weight below 0",
            "m",
            with(
                json!({"rollout": {"strategy": "Canary", "canary": {"steps": [{"setWeight": -5}]}}}),
            ),
            "should be greater than or equal to 0",
        ),
        (
            "canary step with both setWeight and pause",
            "m",
            with(
                json!({"rollout": {"strategy": "Canary", "canary": {"steps": [{"setWeight": 10, "pause": {}}]}}}),
            ),
            "every canary step is either setWeight or pause",
        ),
        (
            "canary step with neither",
            "m",
            with(json!({"rollout": {"strategy": "Canary", "canary": {"steps": [{}]}}})),
            "every canary step is either setWeight or pause",
        ),
        (
            "canary pause duration that is not a duration",
            "m",
            with(
                json!({"rollout": {"strategy": "Canary", "canary": {"steps": [{"pause": {"duration": "two minutes"}}]}}}),
            ),
            "canary pause.duration must be a duration up to 24h",
        ),
        (
            "canary pause longer than 24h",
            "m",
            with(
                json!({"rollout": {"strategy": "Canary", "canary": {"steps": [{"pause": {"duration": "25h"}}]}}}),
            ),
            "canary pause.duration must be a duration up to 24h",
        ),
        (
            "unknown strategy",
            "m",
            with(json!({"rollout": {"strategy": "BlueGreen"}})),
            "Unsupported value: \"BlueGreen\"",
        ),
        (
            "disruption budget with both minAvailable and maxUnavailable",
            "m",
            with(json!({"disruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}})),
            "disruptionBudget takes exactly one of minAvailable or maxUnavailable",
        ),
        (
            "disruption budget with neither",
            "m",
            with(json!({"disruptionBudget": {}})),
            "disruptionBudget takes exactly one of minAvailable or maxUnavailable",
        ),
        (
            "disruption budget minAvailable negative",
            "m",
            with(json!({"disruptionBudget": {"minAvailable": -1}})),
            "disruptionBudget.minAvailable must be a non-negative number",
        ),
        (
            "disruption budget maxUnavailable over 100%",
            "m",
            with(json!({"disruptionBudget": {"maxUnavailable": "150%"}})),
            "disruptionBudget.maxUnavailable must be a non-negative number (at most 2147483647) or a percentage from 0% to 100%",
        ),
        (
            "disruption budget minAvailable not a percentage",
            "m",
            with(json!({"disruptionBudget": {"minAvailable": "half"}})),
            "disruptionBudget.minAvailable must be a non-negative number",
        ),
        // Safe in a shared cluster (issue 11): numbers past int32, URLs
        // with credentials, a query or a fragment.
        (
            "replicas past int32",
            "m",
            with(json!({"replicas": 2_147_483_648_i64})),
            "spec.replicas in body should be less than or equal to 2147483647",
        ),
        (
            "maxReplicas past int32",
            "m",
            with(json!({"autoscaling": {"minReplicas": 1, "maxReplicas": 2_147_483_648_i64}})),
            "spec.autoscaling.maxReplicas in body should be less than or equal to 2147483647",
        ),
        (
            "progressDeadlineSeconds past int32",
            "m",
            with(json!({"rollout": {"progressDeadlineSeconds": 2_147_483_648_i64}})),
            "spec.rollout.progressDeadlineSeconds in body should be less than or equal to 2147483647",
        ),
        (
            "maxSurge past int32",
            "m",
            with(json!({"rollout": {"maxSurge": 2_147_483_648_i64}})),
            "rollout.maxSurge must be a non-negative number or a percentage",
        ),
        (
            "maxSurge 00% with maxUnavailable 0",
            "m",
            with(json!({"rollout": {"maxSurge": "00%", "maxUnavailable": 0}})),
            "rollout.maxSurge and rollout.maxUnavailable must not both be 0",
        ),
        (
            "Prometheus address with credentials",
            "m",
            with(
                json!({"rollout": {"analysis": analysis(json!({"prometheus": {"address": "http://admin:pw@prometheus:9090"}}))}}),
            ),
            "analysis.prometheus.address must be an http:// or https:// URL without credentials, query or fragment",
        ),
        (
            "Prometheus address with a query",
            "m",
            with(
                json!({"rollout": {"analysis": analysis(json!({"prometheus": {"address": "http://prometheus:9090/-/quit?x="}}))}}),
            ),
            "analysis.prometheus.address must be an http:// or https:// URL without credentials, query or fragment",
        ),
        (
            "Prometheus address with a fragment",
            "m",
            with(
                json!({"rollout": {"analysis": analysis(json!({"prometheus": {"address": "http://prometheus:9090/api/v1/admin/tsdb/delete_series#"}}))}}),
            ),
            "analysis.prometheus.address must be an http:// or https:// URL without credentials, query or fragment",
        ),
        (
            "alertmanager URL with credentials",
            "m",
            with(json!({"alerts": {"alertmanager": {"url": "https://user@alertmanager:9093"}}})),
            "alerts.alertmanager.url must be an http:// or https:// URL without credentials, query or fragment",
        ),
        (
            "alertmanager URL with a query",
            "m",
            with(json!({"alerts": {"alertmanager": {"url": "http://alertmanager:9093/?a=b"}}})),
            "alerts.alertmanager.url must be an http:// or https:// URL without credentials, query or fragment",
        ),
    ];
    assert!(cases.len() >= 12);
    let mut failures = refusals(&api, &ns.name, &cases).await;
    // And through kubectl apply, the way users meet it.
    let body = json!({"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "m"}, "spec": with(json!({"replicas": -3}))});
    failures.extend(check_with_kubectl(
        &ns.name,
        "kubectl apply",
        &body,
        "spec.replicas in body should be greater than or equal to 0",
    ));
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The parts of the pod the operator owns are refused, naming the field,
/// never silently overwritten (issue 25): the model container's name and
/// `MODEL_*` variables, the `http` port, the `mlops-*` volumes, the shm
/// mount, the operator's labels; and a pod that could not run (a mount of
/// no volume, a port taken twice, storage without a usable URI).
#[tokio::test]
async fn operator_owned_pod_fields_are_refused_naming_the_field() {
    let client = client().await;
    ensure_crd(&client).await;
    let ns = TestNamespace::new(&client, "md-reject-pod").await;
    let api = Api::<ModelDeployment>::namespaced(client.clone(), &ns.name);
    let base = json!({"model": {"version": "1.0"}, "server": {"image": "srv:1"}});
    let with = |patch: Value| {
        let mut spec = base.clone();
        json_merge(&mut spec, patch);
        spec
    };
    let server = |patch: Value| with(json!({ "server": patch }));
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "init container named as the model container",
            "m",
            server(json!({"initContainers": [{"name": "model-server", "image": "x:1"}]})),
            "server.initContainers may not use the names 'model-server' or 'mlops-model-fetch'",
        ),
        (
            "init container named as the download",
            "m",
            server(json!({"initContainers": [{"name": "mlops-model-fetch", "image": "x:1"}]})),
            "server.initContainers may not use the names",
        ),
        (
            "MODEL_PATH in env",
            "m",
            server(json!({"env": [{"name": "MODEL_PATH", "value": "/x"}]})),
            "server.env may not set MODEL_NAME, MODEL_VERSION, MODEL_URI or MODEL_PATH",
        ),
        (
            "a port named http",
            "m",
            server(json!({"ports": [{"name": "http", "containerPort": 9000}]})),
            "server.ports may not use the name 'http' or server.port's number",
        ),
        (
            "a port on server.port's number",
            "m",
            server(json!({"port": 8000, "ports": [{"name": "metrics", "containerPort": 8000}]})),
            "server.ports may not use the name 'http' or server.port's number",
        ),
        (
            "two ports of one number",
            "m",
            server(json!({"ports": [{"name": "grpc", "containerPort": 9000},
                                    {"name": "metrics", "containerPort": 9000}]})),
            "server.ports must not repeat a port number",
        ),
        (
            "two mounts at one path",
            "m",
            server(
                json!({"volumes": [{"name": "a", "emptyDir": {}}, {"name": "b", "emptyDir": {}}],
                          "volumeMounts": [{"name": "a", "mountPath": "/x"},
                                           {"name": "b", "mountPath": "/x"}]}),
            ),
            "server.volumeMounts must not mount two volumes at one path",
        ),
        (
            "an env variable twice",
            "m",
            server(json!({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]})),
            "server.env must not set a variable twice",
        ),
        (
            "a port on service.port's number",
            "m",
            with(json!({"service": {"port": 9000},
                        "server": {"ports": [{"name": "grpc", "containerPort": 9000}]}})),
            "spec.server.ports may not use service.port's number",
        ),
        (
            "a port name that is not a name",
            "m",
            server(json!({"ports": [{"name": "Metrics_1", "containerPort": 9000}]})),
            "a port name is at most 15 lowercase letters",
        ),
        (
            "two ports of one name",
            "m",
            server(json!({"ports": [{"name": "grpc", "containerPort": 9000},
                                    {"name": "grpc", "containerPort": 9001}]})),
            "Duplicate value",
        ),
        (
            "a volume named mlops-*",
            "m",
            server(json!({"volumes": [{"name": "mlops-model", "emptyDir": {}}]})),
            "server.volumes may not use names starting with 'mlops-'",
        ),
        (
            "a volume with two sources",
            "m",
            server(json!({"volumes": [{"name": "v", "emptyDir": {},
                                       "persistentVolumeClaim": {"claimName": "c"}}]})),
            "takes one source: configMap, csi",
        ),
        (
            "a mount of no volume",
            "m",
            server(json!({"volumeMounts": [{"name": "weights", "mountPath": "/w"}]})),
            "server.volumeMounts must name a volume of server.volumes",
        ),
        (
            "an init container's mount of no volume",
            "m",
            server(json!({"initContainers": [{"name": "i", "image": "x:1",
                "volumeMounts": [{"name": "weights", "mountPath": "/w"}]}]})),
            "server.initContainers[].volumeMounts must name a volume of server.volumes",
        ),
        (
            "a mount over the operator's shm",
            "m",
            server(
                json!({"shmSize": "1Gi", "volumes": [{"name": "s", "emptyDir": {}}],
                          "volumeMounts": [{"name": "s", "mountPath": "/dev/shm"}]}),
            ),
            "server.volumeMounts may not mount /dev/shm while server.shmSize is set",
        ),
        (
            "an shm size that is not a quantity",
            "m",
            server(json!({"shmSize": "lots"})),
            "must be a quantity such as 500m, 2Gi or 1",
        ),
        (
            "the operator's track label",
            "m",
            with(json!({"podMetadata": {"labels": {"mlops.dev/track": "canary"}}})),
            "podMetadata.labels may not set the operator's own labels",
        ),
        (
            "too many init containers",
            "m",
            server(json!({"initContainers": (0..4)
                .map(|i| json!({"name": format!("i{i}"), "image": "x:1"}))
                .collect::<Vec<_>>()})),
            "spec.server.initContainers: Too many",
        ),
        (
            "storage without a URI",
            "m",
            with(json!({"model": {"storage": {}}})),
            "model.storage needs model.uri with one of the schemes",
        ),
        (
            "storage of an unknown scheme",
            "m",
            with(json!({"model": {"uri": "ftp://host/m", "storage": {}}})),
            "model.storage needs model.uri with one of the schemes",
        ),
        (
            "a pvc URI with a cache",
            "m",
            with(json!({"model": {"uri": "pvc://weights/m",
                                  "storage": {"cacheClaimName": "c"}}})),
            "model.uri pvc:// is mounted, not downloaded",
        ),
        (
            "a size limit and a cache claim",
            "m",
            with(json!({"model": {"uri": "s3://b/m",
                                  "storage": {"cacheClaimName": "c", "sizeLimit": "1Gi"}}})),
            "model.storage takes sizeLimit (an emptyDir) or cacheClaimName (a PVC), not both",
        ),
        (
            "a mount path of /",
            "m",
            with(json!({"model": {"uri": "s3://b/m", "storage": {"mountPath": "/"}}})),
            "model.storage.mountPath must be an absolute directory",
        ),
    ];
    let failures = refusals(&api, &ns.name, &cases).await;
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// What is wrong with the refusals of `cases`: each must be a 422 whose
/// message contains the expected words.
async fn refusals(
    api: &Api<ModelDeployment>,
    ns: &str,
    cases: &[(&str, &str, Value, &str)],
) -> Vec<String> {
    let mut failures = Vec::new();
    for (what, name, spec, expected) in cases {
        let body = json!({"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name}, "spec": spec});
        let md: ModelDeployment = match serde_json::from_value(body.clone()) {
            Ok(md) => md,
            Err(_) => {
                // Not even our own type can hold it (e.g. a missing field):
                // send it as raw JSON through kubectl instead.
                failures.extend(check_with_kubectl(ns, what, &body, expected));
                continue;
            }
        };
        match api.create(&PostParams::default(), &md).await {
            Ok(_) => failures.push(format!("{what}: was accepted")),
            Err(kube::Error::Api(status))
                if status.code == 422 && status.message.contains(expected) => {}
            Err(e) => failures.push(format!(
                "{what}: expected a 422 mentioning {expected:?}, got {e}"
            )),
        }
    }
    failures
}

fn check_with_kubectl(ns: &str, what: &str, body: &Value, expected: &str) -> Option<String> {
    let dir = repo_root().join("target/e2e-logs");
    std::fs::create_dir_all(&dir).ok()?;
    let file = dir.join(format!("{ns}-manifest.json"));
    std::fs::write(&file, body.to_string()).ok()?;
    let out = kubectl(&["-n", ns, "apply", "-f", file.to_str()?]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Some(format!("{what}: kubectl apply was accepted"))
    } else if !stderr.contains(expected) {
        Some(format!(
            "{what}: kubectl said {stderr:?}, expected {expected:?}"
        ))
    } else {
        None
    }
}

/// A valid TwoProportions comparison with `patch` merged in.
fn proportions(patch: Value) -> Value {
    let mut c = json!({"test": "TwoProportions", "failures": "f[{{window}}]", "total": "t[{{window}}]", "margin": "10%"});
    json_merge(&mut c, patch);
    c
}

/// A valid analysis with `patch` merged in.
fn analysis(patch: Value) -> Value {
    let mut a = json!({
        "prometheus": {"address": "http://127.0.0.1:9090"},
        "metrics": [{"name": "error-rate", "query": "up", "max": 0.05}],
    });
    json_merge(&mut a, patch);
    a
}

fn json_merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                json_merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}
