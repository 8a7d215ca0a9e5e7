//! The credential ports: [`Argon2Hasher`] hashes passwords with argon2id on tokio's blocking
//! pool, at most a bounded number at once; [`JwtIssuer`] issues and verifies HS256 access
//! tokens with the algorithm pinned.

mod hasher;
mod jwt;

pub use hasher::{Argon2Hasher, HashingLimits};
pub use jwt::{JwtIssuer, MIN_KEY_BYTES, SigningKey};
