//! Seal and open throughput of the data-object format against raw AES-256-GCM (ring),
//! on the same data in the same run. `cargo bench --bench format` (or scripts/bench).
//!
//! Set COFFRE_BENCH_MIB to change the size (default 1024).

use coffre::crypto::Dek;
use coffre::crypto::format::{self, HEADER_LEN, Header};
use coffre::data::v2::pack;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

const CHUNK: usize = 1 << 20;

fn main() {
    let mib: usize = std::env::var("COFFRE_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let data = fill(mib << 20);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let ring = best_of(3, || ring_seal(&data));
    let dek = Dek::generate();
    let header = Header::new(&dek, Uuid::new_v4(), 20).unwrap();
    let mut sealed = Vec::with_capacity(data.len() + data.len() / CHUNK * 16 + 1024);
    let seal = best_of(3, || {
        sealed.clear();
        let start = Instant::now();
        rt.block_on(format::seal(&dek, &header, &data[..], &mut sealed))
            .unwrap();
        start.elapsed()
    });
    let open = best_of(3, || {
        let start = Instant::now();
        rt.block_on(async {
            let mut sink = tokio::io::sink();
            format::open(&dek, &header, &sealed[HEADER_LEN..], &mut sink)
                .await
                .unwrap();
            sink.flush().await.unwrap();
        });
        start.elapsed()
    });

    let mbps = |d: Duration| data.len() as f64 / d.as_secs_f64() / 1e6;
    println!("data: {mib} MiB, 1 MiB chunks, best of 3");
    println!("ring AES-256-GCM (raw, in place): {:>8.0} MB/s", mbps(ring));
    println!(
        "coffre seal:                     {:>8.0} MB/s  ({:.2} x ring)",
        mbps(seal),
        mbps(seal) / mbps(ring)
    );
    println!(
        "coffre open:                     {:>8.0} MB/s  ({:.2} x ring)",
        mbps(open),
        mbps(open) / mbps(ring)
    );
    format2_stages(&data, &rt, mbps);
}

/// Format 2's steps one at a time, on one core: where a backup's CPU goes.
fn format2_stages(data: &[u8], rt: &tokio::runtime::Runtime, mbps: impl Fn(Duration) -> f64) {
    let mut lens = Vec::new();
    let chunk = best_of(3, || {
        lens.clear();
        let start = Instant::now();
        rt.block_on(async {
            let mut chunker = fastcdc::v2020::AsyncStreamCDC::with_level_and_seed(
                data,
                16384,
                65536,
                262144,
                fastcdc::v2020::Normalization::Level1,
                7,
            );
            let mut chunks = std::pin::pin!(chunker.as_stream());
            while let Some(c) = futures::StreamExt::next(&mut chunks).await {
                lens.push(c.unwrap().length);
            }
        });
        start.elapsed()
    });
    let key = [7u8; 32];
    let id = best_of(3, || {
        let start = Instant::now();
        let mut at = 0;
        for len in &lens {
            std::hint::black_box(blake3::keyed_hash(&key, &data[at..at + len]));
            at += len;
        }
        start.elapsed()
    });
    let session = Uuid::new_v4();
    let seal = best_of(3, || {
        let start = Instant::now();
        let mut at = 0;
        for len in &lens {
            let blob = pack::seal_blob(
                &key,
                session,
                &[0; 32],
                pack::Unsealed::new(&data[at..at + len]),
                None,
            );
            std::hint::black_box(blob);
            at += len;
        }
        start.elapsed()
    });
    println!(
        "format 2, one core: FastCDC (64 KiB) {:>6.0} MB/s, BLAKE3 ids {:>6.0} MB/s, chunk sealing (no compression) {:>6.0} MB/s",
        mbps(chunk),
        mbps(id),
        mbps(seal)
    );
}

fn best_of(n: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..n).map(|_| f()).min().unwrap()
}

/// Encrypt `data` in 1 MiB chunks in place with ring: the floor for any AES-256-GCM format.
fn ring_seal(data: &[u8]) -> Duration {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    for (i, chunk) in data.chunks(CHUNK).enumerate() {
        let buf = &mut buf[..chunk.len()];
        buf.copy_from_slice(chunk);
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&(i as u64).to_be_bytes());
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&[0u8; 92]),
                buf,
            )
            .unwrap();
        let _ = std::hint::black_box(tag);
    }
    start.elapsed()
}

fn fill(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = vec![0u8; len];
    for word in out.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
    }
    out
}
