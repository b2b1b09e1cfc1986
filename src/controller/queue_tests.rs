//! The queue's order (oldest object first within a namespace, round-robin
//! between namespaces), its room, and that an object never has two passes at
//! once.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::*;

fn md(namespace: &str, name: &str) -> ModelRef {
    ObjectRef::new(name).within(namespace)
}

fn names(popped: &[ModelRef]) -> Vec<String> {
    popped
        .iter()
        .map(|o| format!("{}/{}", o.namespace.clone().unwrap_or_default(), o.name))
        .collect()
}

fn drain(fair: &mut Fair) -> Vec<ModelRef> {
    std::iter::from_fn(|| fair.pop()).collect()
}

#[test]
fn oldest_first_within_a_namespace() {
    let mut fair = Fair::new(0);
    for name in ["m1", "m2", "m3"] {
        fair.push(md("a", name));
    }
    assert_eq!(names(&drain(&mut fair)), ["a/m1", "a/m2", "a/m3"]);
}

#[test]
fn a_repeated_trigger_keeps_the_first_place() {
    let mut fair = Fair::new(0);
    for name in ["m1", "m2", "m1", "m3", "m2"] {
        fair.push(md("a", name));
    }
    assert_eq!(names(&drain(&mut fair)), ["a/m1", "a/m2", "a/m3"]);
}

#[test]
fn a_follow_up_goes_before_younger_objects() {
    let mut fair = Fair::new(1);
    for name in ["m1", "m2", "m3"] {
        fair.push(md("a", name));
    }
    assert_eq!(names(&drain(&mut fair)), ["a/m1"]);
    assert!(fair.start(&md("a", "m1")));
    fair.finish(&md("a", "m1"));
    // m1's Deployment became Available: m1 came in first.
    fair.push(md("a", "m1"));
    assert_eq!(names(&drain(&mut fair)), ["a/m1"]);
}

#[test]
fn a_deleted_object_loses_its_place() {
    let mut fair = Fair::new(0);
    for name in ["m1", "m2"] {
        fair.push(md("a", name));
    }
    fair.forget(&md("a", "m1"));
    fair.push(md("a", "m3"));
    fair.push(md("a", "m1"));
    assert_eq!(names(&drain(&mut fair)), ["a/m2", "a/m3", "a/m1"]);
    fair.forget(&md("b", "never-seen"));
    assert_eq!(fair.ages.len(), 3, "one age per live object");
}

#[test]
fn a_burst_does_not_hold_back_another_namespace() {
    let mut fair = Fair::new(0);
    for i in 0..4 {
        fair.push(md("burst", &format!("m{i}")));
    }
    fair.push(md("other", "late"));
    assert_eq!(
        names(&drain(&mut fair)),
        ["burst/m0", "other/late", "burst/m1", "burst/m2", "burst/m3"]
    );
}

#[test]
fn namespaces_take_turns() {
    let mut fair = Fair::new(0);
    for (ns, name) in [("a", "1"), ("a", "2"), ("b", "1"), ("c", "1"), ("b", "2")] {
        fair.push(md(ns, name));
    }
    assert_eq!(
        names(&drain(&mut fair)),
        ["a/1", "b/1", "c/1", "a/2", "b/2"]
    );
}

#[test]
fn releases_only_while_there_is_room() {
    let mut fair = Fair::new(2);
    for name in ["m1", "m2", "m3"] {
        fair.push(md("a", name));
    }
    assert_eq!(names(&drain(&mut fair)), ["a/m1", "a/m2"]);
    assert!(fair.start(&md("a", "m1")));
    assert_eq!(fair.pop(), None, "a started pass still takes its place");
    fair.finish(&md("a", "m1"));
    assert_eq!(names(&drain(&mut fair)), ["a/m3"]);
}

#[test]
fn a_trigger_during_a_pass_runs_after_it() {
    let mut fair = Fair::new(0);
    fair.push(md("a", "m1"));
    assert_eq!(names(&drain(&mut fair)), ["a/m1"]);
    assert!(fair.start(&md("a", "m1")));
    fair.push(md("a", "m1"));
    assert_eq!(fair.pop(), None, "never a second pass at once");
    fair.finish(&md("a", "m1"));
    assert_eq!(names(&drain(&mut fair)), ["a/m1"]);
}

#[test]
fn a_trigger_after_release_before_start_needs_no_second_pass() {
    let mut fair = Fair::new(0);
    fair.push(md("a", "m1"));
    assert_eq!(names(&drain(&mut fair)), ["a/m1"]);
    fair.push(md("a", "m1"));
    assert!(fair.start(&md("a", "m1")));
    fair.finish(&md("a", "m1"));
    assert_eq!(fair.pop(), None);
    assert_eq!(fair.entries(), 1, "only its age");
}

#[test]
fn a_requeue_kube_fires_waits_its_turn() {
    let mut fair = Fair::new(0);
    fair.push(md("a", "m1"));
    assert!(!fair.start(&md("a", "m2")), "not released here: skipped");
    assert_eq!(names(&drain(&mut fair)), ["a/m1", "a/m2"]);
}

#[test]
fn a_deleted_object_frees_its_place() {
    let mut fair = Fair::new(1);
    fair.push(md("a", "gone"));
    fair.push(md("a", "m2"));
    assert_eq!(names(&drain(&mut fair)), ["a/gone"]);
    fair.forget(&md("a", "gone"));
    assert_eq!(names(&drain(&mut fair)), ["a/m2"]);
}

