#![no_main]
//! `cargo fuzz run config`: see logic/config.rs for what it asserts.

#[path = "../logic/mod.rs"]
mod logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| logic::config::run(data));
