//! Generated passwords: random, of the target's length, from an alphabet that needs no quoting
//! in a URL, a libpq or JDBC connection string, an env file or a shell.

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Alphanumerics and the characters RFC 3986 leaves unreserved.
const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordPolicy {
    #[serde(default = "default_length")]
    pub length: usize,
    #[serde(default)]
    pub alphabet: Alphabet,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alphabet {
    /// A-Z, a-z, 0-9: safe everywhere.
    #[default]
    Alphanumeric,
    /// Also `-`, `_`, `.` and `~`.
    UrlSafe,
}

fn default_length() -> usize {
    32
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            length: default_length(),
            alphabet: Alphabet::default(),
        }
    }
}

impl PasswordPolicy {
    /// At least 128 bits of entropy, and short enough for every server's limit.
    pub fn check(&self, what: &str) -> Result<()> {
        if !(22..=128).contains(&self.length) {
            return Err(Error::config(format!(
                "{what}: password length {} is outside 22..=128 (22 alphanumerics hold 128 bits)",
                self.length
            )));
        }
        Ok(())
    }

    pub fn generate(&self) -> Zeroizing<String> {
        let alphabet = match self.alphabet {
            Alphabet::Alphanumeric => ALNUM,
            Alphabet::UrlSafe => URL_SAFE,
        };
        // Rejection sampling: bytes at or above the largest multiple of the alphabet's size
        // would favour its first characters.
        let limit = 256 - 256 % alphabet.len();
        let mut out = Zeroizing::new(String::with_capacity(self.length));
        let mut pool = Zeroizing::new([0u8; 64]);
        while out.len() < self.length {
            crate::crypto::fill_random(pool.as_mut());
            for &b in pool.iter().filter(|&&b| (b as usize) < limit) {
                if out.len() == self.length {
                    break;
                }
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
        out
    }
}

/// An API key: `prefix` and `bytes` random bytes, URL-safe base64 without padding.
pub fn api_key(prefix: &str, bytes: usize) -> Zeroizing<String> {
    use base64::Engine;
    let mut random = Zeroizing::new(vec![0u8; bytes]);
    crate::crypto::fill_random(&mut random);
    let mut key = Zeroizing::new(String::with_capacity(prefix.len() + bytes * 4 / 3 + 2));
    key.push_str(prefix);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(random.as_slice(), &mut key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_carry_their_prefix_and_256_bits() {
        let a = api_key("sk_live_", 32);
        let b = api_key("sk_live_", 32);
        assert_ne!(a, b);
        let body = a.strip_prefix("sk_live_").unwrap();
        assert_eq!(body.len(), 43);
        assert!(
            body.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn passwords_follow_the_policy_and_differ() {
        let policy = PasswordPolicy {
            length: 40,
            alphabet: Alphabet::UrlSafe,
        };
        let a = policy.generate();
        let b = policy.generate();
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|c| URL_SAFE.contains(&c)));
        assert_ne!(a, b);
        let alnum = PasswordPolicy::default().generate();
        assert!(alnum.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert!(
            PasswordPolicy {
                length: 8,
                ..policy
            }
            .check("t")
            .is_err()
        );
        // Every character of the alphabet turns up: no bias cuts one off.
        let many: String = (0..50).map(|_| policy.generate().to_string()).collect();
        assert!(URL_SAFE.iter().all(|c| many.as_bytes().contains(c)));
    }
}
