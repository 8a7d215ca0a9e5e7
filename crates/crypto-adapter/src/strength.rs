//! How strong configured secrets and hashing parameters are, so that production can refuse
//! weak ones at startup rather than run with them.

/// The OWASP Password Storage Cheat Sheet's argon2id configurations, as
/// `(memory KiB, iterations)` with one lane; any of them is an acceptable minimum.
pub const OWASP_ARGON2ID_MINIMUMS: [(u32, u32); 5] = [(47_104, 1), (19_456, 2), (12_288, 3), (9_216, 4), (7_168, 5)];

/// Whether argon2id with this memory and these iterations is at least as costly as one of
/// the OWASP minimum configurations.
pub fn meets_owasp_argon2id_minimum(memory_kib: u32, iterations: u32) -> bool {
    OWASP_ARGON2ID_MINIMUMS.iter().any(|&(memory, passes)| memory_kib >= memory && iterations >= passes)
}

/// The least estimated entropy, in bits, of a signing key that production accepts.
pub const MIN_KEY_ENTROPY_BITS: f64 = 128.0;

/// An upper estimate of a key's entropy in bits: its length times the Shannon entropy of
/// its byte frequencies, and zero for a key that repeats a shorter pattern. It catches
/// repeated, patterned and small-alphabet keys; it cannot prove that a key is random, so
/// keys should come from a generator (`openssl rand -base64 48`).
pub fn estimated_key_entropy_bits(key: &[u8]) -> f64 {
    if key.is_empty() || repeats_a_shorter_pattern(key) {
        return 0.0;
    }
    let mut counts = [0usize; 256];
    for &byte in key {
        counts[usize::from(byte)] += 1;
    }
    let n = key.len() as f64;
    let per_byte: f64 = counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n).map(|p| -p * p.log2()).sum();
    per_byte * n
}

/// Whether the key is some shorter block written out more than once (`abcabcabc`).
fn repeats_a_shorter_pattern(key: &[u8]) -> bool {
    (1..=key.len() / 2).any(|period| key.iter().zip(&key[period..]).all(|(a, b)| a == b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_below_every_owasp_configuration_is_weak() {
        let check = |memory: u32, passes: u32, expected: bool| {
            assert_eq!(meets_owasp_argon2id_minimum(memory, passes), expected, "m={memory} t={passes}");
        };
        check(19_456, 2, true);
        check(47_104, 1, true);
        check(7_168, 5, true);
        check(65_536, 3, true);
        check(8, 1, false);
        check(19_456, 1, false);
        check(7_167, 10, false);
        check(12_288, 2, false);
    }

    #[test]
    fn repeated_patterned_and_short_alphabet_keys_are_low_entropy() {
        let check = |key: &[u8], strong: bool| {
            let bits = estimated_key_entropy_bits(key);
            assert_eq!(bits >= MIN_KEY_ENTROPY_BITS, strong, "{} bits for {:?}", bits, String::from_utf8_lossy(key));
        };
        check(&[b'x'; 36], false);
        check(b"abababababababababababababababababab", false);
        check(b"0123456789abcdef0123456789abcdef", false);
        check(b"00000000000000001111111111111111", false);
        // `openssl rand -base64 32` and `-hex 32`.
        check(b"dsoXOdHABkL7Afs6uHjbv4U3hIvzDpfE5Erx7zCevV4=", true);
        check(b"1ff3b178e71156ccf2363e56e6846bb6d6902620c3e53e0597411ad5e734cd7a", true);
        check(b"J9F6+gvZaD9f5I+24qp9QHMQWmE7JAQH", true);
    }
}
