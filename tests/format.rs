//! The data-object format: round trips at every chunk size and a tamper matrix.

use coffre::crypto::Dek;
use coffre::crypto::format::{
    self, FormatError, HEADER_LEN, Header, MAX_CHUNK_LOG2, MIN_CHUNK_LOG2, TAG_LEN,
};
use uuid::Uuid;

fn pattern(len: usize) -> Vec<u8> {
    // Not all zero and not periodic at any chunk size, so a swapped chunk would show.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn seal(dek: &Dek, header: &Header, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    format::seal(dek, header, plain, &mut out).await.unwrap();
    out
}

/// Open a whole data object: parse its header, then its chunks.
async fn open(dek: &Dek, sealed: &[u8]) -> Result<Vec<u8>, FormatError> {
    let mut reader = sealed;
    let header = Header::read_from(&mut reader).await?;
    let mut out = Vec::new();
    format::open(dek, &header, reader, &mut out).await?;
    Ok(out)
}

#[tokio::test]
async fn round_trips_every_size_class_at_every_chunk_size() {
    for chunk_log2 in MIN_CHUNK_LOG2..=MAX_CHUNK_LOG2 {
        let chunk = 1usize << chunk_log2;
        let cases = [
            ("empty", 0),
            ("one byte", 1),
            ("chunk - 1", chunk - 1),
            ("chunk", chunk),
            ("chunk + 1", chunk + 1),
            ("multi-chunk", 3 * chunk + 7),
        ];
        let big = pattern(3 * chunk + 7);
        for (name, len) in cases {
            let dek = Dek::generate();
            let header = Header::new(&dek, Uuid::new_v4(), chunk_log2).unwrap();
            let plain = &big[..len];
            let sealed = seal(&dek, &header, plain).await;
            let chunks = if len == 0 { 1 } else { len.div_ceil(chunk) };
            assert_eq!(
                sealed.len(),
                HEADER_LEN + len + chunks * TAG_LEN,
                "{name} at 2^{chunk_log2}: stored size"
            );
            let opened = open(&dek, &sealed).await.unwrap();
            assert!(
                opened == plain,
                "{name} at 2^{chunk_log2}: plaintext differs"
            );
        }
    }
}

#[tokio::test]
async fn seal_reports_payload_and_chunk_counts() {
    let dek = Dek::generate();
    let header = Header::new(&dek, Uuid::new_v4(), 16).unwrap();
    let plain = pattern(2 * 65536 + 5);
    let mut out = Vec::new();
    let stats = format::seal(&dek, &header, &plain[..], &mut out)
        .await
        .unwrap();
    assert_eq!(stats.payload_bytes, plain.len() as u64);
    assert_eq!(stats.chunks, 3);
}

#[test]
fn header_rejects_chunk_sizes_outside_the_format() {
    let dek = Dek::generate();
    assert!(matches!(
        Header::new(&dek, Uuid::nil(), 15),
        Err(FormatError::BadChunkSize(15))
    ));
    assert!(matches!(
        Header::new(&dek, Uuid::nil(), 25),
        Err(FormatError::BadChunkSize(25))
    ));
}

const CHUNK_LOG2: u8 = 16;
const CHUNK: usize = 1 << CHUNK_LOG2;
const STORED_CHUNK: usize = CHUNK + TAG_LEN;

/// A data object of three full chunks and a short last one, and what it holds.
struct Fixture {
    dek: Dek,
    plain: Vec<u8>,
    sealed: Vec<u8>,
}

async fn fixture() -> Fixture {
    let dek = Dek::generate();
    let header = Header::new(&dek, Uuid::new_v4(), CHUNK_LOG2).unwrap();
    let plain = pattern(3 * CHUNK + 1000);
    let sealed = seal(&dek, &header, &plain).await;
    assert_eq!(open(&dek, &sealed).await.unwrap(), plain);
    Fixture { dek, plain, sealed }
}

fn chunk_range(i: usize) -> std::ops::Range<usize> {
    let start = HEADER_LEN + i * STORED_CHUNK;
    start..start + STORED_CHUNK
}

async fn assert_rejected(f: &Fixture, tampered: &[u8], what: &str) -> FormatError {
    match open(&f.dek, tampered).await {
        Ok(out) => panic!("{what}: opened ({} bytes) instead of failing", out.len()),
        Err(e) => {
            assert!(e.is_integrity(), "{what}: {e} is not an integrity error");
            e
        }
    }
}

#[tokio::test]
async fn flipped_bit_anywhere_in_the_header_is_rejected() {
    let f = fixture().await;
    for offset in [0, 7, 8, 9, 10, 11, 12, 27, 28, 59, 60, 91] {
        let mut t = f.sealed.clone();
        t[offset] ^= 0x01;
        assert_rejected(&f, &t, &format!("header byte {offset}")).await;
    }
}

