use proptest::prelude::*;

use super::*;

fn side(replicas: i32, available: i32) -> Side {
    Side {
        replicas,
        available,
    }
}

/// 10 pods; (stable, canary) as (replicas, available); every pod exists.
fn at(weight: i32, route: Option<i32>, stable: Side, canary: Side) -> Inputs {
    Inputs {
        full: 10,
        weight,
        route,
        stable,
        canary,
        pods: stable.replicas + canary.replicas,
    }
}

#[test]
fn stable_pods_per_weight() {
    // (weight, full, stable pods): the remainder of the canary's share,
    // rounded up; with the canary's pods, at most full + 1.
    let cases = [
        (0, 10, 10),
        (10, 10, 9),
        (50, 10, 5),
        (55, 10, 5),
        (99, 10, 1),
        (100, 10, 0),
        (50, 3, 2),
        (33, 3, 3),
        (10, 1, 1),
        (100, 1, 0),
        (50, 0, 0),
        (-5, 4, 4),
        (140, 4, 0),
    ];
    for (weight, full, want) in cases {
        assert_eq!(stable_replicas(weight, full), want, "{weight}% of {full}");
    }
}

#[test]
fn shares_of_pods() {
    // (pods, full, carried %, fewest pods for that share)
    let cases = [
        (1, 3, 33, 1),
        (2, 3, 67, 2),
        (3, 3, 100, 3),
        (0, 3, 0, 0),
        (1, 10, 10, 1),
        (9, 10, 90, 9),
        (1, 8, 13, 1),
        (7, 8, 88, 7),
        (5, 0, 100, 0),
    ];
    for (pods, full, share, fewest) in cases {
        assert_eq!(carried(pods, full), share, "{pods} of {full}");
        assert_eq!(keeps(share, full), fewest, "{share}% of {full}");
    }
    // Any split of the pods carries all the traffic between its two sides.
    for full in 1..50 {
        for n in 0..=full {
            assert!(
                carried(n, full) + carried(full - n, full) >= 100,
                "{n} of {full}"
            );
            assert!(keeps(carried(n, full), full) <= n, "{n} of {full}");
        }
    }
}

#[test]
fn each_step_is_safe_on_its_own() {
    // (case, inputs, next scale)
    let cases = [
        (
            "first step: the canary gets the one spare pod, no traffic yet",
            at(10, Some(0), side(10, 10), side(0, 0)),
            Scale {
                stable: 10,
                canary: 1,
                route: 0,
            },
        ),
        (
            "canary ready: the route moves, the stable side waits for it",
            at(10, Some(0), side(10, 10), side(1, 1)),
            Scale {
                stable: 10,
                canary: 1,
                route: 10,
            },
        ),
        (
            "route written: the stable side gives up a pod",
            at(10, Some(10), side(10, 10), side(1, 1)),
            Scale {
                stable: 9,
                canary: 1,
                route: 10,
            },
        ),
        (
            "a stable pod still terminating: no room for the canary",
            Inputs {
                pods: 11,
                ..at(50, Some(10), side(9, 9), side(1, 1))
            },
            Scale {
                stable: 9,
                canary: 1,
                route: 10,
            },
        ),
        (
            "toward 50%: one canary pod more",
            at(50, Some(10), side(9, 9), side(1, 1)),
            Scale {
                stable: 9,
                canary: 2,
                route: 10,
            },
        ),
        (
            "the route follows the canary's available pods only",
            at(50, Some(10), side(9, 9), side(2, 2)),
            Scale {
                stable: 9,
                canary: 2,
                route: 20,
            },
        ),
        (
            "at 50%",
            at(50, Some(50), side(5, 5), side(5, 5)),
            Scale {
                stable: 5,
                canary: 5,
                route: 50,
            },
        ),
        (
            "100%: the stable side goes once the route is all the canary's",
            at(100, Some(100), side(1, 1), side(10, 10)),
            Scale {
                stable: 0,
                canary: 10,
                route: 100,
            },
        ),
        (
            "abort at 50%: a stable pod first, the route holds",
            at(0, Some(50), side(5, 5), side(5, 5)),
            Scale {
                stable: 6,
                canary: 5,
                route: 50,
            },
        ),
        (
            "abort: the stable pod is ready, the route moves back",
            at(0, Some(50), side(6, 6), side(5, 5)),
            Scale {
                stable: 6,
                canary: 5,
                route: 40,
            },
        ),
        (
            "abort: route written, the canary gives up a pod",
            at(0, Some(40), side(6, 6), side(5, 5)),
            Scale {
                stable: 6,
                canary: 4,
                route: 40,
            },
        ),
        (
            "abort: the route is all the stable's only with 10 available",
            at(0, Some(10), side(10, 9), side(1, 1)),
            Scale {
                stable: 10,
                canary: 1,
                route: 10,
            },
        ),
        (
            "abort done",
            at(0, Some(0), side(10, 10), side(1, 1)),
            Scale {
                stable: 10,
                canary: 0,
                route: 0,
            },
        ),
        (
            "route edited by hand: nobody shrinks",
            at(50, None, side(7, 7), side(3, 3)),
            Scale {
                stable: 7,
                canary: 4,
                route: 30,
            },
        ),
        (
            "both sides short of pods: the route holds",
            at(50, Some(30), side(7, 3), side(3, 1)),
            Scale {
                stable: 7,
                canary: 4,
                route: 30,
            },
        ),
    ];
    for (name, inputs, want) in cases {
        assert_eq!(scale(&inputs), want, "{name}");
    }
}

