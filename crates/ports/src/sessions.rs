//! What the use cases need to run sessions: refresh tokens, the security policy, and the
//! per-instance cache of session checks that bounds how long another instance's
//! revocation takes to be seen.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use domain::{AdminId, OrgId, SecurityPolicy, SessionId};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::RefreshHash;

/// A refresh token in clear: 256 random bits, hex-encoded. It is shown to the client once
/// and only its [`RefreshHash`] is stored.
pub struct RefreshToken(SecretString);

impl RefreshToken {
    /// A new random token.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(SecretString::from(hex::encode(bytes)))
    }

    /// Wraps a token a client presented.
    pub fn presented(token: SecretString) -> Self {
        Self(token)
    }

    /// The hash under which the store knows the token.
    pub fn hash(&self) -> RefreshHash {
        RefreshHash::from_hex(hex::encode(Sha256::digest(self.0.expose_secret().as_bytes())))
    }

    /// The token, to hand to the client.
    pub fn into_secret(self) -> SecretString {
        self.0
    }
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshToken([REDACTED])")
    }
}

/// The most sessions remembered; beyond it the cache starts over (a cache miss costs one
/// read, so forgetting is always safe).
const MAX_CACHED_SESSIONS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Checked {
    admin: AdminId,
    org: OrgId,
    at: DateTime<Utc>,
}

/// Sessions this instance found active recently. Only positive answers are kept, so a
/// revocation is never hidden for longer than the bound, and this instance's own
/// revocations remove their entries at once.
#[derive(Debug, Default)]
pub(crate) struct SessionCache {
    entries: Mutex<HashMap<SessionId, Checked>>,
}

impl SessionCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Checked>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the session was found active recently enough for the policy to trust the
    /// answer at `now`.
    pub(crate) fn fresh(&self, id: SessionId, now: DateTime<Utc>, policy: &SecurityPolicy) -> bool {
        self.entries().get(&id).is_some_and(|c| policy.liveness_answer_is_fresh(c.at, now))
    }

    pub(crate) fn remember(&self, id: SessionId, admin: AdminId, org: OrgId, now: DateTime<Utc>) {
        let mut entries = self.entries();
        if entries.len() >= MAX_CACHED_SESSIONS {
            entries.clear();
        }
        entries.insert(id, Checked { admin, org, at: now });
    }

    pub(crate) fn forget_session(&self, id: SessionId) {
        self.entries().remove(&id);
    }

    pub(crate) fn forget_admin(&self, admin: AdminId) {
        self.entries().retain(|_, c| c.admin != admin);
    }

    pub(crate) fn forget_organization(&self, org: OrgId) {
        self.entries().retain(|_, c| c.org != org);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refresh_tokens_are_random_256_bit_and_hash_stably() {
        let a = RefreshToken::generate();
        let b = RefreshToken::generate();
        assert_ne!(a.hash(), b.hash());
        let hash = a.hash();
        let text = a.into_secret();
        assert_eq!(text.expose_secret().len(), 64, "256 bits in hex");
        assert_eq!(RefreshToken::presented(text).hash(), hash);
        assert_eq!(hash.as_hex().len(), 64);
    }

    #[test]
    fn the_cache_trusts_an_answer_only_within_the_bound_and_forgets_on_revocation() {
        let cache = SessionCache::default();
        let (sid, admin, org) = (SessionId::new(), AdminId::new(), OrgId::new());
        let t0 = Utc::now();
        let bound = SecurityPolicy { revocation_bound: Duration::from_secs(5), ..SecurityPolicy::default() };
        let bound = &bound;
        assert!(!cache.fresh(sid, t0, bound));
        cache.remember(sid, admin, org, t0);
        assert!(cache.fresh(sid, t0 + chrono::Duration::seconds(4), bound));
        assert!(!cache.fresh(sid, t0 + chrono::Duration::seconds(5), bound));
        assert!(!cache.fresh(sid, t0, &SecurityPolicy { revocation_bound: Duration::ZERO, ..*bound }));
        cache.forget_admin(admin);
        assert!(!cache.fresh(sid, t0, bound));
        cache.remember(sid, admin, org, t0);
        cache.forget_organization(org);
        assert!(!cache.fresh(sid, t0, bound));
        cache.remember(sid, admin, org, t0);
        cache.forget_session(sid);
        assert!(!cache.fresh(sid, t0, bound));
    }
}