#[tokio::test]
async fn flipped_bit_in_any_chunk_or_tag_names_the_chunk() {
    let f = fixture().await;
    let last_start = HEADER_LEN + 3 * STORED_CHUNK;
    let positions = [
        (0, HEADER_LEN),                         // first ciphertext byte of chunk 0
        (1, HEADER_LEN + STORED_CHUNK + 500),    // inside chunk 1
        (2, HEADER_LEN + 3 * STORED_CHUNK - 1),  // last tag byte of chunk 2
        (1, HEADER_LEN + 2 * STORED_CHUNK - 10), // inside the tag of chunk 1
        (3, last_start + 3),                     // inside the short last chunk
        (3, f.sealed.len() - 1),                 // the last chunk's tag
    ];
    for (index, offset) in positions {
        let mut t = f.sealed.clone();
        t[offset] ^= 0x80;
        let e = assert_rejected(&f, &t, &format!("byte {offset}")).await;
        assert!(
            matches!(e, FormatError::ChunkAuth { index: i } if i as usize == index),
            "byte {offset}: {e}"
        );
    }
}

#[tokio::test]
async fn truncated_at_a_chunk_boundary_is_rejected() {
    let f = fixture().await;
    for chunks_kept in 1..=3 {
        let t = &f.sealed[..HEADER_LEN + chunks_kept * STORED_CHUNK];
        let e = assert_rejected(&f, t, &format!("{chunks_kept} chunks kept")).await;
        assert!(matches!(e, FormatError::Truncated(_)), "{e}");
    }
    let e = assert_rejected(&f, &f.sealed[..HEADER_LEN], "header only").await;
    assert!(matches!(e, FormatError::Truncated(_)), "{e}");
}

#[tokio::test]
async fn truncated_inside_a_chunk_or_the_header_is_rejected() {
    let f = fixture().await;
    for len in [
        10,
        HEADER_LEN - 1,
        HEADER_LEN + 5,
        HEADER_LEN + STORED_CHUNK + 100,
        f.sealed.len() - 1,
        f.sealed.len() - TAG_LEN,
    ] {
        assert_rejected(&f, &f.sealed[..len], &format!("cut at {len}")).await;
    }
}

#[tokio::test]
async fn dropped_duplicated_and_swapped_chunks_are_rejected() {
    let f = fixture().await;
    let s = &f.sealed;
    let header = &s[..HEADER_LEN];
    let c = |i: usize| &s[chunk_range(i)];
    let last = &s[HEADER_LEN + 3 * STORED_CHUNK..];

    let dropped = [header, c(0), c(2), last].concat();
    assert_rejected(&f, &dropped, "chunk 1 dropped").await;
    let duplicated = [header, c(0), c(1), c(1), c(2), last].concat();
    assert_rejected(&f, &duplicated, "chunk 1 duplicated").await;
    let swapped = [header, c(1), c(0), c(2), last].concat();
    assert_rejected(&f, &swapped, "chunks 0 and 1 swapped").await;
    let last_moved = [header, c(0), c(1), last, c(2)].concat();
    assert_rejected(&f, &last_moved, "last chunk moved forward").await;
}

#[tokio::test]
async fn bytes_appended_after_the_last_chunk_are_rejected() {
    let f = fixture().await;
    for extra in [1usize, TAG_LEN, STORED_CHUNK, STORED_CHUNK + 1] {
        let mut t = f.sealed.clone();
        t.extend(std::iter::repeat_n(0u8, extra));
        assert_rejected(&f, &t, &format!("{extra} bytes appended")).await;
    }
    // A copy of the real last chunk appended after itself.
    let last = f.sealed[HEADER_LEN + 3 * STORED_CHUNK..].to_vec();
    let t = [f.sealed.clone(), last].concat();
    assert_rejected(&f, &t, "last chunk repeated").await;
}

#[tokio::test]
async fn another_backups_key_fails_the_commitment() {
    let f = fixture().await;
    let other = Dek::generate();
    let e = open(&other, &f.sealed).await.unwrap_err();
    assert!(matches!(e, FormatError::CommitmentMismatch), "{e}");
}

#[tokio::test]
async fn a_full_size_last_chunk_round_trips_and_losing_it_is_detected() {
    // Exactly two chunks: the second is full-size and flagged last.
    let dek = Dek::generate();
    let header = Header::new(&dek, Uuid::new_v4(), CHUNK_LOG2).unwrap();
    let plain = pattern(2 * CHUNK);
    let sealed = seal(&dek, &header, &plain).await;
    assert_eq!(open(&dek, &sealed).await.unwrap(), plain);
    let e = open(&dek, &sealed[..HEADER_LEN + STORED_CHUNK])
        .await
        .unwrap_err();
    assert!(matches!(e, FormatError::Truncated(_)), "{e}");
}

#[tokio::test]
async fn untampered_fixture_still_opens() {
    // Guards the tamper tests: they must fail because of the tampering, not the fixture.
    let f = fixture().await;
    assert_eq!(open(&f.dek, &f.sealed).await.unwrap(), f.plain);
}
