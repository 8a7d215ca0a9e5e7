//! Login throttles: the account lockout rule of [`domain::LockoutPolicy`] applied to the
//! state a store keeps, one compare-and-set at a time.
//!
//! Every login, whether its email belongs to an admin or not, starts a check on the
//! throttle of its email before the password is verified and reports the outcome after.
//! Known and unknown addresses therefore get the same answers in the same order (401s,
//! then 429 "locked"), and do the same store work, so neither the answers nor their timing
//! tell which accounts exist. Throttles are stored under a keyed hash of the address, so
//! the store never holds the addresses that were tried.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::{CHECK_LEASE, CheckId, CheckStart, Email, LockoutPolicy, LoginThrottle, StoreError};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

use crate::{AccountLockout, Clock};

/// The name under which a throttle is stored: the HMAC-SHA256 of the normalized email
/// under the deployment's throttle key, hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThrottleKey(String);

impl ThrottleKey {
    /// Wraps a key read back from the store.
    pub fn from_hex(hex: String) -> Self {
        Self(hex)
    }

    /// The lowercase hex digest.
    pub fn as_hex(&self) -> &str {
        &self.0
    }
}

/// Computes throttle keys. Every instance of a deployment must use the same secret, or they
/// would count one address under different keys.
#[derive(Clone)]
pub struct ThrottleKeyer(Arc<SecretBox<[u8]>>);

impl std::fmt::Debug for ThrottleKeyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ThrottleKeyer([REDACTED])")
    }
}

impl ThrottleKeyer {
    /// A keyer with this secret.
    pub fn new(secret: &[u8]) -> Self {
        Self(Arc::new(SecretBox::new(secret.to_vec().into_boxed_slice())))
    }

    /// A keyer whose secret is derived from another secret of the deployment (the signing
    /// key), under a label of its own so that the two uses never share a key.
    pub fn derived_from(master: &[u8]) -> Self {
        Self::new(&hmac_sha256(master, b"orgsvc login throttle key v1"))
    }

    /// A keyer with a random secret, for a single process (tests, the memory store).
    pub fn random() -> Self {
        let secret: [u8; 32] = rand::random();
        Self::new(&secret)
    }

    /// The throttle key of an email (emails are normalized when parsed).
    ///
    /// ```
    /// use domain::Email;
    /// use ports::ThrottleKeyer;
    /// let keyer = ThrottleKeyer::new(b"a deployment's secret");
    /// let key = keyer.key_for(&Email::parse("Admin@Acme.test").unwrap());
    /// assert_eq!(key, keyer.key_for(&Email::parse("admin@acme.test").unwrap()));
    /// assert_ne!(key, ThrottleKeyer::new(b"another secret").key_for(&Email::parse("admin@acme.test").unwrap()));
    /// assert_eq!(key.as_hex().len(), 64);
    /// ```
    pub fn key_for(&self, email: &Email) -> ThrottleKey {
        ThrottleKey(hex::encode(hmac_sha256(self.0.expose_secret(), email.as_str().as_bytes())))
    }
}

/// HMAC-SHA256 of `message` under `key`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// A throttle as stored, with the version its next compare-and-set must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredThrottle {
    /// The state.
    pub throttle: LoginThrottle,
    /// Changes with every write.
    pub version: u64,
}

/// Compare-and-set rounds before a throttle is declared too contended (503). Every round
/// that fails means another attempt's write succeeded, so this is far more than parallel
/// logins on one address ever need.
const CAS_ROUNDS: usize = 256;

/// How long a check waits before asking again for a slot held by checks in flight: about
/// the time of one password check.
const WAIT_STEP: Duration = Duration::from_millis(10);

/// The outcome of asking to check a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckPermit {
    /// The password may be checked; report the outcome with the same check id.
    Granted,
    /// The address is locked until then: the password must not be checked.
    Locked {
        /// When the lock ends.
        until: DateTime<Utc>,
    },
}

