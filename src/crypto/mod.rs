//! Cryptography: the data-object format (`format`), key stanzas (`keys`) and the primitives both share.

pub mod format;
pub mod keys;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// A fresh per-backup data-encryption key. Zeroized on drop (every copy); never printed.
#[derive(Clone)]
pub struct Dek(Zeroizing<[u8; 32]>);

impl Dek {
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        fill_random(bytes.as_mut());
        Self(bytes)
    }

    pub fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Dek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dek(..)")
    }
}

/// Fill `buf` from the operating system's CSPRNG.
pub fn fill_random(buf: &mut [u8]) {
    // Without a working OS RNG no key, nonce or salt can be made safely: stop.
    getrandom::fill(buf).expect("the operating system random number generator failed");
}

pub fn random_array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    fill_random(&mut out);
    out
}

/// HKDF-SHA-256 with the info given as parts that are concatenated.
pub fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[&[u8]], out: &mut [u8]) {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand_multi_info(info, out)
        .expect("HKDF output length is a small constant");
}
