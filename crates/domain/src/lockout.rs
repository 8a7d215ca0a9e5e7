//! The account lockout rule, as pure decisions over the state of one login throttle.
//!
//! A throttle belongs to an email address, whether or not an admin has it, so that known
//! and unknown addresses go through the same sequence of answers. It counts consecutive
//! failed password checks and the checks in flight. A check may start only while
//! `failures + checks in flight` stays below the threshold (one at a time once the
//! threshold has been reached and the lock has expired), so any number of parallel guesses
//! get at most the threshold's number of checks. A check that cannot start because others
//! hold the slots is told to wait, not that the account is locked: only failures lock, so
//! parallel logins with the right password are never locked out.
//!
//! Stores keep the state and write it back with a compare-and-set; the decisions below are
//! the only place the rule lives.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::ids::CheckId;

/// When an account is locked after failed logins: after `threshold` consecutive failures it
/// is locked for `base`, and each further failure after a lock expires locks it again for
/// twice as long, up to `cap`. A successful login resets the count.
///
/// ```
/// use std::time::Duration;
/// use domain::LockoutPolicy;
/// let policy = LockoutPolicy::default();
/// assert_eq!(policy.threshold(), 5);
/// assert_eq!(policy.lock_for(5), Some(Duration::from_secs(60)));
/// assert_eq!(policy.lock_for(6), Some(Duration::from_secs(120)));
/// assert_eq!(policy.lock_for(40), Some(Duration::from_secs(3600)));
/// assert_eq!(policy.lock_for(4), None);
/// assert!(LockoutPolicy::new(0, Duration::from_secs(60), Duration::from_secs(3600)).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    threshold: u32,
    base: Duration,
    cap: Duration,
}

/// A lockout policy that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockoutPolicyError {
    /// A threshold of zero would lock every account before its first check.
    #[error("the threshold must be at least 1")]
    ZeroThreshold,
    /// The longest lock is shorter than the first one.
    #[error("the longest lock must not be shorter than the first")]
    CapBelowBase,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self { threshold: 5, base: Duration::from_secs(60), cap: Duration::from_secs(3600) }
    }
}

/// How long a check in flight holds its slot if its instance never reports the outcome (it
/// died): far longer than any password check takes, short enough not to matter.
pub const CHECK_LEASE: Duration = Duration::from_secs(30);

/// How long a throttle is remembered after its last failure or the end of its lock.
pub const THROTTLE_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// One password check in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCheck {
    /// The check.
    pub id: CheckId,
    /// When its slot is freed even if nobody reports its outcome.
    pub expires_at: DateTime<Utc>,
}

/// The failed-login state of one email address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginThrottle {
    /// Consecutive failed checks since the last success.
    pub failures: u32,
    /// Until when checks are refused.
    pub locked_until: Option<DateTime<Utc>>,
    /// Checks in flight.
    pub checks: Vec<PendingCheck>,
}

/// Whether a password check may start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckStart {
    /// It may: store this state, which holds a slot for it.
    Started(LoginThrottle),
    /// The account is locked until then: the password must not be checked.
    Locked {
        /// When the lock ends.
        until: DateTime<Utc>,
    },
    /// Every slot is held by checks in flight: try again when one has ended.
    Wait,
}

/// The state after a failed check, and whether that failure locked the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFailed {
    /// The state to store.
    pub next: LoginThrottle,
    /// The lock this failure started, if it started one.
    pub locked_until: Option<DateTime<Utc>>,
}

/// The checks of `state` still in flight at `now`, other than `id` (which has ended).
fn others_in_flight(state: &LoginThrottle, id: CheckId, now: DateTime<Utc>) -> Vec<PendingCheck> {
    state.checks.iter().filter(|c| c.id != id && c.expires_at > now).cloned().collect()
}

