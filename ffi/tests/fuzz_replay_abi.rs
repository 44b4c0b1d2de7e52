//! Replays `fuzz/corpus/abi/` (the C ABI driven by call sequences) on stable: its own test
//! binary, as the target checks the process's live stream count. A panic caught at the ABI
//! (which a host would see as a 500) fails the replay too.

#[path = "../../fuzz/logic/mod.rs"]
mod logic;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

static PANICS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn abi_corpus() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info)
    }));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/abi");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("fuzz/corpus/abi").map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert!(!files.is_empty());
    for f in files {
        let data = std::fs::read(&f).expect("corpus file");
        let before = PANICS.load(Ordering::SeqCst);
        let r = std::panic::catch_unwind(|| logic::abi::run(&data));
        assert!(r.is_ok() && PANICS.load(Ordering::SeqCst) == before, "fuzz corpus input {} panics", f.display());
    }
}
