//! The credential ports: [`Argon2Hasher`] hashes passwords with argon2id on its own
//! idle-priority threads, at most a bounded number at once; [`JwtIssuer`] issues and
//! verifies HS256 access tokens with the algorithm pinned; the strength checks tell
//! production settings from weak ones; [`AeadVault`] seals tenant users' passwords.

mod hasher;
mod jwt;
mod strength;
mod vault;

pub use hasher::{Argon2Hasher, HashingLimits};
pub use jwt::{CLOCK_SKEW_LEEWAY_SECONDS, JwtIssuer, MIN_KEY_BYTES, SigningKey};
pub use strength::{
    MIN_KEY_ENTROPY_BITS, OWASP_ARGON2ID_MINIMUMS, estimated_key_entropy_bits, meets_owasp_argon2id_minimum,
};
pub use vault::{AeadVault, MIN_VAULT_KEY_BYTES};
