//! The vault: AES-256-GCM under a key derived (HKDF-SHA256) from the service's sealing key,
//! a random nonce per seal, and the secret's context (what it belongs to) as associated
//! data, so a sealed secret opens only for what it was sealed for.
//!
//! Layout of a sealed secret: a version byte (1), the 12-byte nonce, the ciphertext and its
//! 16-byte tag.

use anyhow::{anyhow, bail};
use domain::SealedSecret;
use ports::CredentialVault;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::SecretString;

/// The layout's version.
const VERSION: u8 = 1;

/// The shortest sealing key accepted, in bytes.
pub const MIN_VAULT_KEY_BYTES: usize = 32;

/// Seals secrets under one key.
pub struct AeadVault {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for AeadVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadVault(..)")
    }
}

/// The length of the derived AES-256 key, as HKDF is asked for it.
struct KeyLength;

impl hkdf::KeyType for KeyLength {
    fn len(&self) -> usize {
        AES_256_GCM.key_len()
    }
}

impl AeadVault {
    /// A vault whose key is derived from `secret` (at least [`MIN_VAULT_KEY_BYTES`] bytes,
    /// as the settings give it). The derivation is fixed, so every instance given the same
    /// secret opens what the others sealed.
    pub fn new(secret: &[u8]) -> anyhow::Result<Self> {
        if secret.len() < MIN_VAULT_KEY_BYTES {
            bail!("the sealing key must be at least {MIN_VAULT_KEY_BYTES} bytes (got {})", secret.len());
        }
        let mut key = [0u8; 32];
        hkdf::Salt::new(hkdf::HKDF_SHA256, b"orgsvc sealed secrets")
            .extract(secret)
            .expand(&[b"aes-256-gcm v1"], KeyLength)
            .and_then(|okm| okm.fill(&mut key))
            .map_err(|_| anyhow!("deriving the sealing key"))?;
        let key = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| anyhow!("the sealing key"))?;
        Ok(Self { key: LessSafeKey::new(key), random: SystemRandom::new() })
    }
}

impl CredentialVault for AeadVault {
    fn seal(&self, context: &str, secret: &str) -> SealedSecret {
        let mut nonce = [0u8; NONCE_LEN];
        // The operating system's generator does not fail on the platforms the service runs
        // on; a nonce must never repeat, so a failure is not papered over.
        self.random.fill(&mut nonce).unwrap_or_else(|_| panic!("the system's random generator failed"));
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + secret.len() + AES_256_GCM.tag_len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        let mut text = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut text)
            .unwrap_or_else(|_| panic!("a secret is far shorter than AES-GCM's limit"));
        sealed.extend_from_slice(&text);
        SealedSecret::from_bytes(sealed)
    }

    fn open(&self, context: &str, sealed: &SealedSecret) -> Option<SecretString> {
        let (&version, rest) = sealed.as_bytes().split_first()?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, text) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut text = text.to_vec();
        let opened = self.key.open_in_place(nonce, Aad::from(context.as_bytes()), &mut text).ok()?;
        String::from_utf8(opened.to_vec()).ok().map(SecretString::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const SECRET: &str = "Tenant-password_0123456789abcdefghijkl";

    #[test]
    fn a_sealed_secret_opens_only_in_its_context_under_its_key_and_unaltered() {
        let vault = AeadVault::new(&[7; 32]).expect("vault");
        let sealed = vault.seal("tenant user a", SECRET);
        assert_eq!(vault.open("tenant user a", &sealed).expect("opens").expose_secret(), SECRET);
        // Every instance with the same key opens it.
        assert!(AeadVault::new(&[7; 32]).expect("vault").open("tenant user a", &sealed).is_some());
        assert!(vault.open("tenant user b", &sealed).is_none(), "bound to its context");
        assert!(AeadVault::new(&[8; 32]).expect("vault").open("tenant user a", &sealed).is_none(), "another key");
        for at in 0..sealed.as_bytes().len() {
            let mut altered = sealed.as_bytes().to_vec();
            altered[at] ^= 1;
            assert!(vault.open("tenant user a", &SealedSecret::from_bytes(altered)).is_none(), "byte {at} altered");
        }
        assert!(vault.open("tenant user a", &SealedSecret::from_bytes(Vec::new())).is_none());
        assert!(vault.open("tenant user a", &SealedSecret::from_bytes(sealed.as_bytes()[..20].to_vec())).is_none());
    }

    #[test]
    fn sealing_twice_differs_and_shows_nothing_of_the_secret() {
        let vault = AeadVault::new(b"a sealing key of more than thirty-two bytes").expect("vault");
        let (a, b) = (vault.seal("webhook x", SECRET), vault.seal("webhook x", SECRET));
        assert_ne!(a, b, "a fresh nonce each time");
        let text = String::from_utf8_lossy(a.as_bytes());
        assert!(!text.contains("Tenant-password"), "{text}");
        assert_eq!(format!("{a:?}"), "SealedSecret(..)");
    }

    #[test]
    fn short_keys_are_refused() {
        let error = AeadVault::new(&[1; 31]).expect_err("too short").to_string();
        assert!(error.contains("at least 32 bytes"), "{error}");
    }
}
