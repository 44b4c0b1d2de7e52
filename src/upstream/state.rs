//! Where a config's mutable upstream state lives.
//!
//! Everything the load balancers change at run time (round-robin cursors, host health,
//! per-host request and failure counters) is a flat array of `AtomicU64` words. By default
//! the words live in this process. A host whose workers are separate processes (nginx)
//! can move them into memory it shares between its workers ([`StateBlock::attach`]), so
//! round robin and health mean the same across workers as across Envoy's threads.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// Words at the start of the block: a magic/version word and the word count.
const HEADER_WORDS: usize = 2;
const MAGIC: u64 = 0x4d4f_534e_5354_0001; // "MOSNST" v1

/// The state words of one config.
pub struct StateBlock {
    base: AtomicPtr<AtomicU64>,
    words: usize,
    owned: Box<[AtomicU64]>,
}

impl std::fmt::Debug for StateBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateBlock").field("words", &self.words).field("shared", &self.is_shared()).finish()
    }
}

impl StateBlock {
    /// A block of `words` state words (plus the header), in process memory.
    pub fn new(words: usize) -> StateBlock {
        let total = HEADER_WORDS + words;
        let owned: Box<[AtomicU64]> = (0..total).map(|_| AtomicU64::new(0)).collect();
        owned[0].store(MAGIC, Ordering::Relaxed);
        owned[1].store(total as u64, Ordering::Relaxed);
        let base = AtomicPtr::new(owned.as_ptr() as *mut AtomicU64);
        StateBlock { base, words: total, owned }
    }

    /// Bytes a shared region must have for [`StateBlock::attach`].
    pub fn size_bytes(&self) -> usize {
        self.words * std::mem::size_of::<AtomicU64>()
    }

    /// Word `i` (0-based, after the header).
    pub(crate) fn word(&self, i: usize) -> &AtomicU64 {
        debug_assert!(HEADER_WORDS + i < self.words);
        let base = self.base.load(Ordering::Acquire);
        // SAFETY: `base` points to `self.words` initialised AtomicU64s: either `owned`
        // (lives as long as self) or a region the host promised (in `attach`) outlives
        // this config; the index is within the layout computed at build time.
        unsafe { &*base.add(HEADER_WORDS + i) }
    }

    /// True once the state lives in host-provided shared memory.
    pub fn is_shared(&self) -> bool {
        !std::ptr::eq(self.base.load(Ordering::Acquire), self.owned.as_ptr())
    }

    /// Moves the state into `mem` (copying the current values) and uses it from now on.
    ///
    /// # Safety
    /// `mem` must be valid for reads and writes of `len` bytes, 8-byte aligned, shared only
    /// with other processes running this same config (same layout), and must outlive every
    /// use of this config. Call before streams run (nginx: in the shared zone's init, in
    /// the master, before workers fork).
    pub unsafe fn attach(&self, mem: *mut u8, len: usize) -> Result<(), String> {
        if mem.is_null() || (mem as usize) % std::mem::align_of::<AtomicU64>() != 0 {
            return Err("shared state memory is NULL or not 8-byte aligned".into());
        }
        if self.is_shared() {
            return Err("upstream state is already shared".into());
        }
        if len < self.size_bytes() {
            return Err(format!("shared state memory has {len} bytes, needs {}", self.size_bytes()));
        }
        let dst = mem.cast::<AtomicU64>();
        for i in 0..self.words {
            let v = self.owned[i].load(Ordering::Relaxed);
            // SAFETY: in bounds (len checked) and aligned (checked) per the contract;
            // AtomicU64 has the layout of u64, so writing the initial value is sound.
            unsafe { dst.add(i).write(AtomicU64::new(v)) };
        }
        self.base.store(dst, Ordering::Release);
        Ok(())
    }
}

/// Allocates consecutive words while clusters and hosts are built.
#[derive(Default)]
pub struct Layout {
    pub next: usize,
}

impl Layout {
    pub fn take(&mut self, n: usize) -> usize {
        let at = self.next;
        self.next += n;
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_copies_values_and_redirects() {
        let b = StateBlock::new(3);
        b.word(1).store(7, Ordering::Relaxed);
        let mut mem = vec![0u64; 5];
        // SAFETY: `mem` is 5 aligned words and outlives `b`'s use below.
        unsafe { b.attach(mem.as_mut_ptr().cast(), 40).unwrap() };
        assert!(b.is_shared());
        assert_eq!(b.word(1).load(Ordering::Relaxed), 7);
        b.word(2).fetch_add(1, Ordering::Relaxed);
        assert_eq!(mem[HEADER_WORDS + 2], 1);
        assert_eq!(mem[0], MAGIC);
        // SAFETY: refused before any write (already shared).
        assert!(unsafe { b.attach(mem.as_mut_ptr().cast(), 40) }.is_err());
        let small = StateBlock::new(3);
        let mut tiny = [0u64; 2];
        // SAFETY: too small: refused before any write.
        assert!(unsafe { small.attach(tiny.as_mut_ptr().cast(), 16) }.is_err());
    }
}
