#![no_main]
//! `cargo fuzz run abi`: see logic/abi.rs for what it asserts.

#[path = "../logic/mod.rs"]
mod logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| logic::abi::run(data));
