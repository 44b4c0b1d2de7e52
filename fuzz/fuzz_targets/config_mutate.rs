#![no_main]
//! `cargo fuzz run config_mutate`: see logic/config_mutate.rs for what it asserts.

#[path = "../logic/mod.rs"]
mod logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| logic::config_mutate::run(data));
