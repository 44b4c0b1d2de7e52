#![no_main]
//! `cargo fuzz run path`: see logic/path.rs for what it asserts.

#[path = "../logic/mod.rs"]
mod logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| logic::path::run(data));
