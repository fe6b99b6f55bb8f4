//! Fuzz target `request_target`: see `pipehttp_fuzz::request_target` for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pipehttp_fuzz::request_target(data));
