#![no_main]
//! `cargo fuzz run router`: see logic/router.rs for what it asserts.

#[path = "../logic/mod.rs"]
mod logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| logic::router::run(data));
