//! Fuzz target `listen_address`: see `pipehttp_fuzz::listen_address` for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pipehttp_fuzz::listen_address(data));
