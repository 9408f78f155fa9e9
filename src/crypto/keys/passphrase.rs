//! Passphrases: a key derived with argon2id, whose cost parameters are bounded both ways (a
//! manifest's parameters are not under its mac, so a hostile one must not exhaust memory or run
//! for years; configs are held to the same limits, so coffre never writes what it would refuse
//! to read).

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::SymmetricKey;
use crate::error::{Error, Result};

/// Limits on argon2id parameters, read from manifests where they are not under the mac: a
/// hostile or damaged stanza must not exhaust memory or run for years. Configs are held to the
/// same limits, so coffre never writes a stanza it would refuse to read.
pub const MAX_ARGON2_M_KIB: u32 = 1024 * 1024;
pub const MAX_ARGON2_P: u32 = 16;
/// Work of one derivation, in KiB of memory times passes: 4 GiB-passes (1 GiB with t = 4,
/// 64 MiB with t = 64), a few seconds. The default (64 MiB, t = 3) is 192 MiB-passes.
pub const MAX_ARGON2_WORK: u64 = 4 * 1024 * 1024;
/// Key derivation one attempt to open a backup may spend, in all: passphrases are tried on the
/// cheapest stanzas first, and the attempt stops here.
pub const MAX_UNLOCK_WORK: u64 = 2 * MAX_ARGON2_WORK;
/// Passphrase derivations one attempt to open a backup may run.
pub const MAX_UNLOCK_DERIVATIONS: usize = 16;

/// A passphrase. Zeroized on drop; never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    pub fn new(text: Zeroizing<String>) -> Result<Self> {
        if text.is_empty() {
            return Err(Error::config("the passphrase is empty"));
        }
        Ok(Self(text))
    }

    /// The key argon2id derives from this passphrase with `salt` and `params` (seconds of
    /// work at the defaults: run it off the async runtime).
    pub fn derive(&self, salt: &[u8], params: Argon2Params) -> Result<SymmetricKey> {
        let argon_params = Params::new(params.m_kib, params.t, params.p, Some(32))
            .map_err(|e| Error::config(format!("argon2id parameters {params:?}: {e}")))?;
        let mut out = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params)
            .hash_password_into(self.0.as_bytes(), salt, out.as_mut())
            .map_err(|e| Error::internal(format!("argon2id failed: {e}")))?;
        Ok(SymmetricKey::from_bytes(out))
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// Cost parameters of argon2id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Argon2Params {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Argon2Params {
    /// KiB of memory times passes.
    pub fn work(&self) -> u64 {
        u64::from(self.m_kib) * u64::from(self.t)
    }

    /// Why these parameters are outside what coffre reads and writes, if they are.
    pub fn check(&self) -> std::result::Result<(), String> {
        let Argon2Params { m_kib, t, p } = *self;
        if t == 0 || p == 0 || p > MAX_ARGON2_P {
            return Err(format!("t must be at least 1 and p 1..={MAX_ARGON2_P}"));
        }
        if m_kib < 8 * p || m_kib > MAX_ARGON2_M_KIB {
            return Err(format!("m_kib must be 8*p..={MAX_ARGON2_M_KIB} (1 GiB)"));
        }
        if self.work() > MAX_ARGON2_WORK {
            return Err(format!(
                "m_kib * t is {}, over {MAX_ARGON2_WORK} (1 GiB with t = 4, 64 MiB with t = 64)",
                self.work()
            ));
        }
        Ok(())
    }
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self {
            m_kib: 65536,
            t: 3,
            p: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_limits_accept_the_default_and_refuse_excess() {
        assert!(Argon2Params::default().check().is_ok());
        for bad in [
            (0, 1, 1),
            (65536, 0, 1),
            (65536, 3, 17),
            (65536, 65, 1),
            (MAX_ARGON2_M_KIB * 2, 1, 1),
        ] {
            let params = Argon2Params {
                m_kib: bad.0,
                t: bad.1,
                p: bad.2,
            };
            assert!(params.check().is_err(), "{params:?}");
        }
    }
}