/// What kube-runtime and the watches may do to the queue.
#[derive(Clone, Debug)]
enum Op {
    /// A trigger for object `.1` of namespace `.0`.
    Trigger(usize, usize),
    /// The controller asks for the next request.
    Release,
    /// kube starts a pass: of the n-th released request, or, when there is
    /// none, of object `.1` of namespace `.0` (a requeue's timer).
    Start(usize, usize, usize),
    /// The n-th running pass ends.
    Finish(usize),
    /// The n-th released object turns out deleted.
    Deleted(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..4usize).prop_map(|(n, o)| Op::Trigger(n, o)),
        3 => Just(Op::Release),
        2 => (0..8usize, 0..3usize, 0..4usize).prop_map(|(i, n, o)| Op::Start(i, n, o)),
        2 => (0..8usize).prop_map(Op::Finish),
        1 => (0..8usize).prop_map(Op::Deleted),
    ]
}

fn object(n: usize, o: usize) -> ModelRef {
    md(&format!("ns{n}"), &format!("m{o}"))
}

/// The rules as a spec, checked against every step of random histories.
#[derive(Default)]
struct Spec {
    /// Queued objects with the step they were queued at.
    queued: HashMap<ModelRef, usize>,
    /// Live objects with the step they were first triggered at.
    first_seen: HashMap<ModelRef, usize>,
    released: Vec<ModelRef>,
    running: Vec<ModelRef>,
    /// Triggered since its pass started: it owes a pass.
    owed: HashSet<ModelRef>,
    /// Per waiting namespace, releases since its last release (or since it
    /// started waiting).
    passed_over: HashMap<String, usize>,
}

const LIMIT: usize = 3;
const NAMESPACES: usize = 3;

fn check(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut fair = Fair::new(LIMIT);
    let mut spec = Spec::default();
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Trigger(n, o) => {
                let object = object(*n, *o);
                spec.first_seen.entry(object.clone()).or_insert(step);
                if spec.running.contains(&object) {
                    spec.owed.insert(object.clone());
                }
                if !spec.running.contains(&object) && !spec.released.contains(&object) {
                    spec.queued.entry(object.clone()).or_insert(step);
                }
                fair.push(object);
            }
            Op::Release => {
                let Some(object) = fair.pop() else {
                    let room = spec.released.len() + spec.running.len() < LIMIT;
                    prop_assert!(!room || spec.queued.is_empty(), "room and waiting");
                    continue;
                };
                prop_assert!(!spec.running.contains(&object), "two passes at once");
                prop_assert!(!spec.released.contains(&object), "released twice");
                prop_assert!(
                    spec.queued.remove(&object).is_some(),
                    "released without a trigger"
                );
                let namespace = object.namespace.clone().unwrap_or_default();
                let age = spec.first_seen.get(&object);
                let oldest = spec
                    .queued
                    .keys()
                    .filter(|o| o.namespace == object.namespace)
                    .all(|o| spec.first_seen.get(o) > age);
                prop_assert!(oldest, "not the oldest of its namespace");
                spec.passed_over.remove(&namespace);
                for o in spec.queued.keys() {
                    let ns = o.namespace.clone().unwrap_or_default();
                    if ns != namespace {
                        spec.passed_over.entry(ns).or_insert(0);
                    }
                }
                for (_, count) in spec.passed_over.iter_mut() {
                    *count += 1;
                    prop_assert!(*count < NAMESPACES, "a namespace waited past its turn");
                }
                spec.released.push(object);
                prop_assert!(spec.released.len() + spec.running.len() <= LIMIT);
            }
            Op::Start(i, n, o) => {
                let (object, released) = if *i < spec.released.len() {
                    (spec.released.remove(*i), true)
                } else if spec.released.is_empty() {
                    (object(*n, *o), false)
                } else {
                    continue;
                };
                // kube-runtime's own rule: never while a pass of it runs.
                if spec.running.contains(&object) {
                    prop_assert!(!released, "released while running");
                    continue;
                }
                prop_assert_eq!(fair.start(&object), released);
                if released {
                    spec.running.push(object);
                } else {
                    spec.first_seen.entry(object.clone()).or_insert(step);
                    spec.queued.entry(object).or_insert(step);
                }
            }
            Op::Finish(i) => {
                if *i < spec.running.len() {
                    let object = spec.running.remove(*i);
                    if spec.owed.remove(&object) {
                        spec.queued.entry(object.clone()).or_insert(step);
                    }
                    fair.finish(&object);
                }
            }
            Op::Deleted(i) => {
                if *i < spec.released.len() {
                    let object = spec.released.remove(*i);
                    spec.first_seen.remove(&object);
                    fair.forget(&object);
                }
            }
        }
        prop_assert_eq!(fair.queued.len(), spec.queued.len());
    }
    // Every trigger is served in the end, and nothing is left behind.
    for _ in 0..=ops.len() {
        for object in spec.running.drain(..) {
            fair.finish(&object);
        }
        while let Some(object) = fair.pop() {
            spec.released.push(object);
        }
        if spec.released.is_empty() {
            break;
        }
        for object in spec.released.drain(..) {
            prop_assert!(fair.start(&object));
            spec.running.push(object);
        }
    }
    prop_assert!(spec.running.is_empty() && fair.queued.is_empty() && fair.again.is_empty());
    prop_assert_eq!(
        fair.entries(),
        spec.first_seen.len(),
        "only the live objects' ages"
    );
    Ok(())
}

proptest! {
    #[test]
    fn random_histories_keep_the_rules(ops in proptest::collection::vec(op(), 1..120)) {
        check(&ops)?;
    }
}
