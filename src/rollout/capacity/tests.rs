use super::*;
use serde_json::json;

const GPU_SHORT: &str = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu. preemption: 0/4 nodes are available: 4 No preemption victims found for incoming pod.";

#[test]
fn scheduler_messages_are_classified() {
    let insufficient = |r: &[&str]| Cause::Insufficient(r.iter().map(|s| s.to_string()).collect());
    // (what, scheduler message, expected cause and nodes)
    type Case = (&'static str, &'static str, Option<(Cause, Option<u32>)>);
    let cases: Vec<Case> = vec![
        (
            "gpu short",
            GPU_SHORT,
            Some((insufficient(&["nvidia.com/gpu"]), Some(4))),
        ),
        (
            "short on the one node that matches",
            "0/5 nodes are available: 1 Insufficient nvidia.com/gpu, 4 node(s) didn't match Pod's node affinity/selector. preemption: 0/5 nodes are available: 1 No preemption victims found for incoming pod, 4 Preemption is not helpful for scheduling.",
            Some((insufficient(&["nvidia.com/gpu"]), Some(1))),
        ),
        (
            "several resources, sorted and once each",
            "0/4 nodes are available: 2 Insufficient memory, 1 Insufficient cpu, 1 Insufficient memory, 1 node(s) had untolerated taint {a: b}.",
            Some((insufficient(&["cpu", "memory"]), Some(3))),
        ),
        (
            "too many pods is a resource",
            "0/1 nodes are available: 1 Too many pods.",
            Some((insufficient(&["pods"]), Some(1))),
        ),
        (
            "taints only",
            "0/3 nodes are available: 3 node(s) had untolerated taint {gpu: true}. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
            Some((Cause::NoMatchingNode, Some(3))),
        ),
        (
            "selector and cordon",
            "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) were unschedulable.",
            Some((Cause::NoMatchingNode, Some(2))),
        ),
        (
            "a volume still binding may bind: not judged",
            "0/4 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling.",
            None,
        ),
        (
            "one unknown reason among known ones: not judged",
            "0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) had volume node affinity conflict.",
            None,
        ),
        ("not the scheduler's shape", "something else entirely", None),
        (
            "a resource name that is no name: not judged, never repeated",
            "0/1 nodes are available: 1 Insufficient <b>gpu</b>.",
            None,
        ),
    ];
    for (what, message, want) in cases {
        assert_eq!(classify(message), want, "{what}");
    }
}

#[test]
fn resources_are_bounded() {
    let reasons: Vec<String> = (0..50)
        .map(|i| format!("1 Insufficient example.com/r{i:02}"))
        .collect();
    let message = format!("0/50 nodes are available: {}.", reasons.join(", "));
    let Some((Cause::Insufficient(resources), _)) = classify(&message) else {
        panic!("classified");
    };
    assert_eq!(resources.len(), RESOURCES_KEPT);
}