#[test]
fn settled_only_at_the_wanted_scale_with_the_route_read_back() {
    let at_50 = at(50, Some(50), side(5, 5), side(5, 5));
    assert!(settled(&at_50, &scale(&at_50)));
    let written = at(50, Some(40), side(6, 6), side(5, 5));
    assert!(!settled(&written, &scale(&written)), "the route moves");
    let terminating = Inputs { pods: 11, ..at_50 };
    assert!(
        !settled(&terminating, &scale(&terminating)),
        "a pod still goes"
    );
    let unknown = at(50, None, side(5, 5), side(5, 5));
    assert!(!settled(&unknown, &scale(&unknown)), "the route was edited");
}

/// The cluster after one pass: specs as planned, the route as written,
/// pods created or gone, and (when `ready`) every pod available.
fn settle(i: Inputs, s: Scale, ready: bool) -> Inputs {
    let avail = |side: Side, replicas: i32| Side {
        replicas,
        available: if ready {
            replicas
        } else {
            side.available.min(replicas)
        },
    };
    Inputs {
        route: Some(s.route),
        stable: avail(i.stable, s.stable),
        canary: avail(i.canary, s.canary),
        pods: s.stable + s.canary,
        ..i
    }
}

proptest! {
    /// From any weight to any other, passes with pods becoming ready or
    /// not: never more than full + 1 pods, neither side below its share of
    /// the route, and the wanted scale reached once pods get ready.
    #[test]
    fn moves_within_one_spare_pod(
        full in 1i32..20,
        from in 0i32..=100,
        to in 0i32..=100,
        slow in proptest::collection::vec(any::<bool>(), 0..200),
    ) {
        let stable = stable_replicas(from, full);
        let canary = canary::replicas(from, full);
        let mut i = Inputs {
            full,
            weight: to,
            route: Some(from),
            stable: Side { replicas: stable, available: stable },
            canary: Side { replicas: canary, available: canary },
            pods: stable + canary,
        };
        let mut slow = slow.into_iter();
        for _ in 0..400 {
            let s = scale(&i);
            prop_assert!(s.stable + s.canary <= full + 1, "{i:?} -> {s:?}");
            let written = i.route.unwrap_or(s.route);
            // The route moves only as far as each side's available pods
            // carry its share.
            if s.route != written {
                prop_assert!(carried(i.canary.available, full) >= s.route, "canary carries: {i:?} -> {s:?}");
                prop_assert!(carried(i.stable.available, full) >= 100 - s.route, "stable carries: {i:?} -> {s:?}");
            }
            // Neither side drops below its share, of the route as it is
            // and as it will be.
            prop_assert!(s.stable >= keeps(100 - written.min(s.route), full), "stable keeps its share: {i:?} -> {s:?}");
            prop_assert!(s.canary >= keeps(written.max(s.route), full), "canary keeps its share: {i:?} -> {s:?}");
            i = settle(i, s, !slow.next().unwrap_or(false));
        }
        prop_assert_eq!(i.route, Some(to));
        prop_assert_eq!(i.stable.replicas, stable_replicas(to, full));
        prop_assert_eq!(i.canary.replicas, canary::replicas(to, full));
    }
}
