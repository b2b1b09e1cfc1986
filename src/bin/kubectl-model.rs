//! `kubectl model`: what people do by hand during an incident.
//! Uses the kubeconfig and context the way kubectl does.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use model_operator::api::{AnalysisStatus, FiringAlert, ModelDeployment};
use model_operator::resources::labels::RETRY_ANNOTATION;
use serde_json::json;

#[path = "kubectl_model/terminal.rs"]
#[macro_use]
mod terminal;

#[path = "kubectl_model/canary_commands.rs"]
mod canary_commands;

#[path = "kubectl_model/spec_commands.rs"]
mod spec_commands;

/// Inspect and steer ModelDeployments.
#[derive(Parser)]
#[command(name = "kubectl-model", version = model_operator::VERSION, about)]
struct Cli {
    /// Namespace (default: the context's, else "default").
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// Kubeconfig context to use (default: the current one).
    #[arg(long, global = true)]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Phase, revisions, replicas and conditions.
    Status {
        name: String,
        /// Print again whenever the status changes (Ctrl-C to stop).
        #[arg(short, long)]
        watch: bool,
    },
    /// Every remembered revision and how it ended.
    History { name: String },
    /// Set the spec back to a revision's model and server.
    Rollback {
        name: String,
        /// Revision to go back to (default: the stable one, or the newest
        /// earlier revision that was stable).
        #[arg(long)]
        to_revision: Option<i64>,
        /// Print the change as a YAML merge patch of the spec, for Git,
        /// instead of writing it to the cluster.
        #[arg(long)]
        print_patch: bool,
    },
    /// Try a failed revision again.
    Retry { name: String },
    /// End the canary's current step (a pause without duration waits for
    /// this); with --full, skip every remaining step.
    Promote {
        name: String,
        /// Skip every remaining step: the canary is promoted once its
        /// analysis passes.
        #[arg(long)]
        full: bool,
    },
    /// Roll the canary back now (recorded as RolledBack, reason Aborted).
    Abort { name: String },
    /// Hold the running revision; spec changes wait.
    Pause {
        name: String,
        /// Print the change as a YAML merge patch of the spec, for Git,
        /// instead of writing it to the cluster.
        #[arg(long)]
        print_patch: bool,
    },
    /// Let spec changes roll out again.
    Resume {
        name: String,
        /// Print the change as a YAML merge patch of the spec, for Git,
        /// instead of writing it to the cluster.
        #[arg(long)]
        print_patch: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            warnln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..KubeConfigOptions::default()
    };
    let kubeconfig = Kubeconfig::read().map_err(|e| format!("no kubeconfig: {e}"))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| format!("kubeconfig is not usable: {e}"))?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| format!("cannot build a client: {e}"))?;
    let mds = Api::<ModelDeployment>::namespaced(client.clone(), &namespace);
    let explain = |e: kube::Error, name: &str| explain(e, name, &namespace);

    match cli.command {
        Command::Status { name, watch } => {
            let mut last = None;
            loop {
                let md = mds.get(&name).await.map_err(|e| explain(e, &name))?;
                if last != md.metadata.resource_version {
                    say!("{}", status_table(&md));
                    last = md.metadata.resource_version.clone();
                }
                if !watch {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        Command::History { name } => {
            let md = mds.get(&name).await.map_err(|e| explain(e, &name))?;
            say!("{}", history_table(&md));
            Ok(())
        }
        Command::Rollback {
            name,
            to_revision,
            print_patch,
        } => spec_commands::rollback(&client, &namespace, &name, to_revision, print_patch).await,
        Command::Retry { name } => {
            let token = format!(
                "{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            );
            let patch = json!({"metadata": {"annotations": {RETRY_ANNOTATION: token}}});
            mds.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(|e| explain(e, &name))?;
            sayln!("{name}: retry requested ({RETRY_ANNOTATION}={token}).");
            Ok(())
        }
        Command::Promote { name, full } => {
            canary_commands::promote(&mds, &name, full, explain).await
        }
        Command::Abort { name } => canary_commands::abort(&mds, &name, explain).await,
        Command::Pause { name, print_patch } => {
            spec_commands::set_paused(&mds, &name, true, print_patch, explain).await
        }
        Command::Resume { name, print_patch } => {
            spec_commands::set_paused(&mds, &name, false, print_patch, explain).await
        }
    }
}

fn explain(e: kube::Error, name: &str, namespace: &str) -> String {
    match e {
        kube::Error::Api(s) if s.code == 404 => {
            format!("{name} not found in namespace {namespace}")
        }
        // The API server's message names the user, verb, resource and
        // namespace; say what to do about it.
        kube::Error::Api(s) if s.code == 403 => format!(
            "forbidden: {}\nYour kubeconfig's user lacks this permission: \
             `kubectl auth can-i --list -n {namespace}` shows what it may do; \
             ask a cluster admin for a Role that grants the rest.",
            s.message
        ),
        kube::Error::Api(s) if s.code == 401 => format!(
            "unauthorized: the API server did not accept the kubeconfig's credentials \
             (expired token?): {}",
            s.message
        ),
        kube::Error::Api(s) => format!("the API server refused: {}", s.message),
        other => format!("cannot reach the cluster: {other}"),
    }
}

fn status_table(md: &ModelDeployment) -> String {
    let name = md.metadata.name.clone().unwrap_or_default();
    let Some(s) = md.status.as_ref() else {
        return format!("{name}: no status yet (is the operator running?)\n");
    };
    let opt = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    let mut out = String::new();
    let row = |out: &mut String, k: &str, v: String| out.push_str(&format!("{k:<12} {v}\n"));
    row(&mut out, "NAME", name);
    row(
        &mut out,
        "PHASE",
        s.phase.map(|p| p.to_string()).unwrap_or_default(),
    );
    row(
        &mut out,
        "MODEL",
        format!(
            "{} {} (requested)",
            s.model.clone().unwrap_or_default(),
            md.spec.model.version
        ),
    );
    row(
        &mut out,
        "READY",
        s.ready_summary.clone().unwrap_or_default(),
    );
    row(
        &mut out,
        "REPLICAS",
        format!(
            "{} total, {} updated, {} available",
            s.replicas, s.updated_replicas, s.available_replicas
        ),
    );
    row(
        &mut out,
        "REVISIONS",
        format!(
            "running {}, stable {}, requested {}",
            opt(s.current_revision),
            opt(s.stable_revision),
            opt(s.update_revision)
        ),
    );
    if let Some(canary) = &s.canary {
        row(&mut out, "CANARY", canary.summary.clone());
    }
    if let Some(u) = &s.unschedulable {
        let since = u
            .since
            .as_ref()
            .map(|t| format!(" (stuck since {})", t.0))
            .unwrap_or_default();
        row(&mut out, "SCHEDULING", format!("{}{since}", u.message));
    }
    row(&mut out, "URL", s.url.clone().unwrap_or_default());
    let generation = md.metadata.generation.unwrap_or(0);
    if s.observed_generation.unwrap_or(0) < generation {
        row(
            &mut out,
            "NOTE",
            format!(
                "status describes generation {} of {generation}",
                opt(s.observed_generation)
            ),
        );
    }
    if let Some(canary) = &s.canary {
        out.push_str(&canary_commands::step_plan(md, canary));
    }
    out.push_str(&format!(
        "\n{:<12} {:<7} {:<24} MESSAGE\n",
        "CONDITION", "STATUS", "REASON"
    ));
    for c in &s.conditions {
        out.push_str(&format!(
            "{:<12} {:<7} {:<24} {}\n",
            c.type_, c.status, c.reason, c.message
        ));
    }
    if let Some(a) = &s.analysis {
        out.push_str(&analysis_table(a));
    }
    if !s.alerts.is_empty() {
        out.push_str(&alerts_table(&s.alerts));
    }
    out
}

/// The alerts firing now.
fn alerts_table(alerts: &[FiringAlert]) -> String {
    let mut out = format!(
        "\n{:<26} {:<9} {:<9} {:<14} SINCE\n",
        "ALERT", "SEVERITY", "REVISION", "METRIC"
    );
    for a in alerts {
        out.push_str(&format!(
            "{:<26} {:<9} {:<9} {:<14} {}\n",
            a.alertname,
            a.severity,
            a.revision,
            if a.metric.is_empty() { "-" } else { &a.metric },
            a.since
                .as_ref()
                .map_or("-".to_string(), |t| t.0.to_string())
        ));
    }
    out
}

/// The latest check of every metric: value, baseline, bound and verdict.
fn analysis_table(a: &AnalysisStatus) -> String {
    let num = |v: Option<f64>| v.map_or("-".to_string(), model_operator::analysis::verdict::num);
    let mut out = format!(
        "\nANALYSIS     revision {}: {} ({})\n",
        a.revision, a.phase, a.message
    );
    out.push_str(&format!(
        "{:<16} {:<13} {:<10} {:<10} {:<40} {:<21} MESSAGE\n",
        "METRIC", "VERDICT", "VALUE", "BASELINE", "BOUND", "CHECKED"
    ));
    for m in &a.metrics {
        out.push_str(&format!(
            "{:<16} {:<13} {:<10} {:<10} {:<40} {:<21} {}\n",
            m.name,
            m.verdict.to_string(),
            num(m.value),
            num(m.baseline),
            m.bound,
            m.checked_at
                .as_ref()
                .map_or("-".to_string(), |t| t.0.to_string()),
            m.message
        ));
        if let Some(e) = &m.evidence {
            out.push_str(&format!(
                "{:<16} {}\n",
                "",
                model_operator::analysis::comparison::summary(e)
            ));
        }
    }
    out
}

fn history_table(md: &ModelDeployment) -> String {
    let status = md.status.clone().unwrap_or_default();
    let time = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.as_ref().map_or("-".to_string(), |t| t.0.to_string())
    };
    let mut out = format!(
        "{:<9} {:<14} {:<30} {:<11} {:<21} {:<21} {:<24} MESSAGE\n",
        "REVISION", "MODEL", "IMAGE", "OUTCOME", "CREATED", "FINISHED", "REASON"
    );
    for e in &status.history {
        let mut revision = e.revision.to_string();
        if status.current_revision == Some(e.revision) {
            revision.push('*');
        }
        out.push_str(&format!(
            "{:<9} {:<14} {:<30} {:<11} {:<21} {:<21} {:<24} {}\n",
            revision,
            e.model_version,
            e.image,
            format!("{:?}", e.outcome),
            time(&e.created_at),
            time(&e.finished_at),
            e.reason,
            e.message
        ));
    }
    out.push_str("(* running now)\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_shows_the_last_analysis_and_firing_alerts() {
        let md: ModelDeployment = serde_json::from_value(json!({
            "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "fraud", "generation": 2},
            "spec": {"model": {"version": "2.0"}, "server": {"image": "srv:1"}},
            "status": {
                "observedGeneration": 2, "phase": "Paused",
                "analysis": {"revision": 2, "phase": "Inconclusive", "message": "stopped",
                    "metrics": [{"name": "error-rate", "verdict": "Inconclusive", "value": 0.012, "baseline": 0.01,
                        "bound": "<= 0.05", "message": "no data: the query returned no series", "passed": 0, "failed": 0, "inconclusive": 3},
                        {"name": "latency", "verdict": "Fail", "value": 0.177, "baseline": 0.138, "message": "latency median 0.177 (1,000 samples) vs 0.138 (2,000): shifted higher",
                         "evidence": {"test": "MannWhitney", "finding": "Worse", "samples": 1000, "stableSamples": 2000, "minSamples": 500,
                            "difference": 0.15, "lowerBound": 0.11, "upperBound": 0.19, "pValue": 1e-9, "confidence": 0.95}}]},
                "alerts": [{"alertname": "ModelAnalysisInconclusive", "severity": "warning", "revision": 2, "modelVersion": "2.0", "metric": "error-rate"}],
            },
        }))
        .unwrap();
        let table = status_table(&md);
        for part in [
            "ANALYSIS     revision 2: Inconclusive (stopped)",
            "latency          Fail",
            "MannWhitney: Worse; samples 1,000 vs 2,000 (min 500); Cliff's delta +0.15, 95% bounds [+0.11, +0.19]; p < 0.0001",
            "error-rate       Inconclusive  0.012      0.01       <= 0.05",
            "no data: the query returned no series",
            "ModelAnalysisInconclusive  warning   2         error-rate",
        ] {
            assert!(table.contains(part), "missing {part:?} in\n{table}");
        }
    }
}