fn pod(revision: &str, unschedulable: Option<(&str, &str)>, terminating: bool) -> WatchedPod {
    let mut p = json!({"metadata": {"name": "p", "labels": {"mlops.dev/revision": revision}}, "status": {}});
    if let Some((message, since)) = unschedulable {
        p["status"]["conditions"] = json!([
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastTransitionTime": since}
        ]);
    }
    if terminating {
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    let mut pod: WatchedPod = serde_json::from_value(p).unwrap();
    crate::rollout::pod::keep_read_fields(&mut pod);
    pod
}

fn counts(replicas: i32, available: i32) -> Counts {
    Counts {
        desired: 2,
        replicas,
        ready: available,
        updated: 1,
        available,
    }
}

const T0: &str = "2026-12-07T00:00:00Z";

#[test]
fn a_rollout_is_stuck_only_when_nothing_else_can_move() {
    let pending = || pod("2", Some((GPU_SHORT, T0)), false);
    // (what, pods, the Deployment's counts, expected (pods, of, stuck))
    type Case = (
        &'static str,
        Vec<WatchedPod>,
        Counts,
        Option<(i32, i32, bool)>,
    );
    let cases: Vec<Case> = vec![
        (
            "surge deadlock: two old available, the new one has no GPU",
            vec![pod("1", None, false), pod("1", None, false), pending()],
            counts(3, 2),
            Some((1, 1, true)),
        ),
        (
            "first rollout on a cluster without GPUs",
            vec![pending(), pending()],
            counts(2, 0),
            Some((2, 2, true)),
        ),
        (
            "an old pod still terminating may free the GPU",
            vec![pod("1", None, true), pod("1", None, false), pending()],
            counts(2, 1),
            Some((1, 1, false)),
        ),
        (
            "a new pod still starting may let an old one go",
            vec![pod("1", None, false), pod("2", None, false), pending()],
            counts(3, 1),
            Some((1, 2, false)),
        ),
        (
            "every pod placed",
            vec![pod("2", None, false), pod("2", None, false)],
            counts(2, 2),
            None,
        ),
        (
            "another revision's unschedulable pods are not this one's",
            vec![
                pod("1", Some((GPU_SHORT, T0)), false),
                pod("2", None, false),
            ],
            counts(2, 1),
            None,
        ),
        (
            "a reason waiting may fix",
            vec![pod(
                "2",
                Some((
                    "0/4 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
                    T0,
                )),
                false,
            )],
            counts(1, 0),
            None,
        ),
    ];
    for (what, pods, counts, want) in cases {
        let got = shortage(&pods, 2, counts);
        assert_eq!(
            got.as_ref().map(|s| (s.pods, s.of, s.stuck)),
            want,
            "{what}"
        );
    }
}

fn time(s: &str) -> Time {
    Time(s.parse().unwrap())
}

#[test]
fn the_grace_counts_once_from_when_it_was_first_seen_stuck() {
    let pods = [
        pod("1", None, false),
        pod("1", None, false),
        pod("2", Some((GPU_SHORT, T0)), false),
    ];
    let stuck = shortage(&pods, 2, counts(3, 2)).unwrap();
    let grace = Duration::from_secs(10);

    // First seen stuck now: the grace starts now.
    let first = stuck.status(None, &time("2026-12-07T00:00:03Z"));
    assert_eq!(first.since, Some(time("2026-12-07T00:00:03Z")));
    assert_eq!(first.reason, "InsufficientCapacity");
    assert_eq!(first.resources, ["nvidia.com/gpu"]);
    assert_eq!(
        first.message,
        "1/1 pods of revision 2 cannot be scheduled: not enough nvidia.com/gpu on any of the 4 nodes that match them"
    );

    // Later passes keep the stored start.
    let later = stuck.status(Some(&first), &time("2026-12-07T00:00:09Z"));
    assert_eq!(later.since, first.since);
    assert_eq!(
        stuck.failure(later.since.as_ref(), grace, &time("2026-12-07T00:00:12Z")),
        None
    );
    let failure = stuck
        .failure(later.since.as_ref(), grace, &time("2026-12-07T00:00:13Z"))
        .unwrap();
    assert_eq!(failure.reason, "InsufficientCapacity");
    assert_eq!(
        failure.message,
        "1/1 new pods unschedulable for 10s with nothing else to roll out: not enough nvidia.com/gpu on any of the 4 nodes that match them"
    );

    // Another revision's start is not this one's.
    let other = UnschedulableStatus {
        revision: 7,
        ..first.clone()
    };
    assert_eq!(
        stuck
            .status(Some(&other), &time("2026-12-07T00:01:00Z"))
            .since,
        Some(time("2026-12-07T00:01:00Z"))
    );

    // Pods that became unschedulable after the operator's start count from
    // their own time.
    let recreated = [
        pod("1", None, false),
        pod("1", None, false),
        pod("2", Some((GPU_SHORT, "2026-12-07T00:00:30Z")), false),
    ];
    let recreated = shortage(&recreated, 2, counts(3, 2)).unwrap();
    assert_eq!(
        recreated.failure(first.since.as_ref(), grace, &time("2026-12-07T00:00:35Z")),
        None
    );
    assert!(
        recreated
            .failure(first.since.as_ref(), grace, &time("2026-12-07T00:00:40Z"))
            .is_some()
    );
}

#[test]
fn a_rollout_that_still_moves_has_no_grace_and_never_fails_here() {
    let pods = [pod("1", None, true), pod("2", Some((GPU_SHORT, T0)), false)];
    let moving = shortage(&pods, 2, counts(1, 0)).unwrap();
    let status = moving.status(None, &time("2026-12-07T01:00:00Z"));
    assert_eq!(status.since, None);
    assert_eq!(
        moving.failure(
            status.since.as_ref(),
            Duration::ZERO,
            &time("2026-12-07T02:00:00Z")
        ),
        None
    );
}

#[test]
fn no_matching_node_is_named_as_such() {
    let message = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.";
    let pods = [pod("2", Some((message, T0)), false)];
    let stuck = shortage(&pods, 2, counts(1, 0)).unwrap();
    let status = stuck.status(None, &time(T0));
    assert_eq!(status.reason, "NoMatchingNode");
    assert!(status.resources.is_empty());
    assert_eq!(
        status.message,
        "1/1 pods of revision 2 cannot be scheduled: none of the 3 nodes matches their node selector, affinity, tolerations or spread constraints"
    );
}
