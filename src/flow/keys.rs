//! The worker's remote JWKS and when to fetch it. One fetch at a time: periodically, when a
//! request needs a key the worker does not have (at most once per cool-down, counted from
//! when the last fetch completed, so a flood of random `kid`s cannot hammer the IdP), and,
//! while the worker has no keys at all, with back-off until it has some. Who dispatches it
//! is `worker`'s business.

use crate::tokens::jwks::KeySet;

/// What a request whose key is missing should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refetch {
    /// A fetch is in flight or asked for: wait for it.
    Wait,
    /// Start a fetch and wait for it.
    Fetch,
    /// Keys exist but not this one, and the cool-down forbids a fetch: invalid token.
    UnknownKey,
    /// No keys at all and the IdP failed recently: fail closed with 503.
    Unavailable,
}

/// The fetch in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    call: u32,
    /// When to give up on a response that never comes (a host that drops the call).
    deadline: u64,
}

/// Longest back-off between fetches while the worker has no keys.
pub const MAX_BACKOFF: u64 = 30;

/// A remote JWKS and its fetch bookkeeping, per worker.
#[derive(Debug, Default)]
pub struct KeyFetcher {
    keys: Option<KeySet>,
    fetched_at: Option<u64>,
    in_flight: Option<InFlight>,
    /// A request asked the root context for a fetch at this time; its next tick starts it.
    wanted_at: Option<u64>,
    /// When the last fetch completed, well or not: the cool-down runs from here.
    completed_at: Option<u64>,
    /// Fetches that failed in a row.
    failures: u32,
}

impl KeyFetcher {
    pub fn keys(&self) -> Option<&KeySet> {
        self.keys.as_ref()
    }

