//! How far a Deployment has got, judged the way `kubectl rollout status` does:
//! from its generation, observedGeneration, replica counts and conditions.

use k8s_openapi::api::apps::v1::Deployment;

/// A Deployment's rollout, as its controller last reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The Deployment controller has not yet seen the latest template.
    NotObserved,
    /// New pods are being rolled out.
    Rolling { updated: i32, desired: i32 },
    /// Old pods are still terminating or new ones not yet available.
    Finishing {
        available: i32,
        desired: i32,
        total: i32,
    },
    /// Every pod runs the latest template and is available.
    Complete,
    /// Scaled to zero: no pod runs, so nothing can be judged. A new
    /// template waits here until the model is scaled up.
    ScaledToZero,
    /// The Deployment's own progress deadline passed.
    DeadlineExceeded { message: String },
}

/// Counts a Deployment reports, zero when absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub desired: i32,
    pub replicas: i32,
    pub ready: i32,
    pub updated: i32,
    pub available: i32,
}

impl Counts {
    pub fn of(deployment: &Deployment) -> Self {
        let status = deployment.status.clone().unwrap_or_default();
        Self {
            desired: deployment
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(1),
            replicas: status.replicas.unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
        }
    }
}

pub fn progress(deployment: &Deployment) -> Progress {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let status = deployment.status.clone().unwrap_or_default();
    if status.observed_generation.unwrap_or(0) < generation {
        return Progress::NotObserved;
    }
    let deadline = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if let Some(c) = deadline {
        return Progress::DeadlineExceeded {
            message: c.message.clone().unwrap_or_default(),
        };
    }
    let n = Counts::of(deployment);
    if n.desired == 0 {
        // Terminating pods of a scale-down do not count: they serve no
        // longer.
        Progress::ScaledToZero
    } else if n.updated < n.desired {
        Progress::Rolling {
            updated: n.updated,
            desired: n.desired,
        }
    } else if n.replicas > n.updated || n.available < n.updated {
        Progress::Finishing {
            available: n.available,
            desired: n.desired,
            total: n.replicas,
        }
    } else {
        Progress::Complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "m", "generation": generation},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn table() {
        let deadline = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"m-1\" has timed out progressing."}]);
        let cases = [
            (
                "controller behind",
                deployment(3, json!({"observedGeneration": 2})),
                Progress::NotObserved,
            ),
            (
                "no status yet",
                deployment(1, json!({})),
                Progress::NotObserved,
            ),
            (
                "rolling",
                deployment(
                    2,
                    json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2}),
                ),
                Progress::Rolling {
                    updated: 1,
                    desired: 2,
                },
            ),
            (
                "old pods still there",
                deployment(
                    2,
                    json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 3}),
                ),
                Progress::Finishing {
                    available: 3,
                    desired: 2,
                    total: 3,
                },
            ),
            (
                "new pods not available",
                deployment(
                    2,
                    json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}),
                ),
                Progress::Finishing {
                    available: 1,
                    desired: 2,
                    total: 2,
                },
            ),
            (
                "complete",
                deployment(
                    2,
                    json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
                ),
                Progress::Complete,
            ),
            (
                "deadline wins over counts",
                deployment(
                    2,
                    json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "conditions": deadline}),
                ),
                Progress::DeadlineExceeded {
                    message: "ReplicaSet \"m-1\" has timed out progressing.".into(),
                },
            ),
        ];
        for (name, d, want) in cases {
            assert_eq!(progress(&d), want, "{name}");
        }
        // Scaled to zero: nothing to judge, whether or not old pods are
        // still terminating or the template is new.
        for status in [
            json!({"observedGeneration": 2}),
            json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 0, "availableReplicas": 2}),
        ] {
            let mut d = deployment(2, status);
            d.spec.as_mut().unwrap().replicas = Some(0);
            assert_eq!(progress(&d), Progress::ScaledToZero, "{d:?}");
        }
    }
}
