//! What the fuzzers feed: the manifest parser, the key-stanza parser (with unwrapping), and
//! the chunk reader. Shared by the bounded run in the test suite (tests/fuzz.rs) and the
//! cargo-fuzz targets (tests/fuzz/fuzz_targets). Each must return for any input, without
//! panicking, hanging or allocating without bound.

use coffre::crypto::Dek;
use coffre::crypto::format::{self, HEADER_LEN, Header};
use coffre::crypto::keys::{self, Identity, Passphrase, Secret, Stanza, SymmetricKey};
use coffre::manifest::{FORMAT_V1, Layout, MacKey, Manifest, SourceInfo, StoredManifest, V1Layout};
use uuid::Uuid;
use zeroize::Zeroizing;

/// Fixed keys, so that seeds made with them get past the key checks into the code behind.
fn dek() -> Dek {
    Dek::from_bytes(Zeroizing::new([7u8; 32]))
}

fn secrets() -> [Secret; 2] {
    let identity =
        Identity::parse("coffre-x25519-identity-v1:CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=")
            .expect("a valid identity");
    [
        Secret::Key(SymmetricKey::from_bytes(Zeroizing::new([8u8; 32]))),
        Secret::Identity(identity),
    ]
}

fn passphrase() -> Secret {
    let params = keys::Argon2Params {
        m_kib: 8,
        t: 1,
        p: 1,
    };
    let text = Passphrase::new(Zeroizing::new("fuzz".into())).expect("not empty");
    Secret::Passphrase(text, params)
}

pub fn manifest(data: &[u8]) {
    if let Ok(stored) = StoredManifest::parse(data) {
        let _ = stored.verify_mac(MacKey::V1(&dek(), &[0u8; 32]));
        let _ = stored.verify_mac(MacKey::V2(&dek()));
        let _ = stored.with_keys(stored.v1_keys().to_vec());
    }
}

pub fn stanzas(data: &[u8]) {
    let Ok(stanzas) = serde_json::from_slice::<Vec<Stanza>>(data) else {
        return;
    };
    let _ = keys::unwrap(&stanzas, &secrets(), Uuid::nil());
    // Passphrases only where every derivation is cheap: the limits themselves are what the
    // other inputs test, and a fuzzer must not spend seconds on one input.
    let cheap = stanzas
        .iter()
        .filter_map(Stanza::argon2_params)
        .all(|p| p.m_kib <= 64 && p.t <= 2 && p.p <= 2);
    if cheap {
        let _ = keys::unwrap(&stanzas, &[passphrase()], Uuid::nil());
    }
}

pub fn chunks(data: &[u8]) {
    let Some(head) = data.get(..HEADER_LEN) else {
        return;
    };
    let Ok(header) = Header::parse(head.try_into().expect("HEADER_LEN bytes")) else {
        return;
    };
    let (dek, mut sink) = (dek(), tokio::io::sink());
    let _ =
        futures::executor::block_on(format::open(&dek, &header, &data[HEADER_LEN..], &mut sink));
}

/// Valid inputs for each target, to mutate from.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let id = Uuid::from_bytes([3u8; 16]);
    let mut seeds = Vec::new();
    let mut stanzas: Vec<Stanza> = secrets()
        .iter()
        .map(|s| keys::wrap(s, &dek(), id).expect("wraps"))
        .collect();
    stanzas.push(keys::wrap(&passphrase(), &dek(), id).expect("wraps"));
    seeds.push(("stanzas", serde_json::to_vec(&stanzas).expect("serializes")));
    let manifest = Manifest {
        format: FORMAT_V1.into(),
        backup_id: id,
        job: "fuzz".into(),
        source: SourceInfo {
            kind: "postgres".into(),
            database: Some("ehr".into()),
            ..SourceInfo::default()
        },
        started_at: chrono::DateTime::UNIX_EPOCH,
        finished_at: chrono::DateTime::UNIX_EPOCH,
        compression: "zstd".into(),
        plaintext_bytes: 3,
        stored_bytes: 111,
        chunks: 1,
        retain_until: None,
        lock_mode: None,
        mac: String::new(),
    };
    let layout = Layout::V1(V1Layout {
        chunk_log2: 16,
        payload_bytes: 3,
        data_sha256: "00".repeat(32),
        keys: stanzas,
    });
    seeds.push((
        "manifest",
        manifest
            .seal(&layout, MacKey::V1(&dek(), &[0u8; 32]))
            .expect("seals")
            .0,
    ));
    for len in [0usize, 1, 65536, 65537, 200_000] {
        let header = Header::new(&dek(), id, 16).expect("valid chunk size");
        let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut sealed = Vec::new();
        futures::executor::block_on(format::seal(&dek(), &header, plain.as_slice(), &mut sealed))
            .expect("seals");
        seeds.push(("chunks", sealed));
    }
    seeds
}
