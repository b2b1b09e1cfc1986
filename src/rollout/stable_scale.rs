//! Dynamic stable scale (`canary.dynamicStableScale`): with a traffic
//! router, the stable side shrinks as the canary's share grows, so a canary
//! costs at most one pod (and its GPUs) beyond the model's count.
//!
//! Both sides move in small steps, each safe on its own:
//! - the side that grows gets a pod only while the model's pods (of both
//!   sides, terminating ones included: they still hold their GPUs) number
//!   fewer than `full + 1`;
//! - the route moves only as far as the receiving side's available pods
//!   carry its share;
//! - the side that shrinks keeps the pods for the share the route gives it
//!   now, as read back, so it loses pods only once the lower weight is
//!   written.
//!
//! An abort runs the same steps backwards: stable pods come back first, the
//! route returns to the stable side as they become available, and the
//! canary's pods go last. Pure: observed state in, next scale out; each
//! pass takes one step and the next pass sees its result.

use super::canary;

/// One side (stable or canary) as observed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Side {
    /// Its Deployment's `spec.replicas`.
    pub replicas: i32,
    /// Its available pods (of its current template).
    pub available: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inputs {
    /// The model's pod count (`spec.replicas`).
    pub full: i32,
    /// The canary's share wanted: the step's weight, 100 to promote, 0 to
    /// retire the canary.
    pub weight: i32,
    /// The canary's share in the route now, in percent; `None` when the
    /// route's weights are unknown (edited by hand): then neither side
    /// shrinks this pass.
    pub route: Option<i32>,
    pub stable: Side,
    pub canary: Side,
    /// Pods of the model that exist, on either side, terminating included.
    pub pods: i32,
}

/// The next step: each side's replica count and the canary's share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scale {
    pub stable: i32,
    pub canary: i32,
    /// The canary's share of the route, in percent.
    pub route: i32,
}

/// Stable pods for the stable side's share when the canary has `weight`
/// percent: the stable count's remainder, rounded up (none at 100%).
/// With the canary's ceil(weight% × full), the two make at most `full + 1`.
pub fn stable_replicas(weight: i32, full: i32) -> i32 {
    let rest = 100 - weight.clamp(0, 100);
    let full = i64::from(full.max(0));
    i32::try_from((i64::from(rest) * full + 99) / 100).unwrap_or(i32::MAX)
}

/// The share, in percent, that `pods` of `full` pods carry: their exact
/// share rounded to the nearest percent (the route's weights are whole
/// percents). Rounding, not flooring, is what lets the two sides meet: the
/// shares of n and full − n pods add up to at least 100, so the side that
/// shrinks can always give up a pod (1 of 3 pods carries 33%, 2 of 3 67%).
fn carried(pods: i32, full: i32) -> i32 {
    if full <= 0 {
        return 100;
    }
    let (pods, full) = (i64::from(pods.clamp(0, full)), i64::from(full));
    i32::try_from((200 * pods + full) / (2 * full)).unwrap_or(100)
}

/// The fewest pods of `full` that carry `share` percent: the smallest n
/// with `carried(n, full) >= share`.
fn keeps(share: i32, full: i32) -> i32 {
    let share = i64::from(share.clamp(0, 100));
    if share == 0 {
        return 0;
    }
    let full = i64::from(full.max(0));
    i32::try_from((full * (2 * share - 1) + 199) / 200).unwrap_or(i32::MAX)
}

pub fn scale(i: &Inputs) -> Scale {
    let full = i.full.max(0);
    let wanted = i.weight.clamp(0, 100);
    let now = i.route.map(|w| w.clamp(0, 100));
    // Each side carries no more than its available pods do; between the
    // two bounds, the share closest to the one wanted. When both sides are
    // short (pods lost), the route holds.
    let highest = carried(i.canary.available.min(i.canary.replicas), full);
    let lowest = 100 - carried(i.stable.available.min(i.stable.replicas), full);
    let route = if lowest <= highest {
        wanted.clamp(lowest, highest)
    } else {
        now.unwrap_or(wanted.min(highest))
    };
    // Pods each side keeps: its share now and once the route is written.
    let (canary_keeps, stable_keeps) = match now {
        Some(now) => (
            keeps(now.max(route), full),
            keeps(100 - now.min(route), full),
        ),
        None => (i.canary.replicas, i.stable.replicas),
    };
    let canary_target = canary::replicas(wanted, full).max(canary_keeps);
    let stable_target = stable_replicas(wanted, full).max(stable_keeps);
    let occupied = i.pods.max(i.stable.replicas + i.canary.replicas);
    let mut room = (full + 1 - occupied).max(0);
    let mut grow = |current: i32, target: i32| {
        if target <= current {
            return target;
        }
        let added = (target - current).min(room);
        room -= added;
        current + added
    };
    // The side that gains traffic grows first.
    let (stable, canary) = if wanted < now.unwrap_or(wanted) {
        let stable = grow(i.stable.replicas, stable_target);
        (stable, grow(i.canary.replicas, canary_target))
    } else {
        let canary = grow(i.canary.replicas, canary_target);
        (grow(i.stable.replicas, stable_target), canary)
    };
    Scale {
        stable,
        canary,
        route,
    }
}

/// Whether `s`, planned from `i`, is where the scale rests: both sides at
/// the wanted weight's counts, the route already at it, and no pod more
/// than the specs ask for. Until then another pass must follow even if
/// nothing it watches changes: the route is not watched, and neither is a
/// terminating pod that goes.
pub fn settled(i: &Inputs, s: &Scale) -> bool {
    let full = i.full.max(0);
    let wanted = i.weight.clamp(0, 100);
    i.route == Some(wanted)
        && s.route == wanted
        && s.stable == stable_replicas(wanted, full)
        && s.canary == canary::replicas(wanted, full)
        && i.stable.replicas == s.stable
        && i.canary.replicas == s.canary
        && i.pods <= s.stable + s.canary
}

#[cfg(test)]
mod tests;