fn after(now: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

impl LockoutPolicy {
    /// A policy locking after `threshold` (at least 1) consecutive failures for `base`,
    /// doubling up to `cap` (at least `base`).
    pub fn new(threshold: u32, base: Duration, cap: Duration) -> Result<Self, LockoutPolicyError> {
        if threshold == 0 {
            return Err(LockoutPolicyError::ZeroThreshold);
        }
        if cap < base {
            return Err(LockoutPolicyError::CapBelowBase);
        }
        Ok(Self { threshold, base, cap })
    }

    /// Consecutive failures that lock the account.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// The first lock's duration.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The longest lock.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// How long the account is locked once it has had `failures` consecutive failures, or
    /// `None` if that many do not lock it.
    pub fn lock_for(&self, failures: u32) -> Option<Duration> {
        let excess = failures.checked_sub(self.threshold)?;
        let factor = 2u32.checked_pow(excess.min(31)).unwrap_or(u32::MAX);
        Some(self.base.checked_mul(factor).unwrap_or(self.cap).min(self.cap))
    }

    /// Whether the check `id` may start now, given the stored state (empty if none).
    pub fn start_check(&self, state: &LoginThrottle, id: CheckId, now: DateTime<Utc>) -> CheckStart {
        if let Some(until) = state.locked_until.filter(|until| *until > now) {
            return CheckStart::Locked { until };
        }
        let live: Vec<PendingCheck> = state.checks.iter().filter(|c| c.expires_at > now).cloned().collect();
        // Below the threshold, as many checks as failures remain before it; at or past it
        // (the lock has expired), one at a time, each failure locking again.
        let slots = self.threshold.saturating_sub(state.failures).max(1);
        if u32::try_from(live.len()).unwrap_or(u32::MAX) >= slots {
            return CheckStart::Wait;
        }
        let mut next = LoginThrottle { checks: live, ..state.clone() };
        next.checks.push(PendingCheck { id, expires_at: after(now, CHECK_LEASE) });
        CheckStart::Started(next)
    }

    /// The state after the check `id` found a wrong password (or an unknown address).
    pub fn check_failed(&self, state: &LoginThrottle, id: CheckId, now: DateTime<Utc>) -> CheckFailed {
        let failures = state.failures.saturating_add(1);
        let locked_until = self.lock_for(failures).map(|duration| after(now, duration));
        let next = LoginThrottle {
            failures,
            locked_until: locked_until.or(state.locked_until),
            checks: others_in_flight(state, id, now),
        };
        CheckFailed { next, locked_until }
    }

    /// The state after the check `id` found the right password: the count and any lock
    /// are cleared, other checks in flight keep their slots.
    pub fn check_succeeded(&self, state: &LoginThrottle, id: CheckId, now: DateTime<Utc>) -> LoginThrottle {
        LoginThrottle { failures: 0, locked_until: None, checks: others_in_flight(state, id, now) }
    }

    /// The state after the check `id` ended without checking anything (the hasher was
    /// unavailable): its slot is freed, nothing is counted.
    pub fn check_abandoned(&self, state: &LoginThrottle, id: CheckId, now: DateTime<Utc>) -> LoginThrottle {
        LoginThrottle { checks: others_in_flight(state, id, now), ..state.clone() }
    }

    /// When a store may forget this state: a day after its lock ends or, without a lock,
    /// a day after now (the time of its last change), and never while a check is in flight.
    pub fn forget_after(&self, state: &LoginThrottle, now: DateTime<Utc>) -> DateTime<Utc> {
        let last = state.checks.iter().map(|c| c.expires_at).chain(state.locked_until).fold(now, DateTime::max);
        after(last, THROTTLE_MEMORY)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0).single().expect("time")
    }

    fn started(start: CheckStart) -> LoginThrottle {
        match start {
            CheckStart::Started(next) => next,
            other => panic!("expected a started check, got {other:?}"),
        }
    }

    #[test]
    fn policies_enforce_their_invariants() {
        let s = Duration::from_secs;
        assert_eq!(LockoutPolicy::new(0, s(60), s(3600)), Err(LockoutPolicyError::ZeroThreshold));
        assert_eq!(LockoutPolicy::new(3, s(60), s(59)), Err(LockoutPolicyError::CapBelowBase));
        let policy = LockoutPolicy::new(1, s(10), s(25)).expect("valid");
        assert_eq!(
            [policy.lock_for(0), policy.lock_for(1), policy.lock_for(2), policy.lock_for(3)],
            [None, Some(s(10)), Some(s(20)), Some(s(25))]
        );
    }

    #[test]
    fn checks_start_while_slots_remain_then_wait() {
        let policy = LockoutPolicy::default();
        let check = |failures: u32, in_flight: usize, expected_start: bool| {
            let state = LoginThrottle {
                failures,
                locked_until: None,
                checks: (0..in_flight).map(|_| PendingCheck { id: CheckId::new(), expires_at: t(30) }).collect(),
            };
            let start = policy.start_check(&state, CheckId::new(), t(0));
            assert_eq!(matches!(start, CheckStart::Started(_)), expected_start, "{failures} failures, {in_flight}");
            if !expected_start {
                assert_eq!(start, CheckStart::Wait, "{failures} failures, {in_flight} in flight");
            }
        };
        check(0, 0, true);
        check(0, 4, true);
        check(0, 5, false);
        check(3, 1, true);
        check(3, 2, false);
        check(4, 0, true);
        check(4, 1, false);
        // Past the threshold, with the lock expired: one at a time.
        check(5, 0, true);
        check(5, 1, false);
        check(9, 0, true);
    }

    #[test]
    fn a_lock_refuses_checks_until_it_ends() {
        let policy = LockoutPolicy::default();
        let state = LoginThrottle { failures: 5, locked_until: Some(t(60)), checks: Vec::new() };
        assert_eq!(policy.start_check(&state, CheckId::new(), t(59)), CheckStart::Locked { until: t(60) });
        assert!(matches!(policy.start_check(&state, CheckId::new(), t(60)), CheckStart::Started(_)));
    }

    #[test]
    fn abandoned_checks_free_their_slot_when_their_lease_ends() {
        let policy = LockoutPolicy::default();
        let mut state = LoginThrottle::default();
        for _ in 0..5 {
            state = started(policy.start_check(&state, CheckId::new(), t(0)));
        }
        assert_eq!(policy.start_check(&state, CheckId::new(), t(29)), CheckStart::Wait);
        let next = started(policy.start_check(&state, CheckId::new(), t(30)));
        assert_eq!(next.checks.len(), 1, "the expired checks are dropped");
    }

    #[test]
    fn failures_lock_at_the_threshold_and_back_off() {
        let policy = LockoutPolicy::default();
        let mut state = LoginThrottle::default();
        for n in 1..=5 {
            let id = CheckId::new();
            state = started(policy.start_check(&state, id, t(0)));
            let failed = policy.check_failed(&state, id, t(0));
            assert_eq!(failed.locked_until, (n == 5).then(|| t(60)), "failure {n}");
            state = failed.next;
        }
        assert!(state.checks.is_empty());
        assert_eq!(policy.start_check(&state, CheckId::new(), t(59)), CheckStart::Locked { until: t(60) });
        let id = CheckId::new();
        state = started(policy.start_check(&state, id, t(61)));
        let failed = policy.check_failed(&state, id, t(61));
        assert_eq!(failed.locked_until, Some(t(61 + 120)));
        let id = CheckId::new();
        let state = started(policy.start_check(&failed.next, id, t(181)));
        let reset = policy.check_succeeded(&state, id, t(181));
        assert_eq!(reset, LoginThrottle::default());
    }

    #[test]
    fn a_success_keeps_the_other_checks_in_flight() {
        let policy = LockoutPolicy::default();
        let (mine, other) = (CheckId::new(), CheckId::new());
        let state = started(policy.start_check(&LoginThrottle::default(), mine, t(0)));
        let state = started(policy.start_check(&state, other, t(0)));
        let after_success = policy.check_succeeded(&state, mine, t(1));
        assert_eq!(after_success.checks.iter().map(|c| c.id).collect::<Vec<_>>(), [other]);
        let failed = policy.check_failed(&state, other, t(1)).next;
        let abandoned = policy.check_abandoned(&failed, mine, t(1));
        assert_eq!(abandoned, LoginThrottle { failures: 1, locked_until: None, checks: Vec::new() });
    }

    #[test]
    fn state_is_forgotten_a_day_after_its_last_event() {
        let policy = LockoutPolicy::default();
        let day = 24 * 3600;
        assert_eq!(policy.forget_after(&LoginThrottle::default(), t(0)), t(day));
        let locked = LoginThrottle { failures: 9, locked_until: Some(t(3600)), checks: Vec::new() };
        assert_eq!(policy.forget_after(&locked, t(0)), t(3600 + day));
    }
}
