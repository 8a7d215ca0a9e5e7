//! Refresh tokens: what the use cases hand out and what the stores know them by.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
