//! Fuzz target `config_toml`: see `pipehttp_fuzz::config_toml` for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pipehttp_fuzz::config_toml(data));
