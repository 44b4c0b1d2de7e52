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
///
/// Built in two steps: the config's objects take word offsets from a [`Layout`] while
/// they are built (holding the block), then [`StateBlock::allocate`] sizes it once. Every
/// word starts at 0, so 0 must mean the initial state (e.g. a host's failure flags: 0 is
/// healthy).
pub struct StateBlock {
    base: AtomicPtr<AtomicU64>,
    words: std::sync::OnceLock<usize>,
    owned: std::sync::OnceLock<Box<[AtomicU64]>>,
}

impl std::fmt::Debug for StateBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateBlock").field("words", &self.words.get()).field("shared", &self.is_shared()).finish()
    }
}

impl StateBlock {
    /// A block of `words` state words (plus the header), in process memory.
    pub fn new(words: usize) -> StateBlock {
        let b = StateBlock::unallocated();
        b.allocate(words);
        b
    }

    /// A block to be sized by [`StateBlock::allocate`] once the layout is known.
    pub fn unallocated() -> StateBlock {
        StateBlock { base: AtomicPtr::new(std::ptr::null_mut()), words: std::sync::OnceLock::new(), owned: std::sync::OnceLock::new() }
    }

    /// Gives the block `words` zeroed words (plus the header). Only the first call counts.
    pub fn allocate(&self, words: usize) {
        let total = HEADER_WORDS + words;
        if self.words.set(total).is_err() {
            return;
        }
        let owned: Box<[AtomicU64]> = (0..total).map(|_| AtomicU64::new(0)).collect();
        owned[0].store(MAGIC, Ordering::Relaxed);
        owned[1].store(total as u64, Ordering::Relaxed);
        let owned = self.owned.get_or_init(|| owned);
        self.base.store(owned.as_ptr() as *mut AtomicU64, Ordering::Release);
    }

    fn total_words(&self) -> usize {
        self.words.get().copied().unwrap_or(0)
    }

    /// Bytes a shared region must have for [`StateBlock::attach`].
    pub fn size_bytes(&self) -> usize {
        self.total_words() * std::mem::size_of::<AtomicU64>()
    }

    /// Word `i` (0-based, after the header).
    pub(crate) fn word(&self, i: usize) -> &AtomicU64 {
        let base = self.base.load(Ordering::Acquire);
        assert!(!base.is_null() && HEADER_WORDS + i < self.total_words(), "state word {i} outside the allocated block");
        // SAFETY: `base` is non-NULL, so `allocate` ran and it points to `total_words()`
        // initialised AtomicU64s: either `owned` (lives as long as self) or a region the host
        // promised (in `attach`) outlives this config; the index was just checked.
        unsafe { &*base.add(HEADER_WORDS + i) }
    }

    /// True once the state lives in host-provided shared memory.
    pub fn is_shared(&self) -> bool {
        let owned = self.owned.get().map_or(std::ptr::null(), |o| o.as_ptr());
        !std::ptr::eq(self.base.load(Ordering::Acquire), owned)
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
        let Some(owned) = self.owned.get() else { return Err("upstream state is not allocated yet".into()) };
        if self.is_shared() {
            return Err("upstream state is already shared".into());
        }
        if len < self.size_bytes() {
            return Err(format!("shared state memory has {len} bytes, needs {}", self.size_bytes()));
        }
        let dst = mem.cast::<AtomicU64>();
        for (i, w) in owned.iter().enumerate() {
            let v = w.load(Ordering::Relaxed);
            // SAFETY: in bounds (len checked) and aligned (checked) per the contract;
            // AtomicU64 has the layout of u64, so writing the initial value is sound.
            unsafe { dst.add(i).write(AtomicU64::new(v)) };
        }
        self.base.store(dst, Ordering::Release);
        Ok(())
    }
}

/// Words of the state block for something built outside the upstream (e.g. a rate-limit
/// filter's counters), so nginx's workers share them too.
#[derive(Clone)]
pub struct Words {
    state: std::sync::Arc<StateBlock>,
    slot: usize,
    len: usize,
}

impl std::fmt::Debug for Words {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Words").field("slot", &self.slot).field("len", &self.len).finish()
    }
}

impl Words {
    /// Word `i` of these (`i < len`).
    pub fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.len, "word {i} of {}", self.len);
        self.state.word(self.slot + i)
    }
}

/// Hands out state words while a config is built (before the block is sized).
pub struct WordAllocator<'a> {
    pub(crate) state: &'a std::sync::Arc<StateBlock>,
    pub(crate) layout: std::cell::RefCell<&'a mut Layout>,
}

impl WordAllocator<'_> {
    /// `n` words, zero until used.
    pub fn take(&self, n: usize) -> Words {
        let slot = self.layout.borrow_mut().take(n);
        Words { state: self.state.clone(), slot, len: n }
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