/// The lockout rule over a store of throttles.
#[derive(Clone)]
pub struct LoginThrottles {
    store: Arc<dyn AccountLockout>,
    policy: LockoutPolicy,
    keyer: ThrottleKeyer,
}

impl LoginThrottles {
    /// Throttles kept in `store`, under keys from `keyer`, following `policy`.
    pub fn new(store: Arc<dyn AccountLockout>, policy: LockoutPolicy, keyer: ThrottleKeyer) -> Self {
        Self { store, policy, keyer }
    }

    /// Waits for a slot to check a password for `email`, or reports the lock. A check that
    /// finds every slot held by checks in flight waits for one of them to end (at most
    /// their lease), because only failures may lock an address.
    pub async fn start(&self, email: &Email, check: CheckId, clock: &dyn Clock) -> Result<CheckPermit, StoreError> {
        let key = self.keyer.key_for(email);
        let give_up = clock.now() + chrono::Duration::from_std(CHECK_LEASE).unwrap_or(chrono::Duration::MAX);
        loop {
            let start = self
                .update(&key, clock, |state, now| match self.policy.start_check(state, check, now) {
                    CheckStart::Started(next) => (Some(next), Some(CheckPermit::Granted)),
                    CheckStart::Locked { until } => (None, Some(CheckPermit::Locked { until })),
                    CheckStart::Wait => (None, None),
                })
                .await?;
            match start {
                Some(permit) => return Ok(permit),
                None if clock.now() >= give_up => {
                    return Err(StoreError::Unavailable(anyhow::anyhow!(
                        "password checks for one address stayed busy for the whole check lease"
                    )));
                }
                None => clock.pause(WAIT_STEP).await,
            }
        }
    }

    /// Reports a wrong password (or an unknown address); returns the lock this failure
    /// started, if it started one.
    pub async fn failed(
        &self,
        email: &Email,
        check: CheckId,
        clock: &dyn Clock,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let key = self.keyer.key_for(email);
        self.update(&key, clock, |state, now| {
            let failed = self.policy.check_failed(state, check, now);
            (Some(failed.next), failed.locked_until)
        })
        .await
    }

    /// Reports the right password: the address's count and lock are cleared.
    pub async fn succeeded(&self, email: &Email, check: CheckId, clock: &dyn Clock) -> Result<(), StoreError> {
        let key = self.keyer.key_for(email);
        self.update(&key, clock, |state, now| (Some(self.policy.check_succeeded(state, check, now)), ())).await
    }

    /// Gives back the slot of a check that checked nothing (the hasher was unavailable),
    /// without counting a failure.
    pub async fn abandoned(&self, email: &Email, check: CheckId, clock: &dyn Clock) -> Result<(), StoreError> {
        let key = self.keyer.key_for(email);
        self.update(&key, clock, |state, now| (Some(self.policy.check_abandoned(state, check, now)), ())).await
    }

    /// Loads the throttle, lets `decide` compute the next state (if any) and an outcome,
    /// and stores the state with a compare-and-set, deciding again after a lost race.
    async fn update<R>(
        &self,
        key: &ThrottleKey,
        clock: &dyn Clock,
        decide: impl Fn(&LoginThrottle, DateTime<Utc>) -> (Option<LoginThrottle>, R),
    ) -> Result<R, StoreError> {
        for _ in 0..CAS_ROUNDS {
            let stored = self.store.load_throttle(key).await?;
            // Stores keep milliseconds; deciding on the same precision keeps every adapter
            // deciding alike.
            let now = domain::truncate_to_millis(clock.now());
            let (state, version) = match stored {
                Some(stored) => (stored.throttle, Some(stored.version)),
                None => (LoginThrottle::default(), None),
            };
            let (next, outcome) = decide(&state, now);
            let Some(next) = next else { return Ok(outcome) };
            let forget_after = self.policy.forget_after(&next, now);
            if self.store.save_throttle(key, &next, version, forget_after).await? {
                return Ok(outcome);
            }
        }
        Err(StoreError::Unavailable(anyhow::anyhow!("too much contention on one login throttle")))
    }
}
