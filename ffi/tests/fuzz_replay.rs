//! Replays the checked-in fuzz corpora (`fuzz/corpus/<target>/`) on the stable toolchain
//! through the same logic the libFuzzer targets run (`fuzz/logic/`), so `make test` keeps
//! every input the fuzzers found (crashes fixed included) passing. `make fuzz` runs the
//! targets themselves (nightly). The `abi` target has its own file: it counts live streams,
//! which needs a process without other tests' streams.

#[path = "../../fuzz/logic/mod.rs"]
mod logic;

use std::path::{Path, PathBuf};

/// Every file of `fuzz/corpus/<target>`, sorted.
pub fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    for f in corpus(target) {
        let data = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if let Err(e) = std::panic::catch_unwind(|| run(&data)) {
            eprintln!("fuzz corpus input {} fails (reproduce: cd fuzz && cargo +nightly fuzz run {target} {})", f.display(), f.display());
            std::panic::resume_unwind(e);
        }
    }
}

#[test]
fn config_corpus() {
    replay("config", logic::config::run);
}

#[test]
fn config_mutate_corpus() {
    replay("config_mutate", logic::config_mutate::run);
}

#[test]
fn path_corpus() {
    replay("path", logic::path::run);
}

#[test]
fn router_corpus() {
    replay("router", logic::router::run);
}

#[test]
fn headers_corpus() {
    replay("headers", logic::headers::run);
}
