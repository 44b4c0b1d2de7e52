#![no_main]
//! `cargo fuzz run headers`: see logic/headers.rs for what it asserts.

#[path = "../logic/mod.rs"]
mod logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| logic::headers::run(data));
