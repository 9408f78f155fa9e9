#![no_main]

// Each target uses one function of the shared file.
#[allow(dead_code)]
#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::stanzas(data));
