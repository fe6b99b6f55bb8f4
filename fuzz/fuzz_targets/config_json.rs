//! Fuzz target `config_json`: see `pipehttp_fuzz::config_json` for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pipehttp_fuzz::config_json(data));
