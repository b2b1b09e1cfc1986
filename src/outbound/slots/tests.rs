use super::*;

fn run(slots: &mut Slots, object: &str, now: Instant) {
    let namespace = object.split('/').next().unwrap();
    assert_eq!(
        slots.request(object, namespace, now),
        Decision::Run,
        "{object}"
    );
}

fn busy(slots: &mut Slots, object: &str, now: Instant) -> Option<String> {
    let namespace = object.split('/').next().unwrap();
    match slots.request(object, namespace, now) {
        Decision::Busy { preempt } => preempt,
        Decision::Run => panic!("{object} got a slot"),
    }
}

fn release(slots: &mut Slots, object: &str, now: Instant) {
    slots.release(object, object.split('/').next().unwrap(), now);
}

/// Who a slot is handed to, by the order the slots are given back in.
fn reserved(slots: &Slots) -> Vec<String> {
    let mut r: Vec<String> = slots.reserved.keys().cloned().collect();
    r.sort();
    r
}

#[test]
fn free_slots_go_by_turns_between_namespaces_never_to_whoever_asks_first() {
    let t = Instant::now();
    let mut slots = Slots::new(2, 2);
    run(&mut slots, "a/1", t);
    run(&mut slots, "b/1", t);
    for waiting in ["a/2", "a/3", "a/4", "c/1", "d/1"] {
        assert_eq!(busy(&mut slots, waiting, t), None, "{waiting}");
    }
    // Each slot given back goes to the next namespace's oldest waiter
    // (fewest slots held first), and is kept for it.
    let mut order = Vec::new();
    for (gone, newcomer) in [("a/1", "z/1"), ("b/1", "z/2"), ("a/2", "z/3")] {
        release(&mut slots, gone, t);
        let handed = reserved(&slots);
        assert_eq!(handed.len(), 1, "{handed:?}");
        // A newcomer asking now does not take it.
        assert_eq!(busy(&mut slots, newcomer, t), None);
        let who = handed[0].clone();
        run(&mut slots, &who, t);
        order.push(who);
    }
    assert_eq!(order, ["a/2", "c/1", "d/1"]);
    // Next `z`, which holds nothing, before `a`, which holds one.
    release(&mut slots, "c/1", t);
    assert_eq!(reserved(&slots), ["z/1"]);
}

#[test]
fn a_namespace_that_runs_nothing_gets_a_slot_from_one_running_more() {
    let t = Instant::now();
    let mut slots = Slots::new(4, 2);
    for held in ["h1/1", "h1/2", "h2/1", "h2/2"] {
        run(&mut slots, held, t);
    }
    // The newest round of a namespace running two is cancelled for it...
    assert_eq!(busy(&mut slots, "z/1", t), Some("h1/2".into()));
    // ...once: its slot is on the way.
    assert_eq!(busy(&mut slots, "z/1", t), None);
    // A namespace that runs a round already cancels nothing.
    assert_eq!(busy(&mut slots, "h1/3", t), None);
    release(&mut slots, "h1/2", t);
    assert_eq!(reserved(&slots), ["z/1"]);
    run(&mut slots, "z/1", t);
    // A second starved namespace takes from the other one running two.
    assert_eq!(busy(&mut slots, "y/1", t), Some("h2/2".into()));
    release(&mut slots, "h2/2", t);
    run(&mut slots, "y/1", t);
    // Now everyone runs one: nobody's round is cancelled for `x`.
    assert_eq!(busy(&mut slots, "x/1", t), None);
}

#[test]
fn waiters_that_stopped_asking_and_slots_not_taken_are_let_go() {
    let t = Instant::now();
    let mut slots = Slots::new(1, 1);
    run(&mut slots, "a/1", t);
    busy(&mut slots, "b/1", t);
    busy(&mut slots, "c/1", t);
    // `c` keeps asking, `b` does not.
    busy(&mut slots, "c/1", t + STALE / 2);
    release(&mut slots, "a/1", t + STALE);
    assert_eq!(reserved(&slots), ["c/1"]);
    // `c` never comes for it: after RESERVED_FOR it is anyone's.
    let later = t + STALE + RESERVED_FOR;
    run(&mut slots, "d/1", later);
    assert_eq!(slots.entries(), 0);
}

#[test]
fn forgetting_a_deleted_waiter_hands_its_slot_on() {
    let t = Instant::now();
    let mut slots = Slots::new(1, 1);
    run(&mut slots, "a/1", t);
    busy(&mut slots, "b/1", t);
    busy(&mut slots, "c/1", t);
    release(&mut slots, "a/1", t);
    assert_eq!(reserved(&slots), ["b/1"]);
    slots.forget("b/1", t);
    assert_eq!(reserved(&slots), ["c/1"]);
    slots.forget("c/1", t);
    assert_eq!(slots.entries(), 0);
    run(&mut slots, "d/1", t);
}

#[test]
fn the_pool_and_the_share_bound_what_runs() {
    let t = Instant::now();
    let mut slots = Slots::new(3, 2);
    run(&mut slots, "a/1", t);
    run(&mut slots, "a/2", t);
    assert_eq!(busy(&mut slots, "a/3", t), None, "a's share is 2");
    run(&mut slots, "b/1", t);
    assert_eq!(
        busy(&mut slots, "c/1", t),
        Some("a/2".into()),
        "the pool is full and c runs nothing"
    );
}
