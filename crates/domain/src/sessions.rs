//! The rules of sessions, refresh tokens and the audit trail's retention: pure decisions
//! over state that stores load and save. A store never compares times or hashes to decide
//! anything itself; it only applies what these functions decide, with compare-and-set
//! writes so that a decision is applied to the state it was made on.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{LockoutPolicy, Session};

/// The SHA-256 of a refresh token, hex: all a store ever keeps of one. Refresh tokens are
/// 256-bit random values, so a fast hash is as safe as a slow one here.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RefreshHash(String);

impl RefreshHash {
    /// Wraps a hex digest (computed from a token, or read back from a store).
    pub fn from_hex(hex: String) -> Self {
        Self(hex)
    }

    /// The hex digest.
    pub fn as_hex(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RefreshHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only a prefix: enough to correlate, useless to anyone holding the log.
        write!(f, "RefreshHash({}…)", self.0.get(..8).unwrap_or(""))
    }
}

/// The knobs of authentication, and the decisions made with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityPolicy {
    /// When accounts lock after failed logins.
    pub lockout: LockoutPolicy,
    /// How long a session (and so its refresh tokens) lives from login.
    pub session_ttl: Duration,
    /// How long after a rotation the rotated refresh token may be presented again (a client
    /// retrying a refresh whose answer it lost) without revoking the session.
    pub refresh_grace: Duration,
    /// How long a deleted organization's audit events are kept.
    pub audit_retention: Duration,
}

impl Default for SecurityPolicy {
    fn default() -> Self {
        Self {
            lockout: LockoutPolicy::default(),
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            refresh_grace: Duration::from_secs(10),
            audit_retention: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// What a store keeps of a session beside the session itself: whether it is revoked, and
/// which refresh token it answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshState {
    /// The hash of the refresh token the session answers to now.
    pub current: RefreshHash,
    /// The hash rotated away last, and when: the only one a grace retry may present.
    pub previous: Option<(RefreshHash, DateTime<Utc>)>,
    /// Whether the session was revoked (logout, reuse, credential change, delete).
    pub revoked: bool,
}

/// What presenting a refresh token must do to its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationDecision {
    /// The session answers to the replacement from now on; `previous` is what the store
    /// keeps as the token rotated away last (unchanged by a grace retry, so that one lost
    /// answer allows one retry, not a chain of them).
    Rotate {
        /// The new "rotated away last" entry.
        previous: Option<(RefreshHash, DateTime<Utc>)>,
    },
    /// A token already rotated away came back: whoever holds it, the session is
    /// compromised and must be revoked.
    Revoke,
    /// The session is over (revoked or expired): nothing changes.
    Refuse,
}

impl Session {
    /// Whether the session may still be used: not revoked and not expired.
    pub fn is_live(&self, revoked: bool, now: DateTime<Utc>) -> bool {
        !revoked && now < self.expires_at
    }
}

impl SecurityPolicy {
    /// When a session opened at `opened` ends, however often it is refreshed.
    pub fn session_expiry(&self, opened: DateTime<Utc>) -> DateTime<Utc> {
        opened + chrono::Duration::from_std(self.session_ttl).unwrap_or(chrono::Duration::MAX)
    }

    /// The refresh rule: the current token rotates; the token rotated away last rotates
    /// again within the grace window (a client retrying a refresh whose answer it lost);
    /// any other token the session answered to once revokes it.
    pub fn rotation(
        &self,
        session: &Session,
        state: &RefreshState,
        presented: &RefreshHash,
        now: DateTime<Utc>,
    ) -> RotationDecision {
        if !session.is_live(state.revoked, now) {
            return RotationDecision::Refuse;
        }
        if state.current == *presented {
            return RotationDecision::Rotate { previous: Some((presented.clone(), now)) };
        }
        let grace = chrono::Duration::from_std(self.refresh_grace).unwrap_or(chrono::Duration::MAX);
        match &state.previous {
            Some((hash, at)) if hash == presented && now - *at < grace => {
                RotationDecision::Rotate { previous: state.previous.clone() }
            }
            _ => RotationDecision::Revoke,
        }
    }

    /// Until when the audit events of an organization deleted at `deleted` are kept.
    pub fn audit_expiry(&self, deleted: DateTime<Utc>) -> DateTime<Utc> {
        deleted + chrono::Duration::from_std(self.audit_retention).unwrap_or(chrono::Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AdminId, OrgId, SessionId};
    use chrono::TimeZone;

    fn t(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0).single().expect("time")
    }

    fn hash(tag: &str) -> RefreshHash {
        RefreshHash::from_hex(tag.to_owned())
    }

    fn session() -> Session {
        Session {
            id: SessionId::new(),
            admin_id: AdminId::new(),
            org_id: OrgId::new(),
            created_at: t(0),
            expires_at: t(1000),
        }
    }

    #[test]
    fn rotation_decisions() {
        let policy = SecurityPolicy { refresh_grace: Duration::from_secs(10), ..SecurityPolicy::default() };
        let state = |revoked| RefreshState { current: hash("c"), previous: Some((hash("p"), t(100))), revoked };
        let rotate_from = |presented: &str, at| RotationDecision::Rotate { previous: Some((hash(presented), at)) };
        let retry = RotationDecision::Rotate { previous: Some((hash("p"), t(100))) };
        // (presented, now, revoked, expected)
        for (presented, now, revoked, expected) in [
            ("c", t(105), false, rotate_from("c", t(105))),
            ("p", t(105), false, retry.clone()),
            ("p", t(109), false, retry),
            ("p", t(110), false, RotationDecision::Revoke),
            ("older", t(105), false, RotationDecision::Revoke),
            ("c", t(105), true, RotationDecision::Refuse),
            ("p", t(105), true, RotationDecision::Refuse),
            ("c", t(1000), false, RotationDecision::Refuse),
            ("c", t(999), false, rotate_from("c", t(999))),
        ] {
            assert_eq!(
                policy.rotation(&session(), &state(revoked), &hash(presented), now),
                expected,
                "{presented} at {now} revoked {revoked}"
            );
        }
        // Without a grace window, the token rotated away last is reuse at once.
        let strict = SecurityPolicy { refresh_grace: Duration::ZERO, ..policy };
        assert_eq!(strict.rotation(&session(), &state(false), &hash("p"), t(100)), RotationDecision::Revoke);
    }

    #[test]
    fn liveness_and_expiries() {
        let policy = SecurityPolicy {
            session_ttl: Duration::from_secs(1000),
            audit_retention: Duration::from_secs(60),
            ..SecurityPolicy::default()
        };
        assert_eq!(policy.session_expiry(t(0)), t(1000));
        for (revoked, now, live) in [(false, t(999), true), (false, t(1000), false), (true, t(1), false)] {
            assert_eq!(session().is_live(revoked, now), live, "{revoked} {now}");
        }
        assert_eq!(policy.audit_expiry(t(5)), t(65));
    }
}