    /// A fetch is in flight, or asked for and about to start.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some() || self.wanted_at.is_some()
    }

    /// A request asks for a fetch, which the root context's next tick starts.
    pub fn want(&mut self, now: u64) {
        self.wanted_at.get_or_insert(now);
    }

    /// Seconds to wait after the last completed fetch before the next one: the cool-down
    /// with keys; without, 1, 2, 4, ... seconds after consecutive failures, never more than
    /// the cool-down or `MAX_BACKOFF`.
    fn pause(&self, cooldown: u64) -> u64 {
        if self.keys.is_some() {
            return cooldown;
        }
        let backoff = 1u64 << self.failures.saturating_sub(1).min(16);
        backoff.min(cooldown).min(MAX_BACKOFF)
    }

    fn rested(&self, now: u64, cooldown: u64) -> bool {
        self.completed_at
            .is_none_or(|t| now >= t.saturating_add(self.pause(cooldown)))
    }

    /// Decides for a request whose key is missing.
    pub fn on_missing_key(&self, now: u64, cooldown: u64) -> Refetch {
        match (self.busy(), self.rested(now, cooldown)) {
            (true, _) => Refetch::Wait,
            (false, true) => Refetch::Fetch,
            (false, false) if self.keys.is_some() => Refetch::UnknownKey,
            (false, false) => Refetch::Unavailable,
        }
    }

    /// Whether the root's tick should start a fetch: one a request asked for, the periodic
    /// refresh, or a retry while there are no keys.
    pub fn refresh_due(&self, now: u64, interval: u64, cooldown: u64) -> bool {
        if self.in_flight.is_some() {
            return false;
        }
        self.wanted_at.is_some()
            || (self.rested(now, cooldown)
                && self
                    .fetched_at
                    .is_none_or(|at| now >= at.saturating_add(interval)))
    }

    /// `timeout` is the call's timeout in whole seconds, rounded up. Kong's engine applies it
    /// to connect, send and read separately, so a call may take three times that.
    pub fn started(&mut self, call: u32, now: u64, timeout: u64) {
        self.wanted_at = None;
        self.in_flight = Some(InFlight {
            call,
            deadline: now
                .saturating_add(timeout.saturating_mul(3))
                .saturating_add(1),
        });
    }

    /// Whether `call` is the fetch in flight.
    pub fn is_ours(&self, call: u32) -> bool {
        self.in_flight.is_some_and(|f| f.call == call)
    }

    /// Whether the fetch in flight is past its deadline (its response will not come: Kong's
    /// engine never calls back a root context's call that timed out). A fetch asked for but
    /// not started yet is never overdue: the tick that sees it starts it, however late.
    pub fn overdue(&self, now: u64) -> bool {
        self.in_flight.is_some_and(|f| now >= f.deadline)
    }

    /// Records the fetch's result. A failed refresh keeps the keys we had: an IdP outage
    /// must not turn into refusing every valid token.
    pub fn finished(&mut self, now: u64, result: Option<KeySet>) {
        self.in_flight = None;
        self.wanted_at = None;
        self.completed_at = Some(now);
        match result {
            Some(keys) => {
                self.keys = Some(keys);
                self.fetched_at = Some(now);
                self.failures = 0;
            }
            None => self.failures = self.failures.saturating_add(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_fetches_once_then_waits_then_cools_down_from_completion() {
        let mut k = KeyFetcher::default();
        assert_eq!(k.on_missing_key(100, 30), Refetch::Fetch, "no keys yet");
        k.want(100);
        assert_eq!(k.on_missing_key(100, 30), Refetch::Wait, "asked for");
        assert!(k.refresh_due(100, 600, 30), "the tick starts it");
        k.started(1, 100, 2);
        assert!(!k.refresh_due(100, 600, 30));
        assert_eq!(
            k.on_missing_key(100, 30),
            Refetch::Wait,
            "one fetch at a time"
        );
        // The fetch takes 5 s: the cool-down runs from its completion, not its start.
        k.finished(105, Some(KeySet::default()));
        assert_eq!(k.on_missing_key(130, 30), Refetch::UnknownKey);
        assert_eq!(k.on_missing_key(134, 30), Refetch::UnknownKey);
        assert_eq!(k.on_missing_key(135, 30), Refetch::Fetch);
    }

    #[test]
    fn without_keys_failures_back_off_and_requests_get_unavailable() {
        let mut k = KeyFetcher::default();
        k.started(1, 100, 2);
        k.finished(100, None);
        assert_eq!(k.on_missing_key(100, 30), Refetch::Unavailable);
        assert!(!k.refresh_due(100, 600, 30));
        assert!(k.refresh_due(101, 600, 30), "1 s after the first failure");
        k.started(2, 101, 2);
        k.finished(101, None);
        assert!(!k.refresh_due(102, 600, 30));
        assert!(k.refresh_due(103, 600, 30), "2 s after the second");
        for i in 0..10 {
            k.started(3 + i, 200, 2);
            k.finished(200, None);
        }
        assert!(!k.refresh_due(229, 600, 30));
        assert!(k.refresh_due(230, 600, 30), "never more than the cool-down");
        k.started(20, 230, 2);
        k.finished(231, Some(KeySet::default()));
        assert!(k.keys().is_some());
        assert!(!k.refresh_due(800, 600, 30));
        assert!(k.refresh_due(831, 600, 30), "periodic refresh");
    }

    #[test]
    fn a_failed_refresh_keeps_the_keys_and_waits_a_cooldown() {
        let mut k = KeyFetcher::default();
        k.started(1, 0, 2);
        k.finished(1, Some(KeySet::default()));
        k.started(2, 601, 2);
        assert!(!k.refresh_due(602, 600, 30), "in flight");
        assert!(k.is_ours(2) && !k.is_ours(1));
        k.finished(602, None);
        assert!(k.keys().is_some(), "a failed refresh keeps the keys");
        assert!(!k.refresh_due(620, 600, 30));
        assert!(k.refresh_due(632, 600, 30));
    }

    #[test]
    fn a_fetch_whose_response_never_comes_is_overdue() {
        let mut k = KeyFetcher::default();
        k.started(7, 100, 2);
        assert!(!k.overdue(106));
        assert!(k.overdue(107));
        let mut k = KeyFetcher::default();
        k.want(100);
        assert!(
            !k.overdue(1000),
            "asked for: the next tick starts it, however late"
        );
        assert!(k.refresh_due(1000, 600, 30));
    }
}
