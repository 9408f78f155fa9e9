//! A bounded fuzz run in the test suite: mutations of valid manifests, key stanzas and data
//! objects (bit flips, truncations, insertions, splices, random bytes) fed to the parsers.
//! No input may panic, take more than a second, or allocate more than 64 MiB at once (the
//! largest legitimate buffer is two 16 MiB chunks). `COFFRE_FUZZ_INPUTS` sets the number of
//! inputs per target (default 100,000); tests/fuzz/ runs the same targets under cargo-fuzz.

#[path = "fuzz/targets.rs"]
mod targets;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counts live heap bytes and their peak, to catch unbounded allocation.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let live = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MAX_INPUT_BYTES: usize = 64 << 20;
const MAX_INPUT_TIME: Duration = Duration::from_secs(1);

/// xorshift64*: reproducible inputs from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Interesting values for a mutated byte or number.
const SPECIALS: [&[u8]; 9] = [
    b"0",
    b"-1",
    b"4294967295",
    b"18446744073709551616",
    b"1e999",
    b"null",
    b"[[[[[[[[",
    b"\"",
    b"\\u0000",
];

fn mutate(input: &mut Vec<u8>, other: &[u8], rng: &mut Rng) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(7) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 => input.truncate(at),
            2 => {
                let len = rng.below(64);
                let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                input.splice(at..at, bytes);
            }
            3 if !input.is_empty() => {
                let end = (at + rng.below(64)).min(input.len());
                input.drain(at.min(end)..end);
            }
            4 if !other.is_empty() => {
                let from = rng.below(other.len());
                let len = rng.below(other.len() - from + 1);
                input.splice(at..at, other[from..from + len].iter().copied());
            }
            5 => {
                let special = SPECIALS[rng.below(SPECIALS.len())];
                input.splice(at..at, special.iter().copied());
            }
            _ if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] = rng.next() as u8;
            }
            _ => {}
        }
    }
}

/// One parser under test.
type Target = fn(&[u8]);

fn run_one(target: Target, input: &[u8]) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let started = Instant::now();
    target(input);
    let took = started.elapsed();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    let shown = String::from_utf8_lossy(&input[..input.len().min(300)]).into_owned();
    assert!(took < MAX_INPUT_TIME, "took {took:?} on {shown:?}");
    assert!(
        peak < MAX_INPUT_BYTES,
        "allocated {peak} bytes on {shown:?}"
    );
}

#[test]
fn parsers_survive_mutated_manifests_stanzas_and_data_objects() {
    let inputs: usize = std::env::var("COFFRE_FUZZ_INPUTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let seeds = targets::seeds();
    // scripts/fuzz starts cargo-fuzz from these.
    if let Ok(dir) = std::env::var("COFFRE_FUZZ_SEEDS") {
        for (i, (name, seed)) in seeds.iter().enumerate() {
            let dir = std::path::Path::new(&dir).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
        }
    }
    let all: Vec<&[u8]> = seeds.iter().map(|(_, s)| s.as_slice()).collect();
    let targets: [(&str, Target); 3] = [
        ("manifest", targets::manifest),
        ("stanzas", targets::stanzas),
        ("chunks", targets::chunks),
    ];
    for (name, target) in targets {
        let own: Vec<&[u8]> = seeds
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, s)| s.as_slice())
            .collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        for seed in &own {
            run_one(target, seed);
        }
        for _ in 0..inputs {
            let mut input = own[rng.below(own.len())].to_vec();
            let other = all[rng.below(all.len())];
            mutate(&mut input, other, &mut rng);
            run_one(target, &input);
        }
    }
}
