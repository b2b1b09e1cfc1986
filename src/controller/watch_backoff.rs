//! How the operator's watches retry when the API server is unreachable.
//!
//! kube-runtime's defaults were measured to be wrong for this operator
//! (tests/fault_apiserver.rs): its Controller pauses the *merged* stream of
//! all six watches with one shared exponential backoff (0.8 s doubling to
//! 30 s, reset only after two quiet minutes), so every watch's error
//! lengthens every other watch's pause, and after a one-minute API server
//! outage the operator stayed blind for 30–45 s more. Instead each watch
//! backs off on its own, capped low enough to notice the API server's return
//! within seconds, and the shared pause is a token one.

use std::time::Duration;

use kube::runtime::utils::Backoff;

/// Per watch: 0.5 s doubling to 8 s, back to 0.5 s after any success. While
/// the API server is down that is about a dozen attempts a minute per watch.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const MIN: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(8);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: Self::MIN }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(Self::MAX);
        Some(delay)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

/// The Controller's pause of all watches together after any one's error:
/// short and constant, since each watch already backs off on its own.
#[derive(Clone, Debug, Default)]
pub struct SharedPause;

impl SharedPause {
    const PAUSE: Duration = Duration::from_millis(100);
}

impl Iterator for SharedPause {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Self::PAUSE)
    }
}

impl Backoff for SharedPause {
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_a_low_cap_and_resets() {
        let mut b = WatchBackoff::default();
        let delays: Vec<u64> = (0..7)
            .map(|_| b.next().unwrap().as_millis() as u64)
            .collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(500)));
        assert_eq!(SharedPause.next(), SharedPause.next());
    }
}
