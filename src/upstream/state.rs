//! Where a config's mutable upstream state lives.
//!
//! Everything the load balancers change at run time (round-robin cursors, host health,
//! per-host request and failure counters) is a flat array of `AtomicU64` words. By default
//! the words live in this process. A host whose workers are separate processes (nginx)
//! can move them into memory it shares between its workers ([`StateBlock::attach`]), so
//! round robin and health mean the same across workers as across Envoy's threads.
//!
//! After the shared words come [`ROWS`] rows of counter words (`upstream::rows`): a counter
//! that only counts (no limit checked against it) is a word in each row, each thread adds
//! to its own row without a locked instruction, and readers sum the rows.

pub use crate::upstream::rows::ROWS;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Words at the start of the block: a magic/version word, the word count and the count of
/// counter rows claimed (`upstream::rows`).
const HEADER_WORDS: usize = 3;
const ROWS_CLAIMED: usize = 2;
const MAGIC: u64 = 0x4d4f_534e_5354_0002; // "MOSNST" v2

/// A block id no other block had in this process.
fn new_id() -> u64 {
    static IDS: AtomicU64 = AtomicU64::new(1);
    IDS.fetch_add(1, Ordering::Relaxed)
}

/// The state words of one config.
///
/// Built in two steps: the config's objects take word offsets from a [`Layout`] while
/// they are built (holding the block), then [`StateBlock::allocate_for`] sizes it once.
/// Every word starts at 0, so 0 must mean the initial state (e.g. a host's failure flags: 0
/// is healthy).
pub struct StateBlock {
    /// Names this block's rows to `upstream::rows` (unique in the process, never 0; a new
    /// one when `attach` moves the rows, so no thread keeps writing at the old address).
    id: AtomicU64,
    base: AtomicPtr<AtomicU64>,
    /// Shared words and words per row, once allocated.
    sizes: std::sync::OnceLock<(usize, usize)>,
    /// Where row 0 starts (words from `base`) and words per row: copies of `sizes` set
    /// before `base`, read after it on the request path.
    first_row: AtomicUsize,
    per_row: AtomicUsize,
    owned: std::sync::OnceLock<Box<[AtomicU64]>>,
}

impl std::fmt::Debug for StateBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateBlock").field("sizes", &self.sizes.get()).field("shared", &self.is_shared()).finish()
    }
}

impl StateBlock {
    /// A block of `words` state words (plus the header), in process memory.
    pub fn new(words: usize) -> StateBlock {
        let b = StateBlock::unallocated();
        b.allocate(words);
        b
    }

    /// A block to be sized by [`StateBlock::allocate_for`] once the layout is known.
    pub fn unallocated() -> StateBlock {
        let id = AtomicU64::new(new_id());
        StateBlock {
            id,
            base: AtomicPtr::new(std::ptr::null_mut()),
            sizes: std::sync::OnceLock::new(),
            first_row: AtomicUsize::new(0),
            per_row: AtomicUsize::new(0),
            owned: std::sync::OnceLock::new(),
        }
    }

    /// Gives the block `words` zeroed shared words (plus the header) and no rows. Only the
    /// first allocation counts.
    pub fn allocate(&self, words: usize) {
        self.allocate_for(&Layout { next: words, row_words: 0 });
    }

    /// Gives the block the zeroed words `layout` handed out, shared and in rows (plus the
    /// header). Only the first allocation counts.
    pub fn allocate_for(&self, layout: &Layout) {
        let total = HEADER_WORDS + layout.next + ROWS * layout.row_words;
        if self.sizes.set((layout.next, layout.row_words)).is_err() {
            return;
        }
        let owned: Box<[AtomicU64]> = (0..total).map(|_| AtomicU64::new(0)).collect();
        owned[0].store(MAGIC, Ordering::Relaxed);
        owned[1].store(total as u64, Ordering::Relaxed);
        let owned = self.owned.get_or_init(|| owned);
        self.first_row.store(HEADER_WORDS + layout.next, Ordering::Relaxed);
        self.per_row.store(layout.row_words, Ordering::Relaxed);
        self.base.store(owned.as_ptr() as *mut AtomicU64, Ordering::Release);
    }

    fn total_words(&self) -> usize {
        self.sizes.get().map_or(0, |(shared, row)| HEADER_WORDS + shared + ROWS * row)
    }

    /// Bytes a shared region must have for [`StateBlock::attach`].
    pub fn size_bytes(&self) -> usize {
        self.total_words() * std::mem::size_of::<AtomicU64>()
    }

    /// Word `i` (0-based, after the header).
    pub(crate) fn word(&self, i: usize) -> &AtomicU64 {
        self.raw_word(HEADER_WORDS + i)
    }

    /// Word `i` counting the header's.
    fn raw_word(&self, i: usize) -> &AtomicU64 {
        let base = self.base.load(Ordering::Acquire);
        assert!(!base.is_null() && i < self.total_words(), "state word {i} outside the allocated block");
        // SAFETY: `base` is non-NULL, so `allocate` ran and it points to `total_words()`
        // initialised AtomicU64s: either `owned` (lives as long as self) or a region the host
        // promised (in `attach`) outlives this config; the index was just checked.
        unsafe { &*base.add(i) }
    }

    /// The calling thread's row of this block's counter rows, and where the row starts.
    #[inline]
    fn row(&self) -> (usize, *const AtomicU64) {
        let first = |row: usize| {
            let base = self.base.load(Ordering::Acquire);
            assert!(!base.is_null() && row < ROWS, "row {row} of an unallocated block");
            let at = self.first_row.load(Ordering::Relaxed) + row * self.per_row.load(Ordering::Relaxed);
            // In bounds (at most one past the end when rows are empty): the block has
            // `first_row + ROWS * per_row` words.
            base.wrapping_add(at).cast_const()
        };
        crate::upstream::rows::row(self.id.load(Ordering::Relaxed), first, || self.raw_word(ROWS_CLAIMED))
    }

    /// Word `i` of row `row`.
    #[inline]
    fn row_word(&self, row: usize, i: usize) -> &AtomicU64 {
        let base = self.base.load(Ordering::Acquire);
        let per_row = self.per_row.load(Ordering::Relaxed);
        assert!(!base.is_null() && i < per_row && row < ROWS, "row word {i} of row {row} outside the allocated rows");
        // SAFETY: `base` is non-NULL, so `allocate_for` ran (it sets `first_row` and
        // `per_row` before publishing `base`, read here after it) and `base` points to
        // `first_row + ROWS * per_row` initialised words (see `word`); the index is below.
        unsafe { &*base.add(self.first_row.load(Ordering::Relaxed) + row * per_row + i) }
    }

    /// Adds `n` (wrapping) to counter `i` (a word in every row) in the calling thread's row.
    #[inline]
    pub(crate) fn count(&self, i: usize, n: u64) {
        self.count_in(self.row(), i, n);
    }

    /// As [`StateBlock::count`] in `row`, the calling thread's ([`StateBlock::row`]).
    #[inline]
    fn count_in(&self, (row, first): (usize, *const AtomicU64), i: usize, n: u64) {
        assert!(i < self.per_row.load(Ordering::Relaxed), "row word {i} outside the allocated rows");
        // SAFETY: `first` is where row `row` of this block starts at this block's current
        // address (`row` remembers it under this block's id, which `attach` renews when the
        // address changes), the row has `per_row` words and `i` is below that; the memory
        // lives as long as `self` (see `word`).
        crate::upstream::rows::add(row, unsafe { &*first.add(i) }, n);
    }

    /// Counter `i` in row 0, which every thread may write with atomic read-modify-writes
    /// (and nothing else): a counter a limit is checked against lives there alone.
    #[inline]
    pub(crate) fn row0(&self, i: usize) -> &AtomicU64 {
        self.row_word(0, i)
    }

    /// Counter `i`: its rows summed.
    pub(crate) fn row_sum(&self, i: usize) -> u64 {
        (0..ROWS).fold(0u64, |s, r| s.wrapping_add(self.row_word(r, i).load(Ordering::Relaxed)))
    }

    /// Sets counter `i` to `v` (row 0 to `v`, the others to 0). Only before any stream
    /// counts on it (a reload's inherit).
    pub(crate) fn row_set(&self, i: usize, v: u64) {
        self.row0(i).store(v, Ordering::Relaxed);
        (1..ROWS).for_each(|r| self.row_word(r, i).store(0, Ordering::Relaxed));
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
        // Rows a thread claimed at the old address are left there (nothing counts in them
        // before streams run); the claims word was copied, so new rows are new.
        self.id.store(new_id(), Ordering::Relaxed);
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

/// Counters in the block's rows: each has a word in every row (see the module's doc).
#[derive(Clone)]
pub struct RowWords {
    state: std::sync::Arc<StateBlock>,
    at: usize,
    len: usize,
}

impl std::fmt::Debug for RowWords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowWords").field("at", &self.at).field("len", &self.len).finish()
    }
}

impl RowWords {
    /// Adds `n` (wrapping) to counter `i` in the calling thread's row.
    #[inline]
    pub fn add(&self, i: usize, n: u64) {
        assert!(i < self.len, "counter {i} of {}", self.len);
        self.state.count(self.at + i, n);
    }

    /// Adds to two counters `(i, n)` in the calling thread's row (one row lookup).
    #[inline]
    pub fn add_two(&self, (i, n): (usize, u64), (j, m): (usize, u64)) {
        assert!(i < self.len && j < self.len, "counters {i}, {j} of {}", self.len);
        let row = self.state.row();
        self.state.count_in(row, self.at + i, n);
        self.state.count_in(row, self.at + j, m);
    }

    /// Counter `i`: its rows summed.
    pub fn sum(&self, i: usize) -> u64 {
        assert!(i < self.len, "counter {i} of {}", self.len);
        self.state.row_sum(self.at + i)
    }

    /// Sets counter `i` to `v`. Only before any stream counts on it (a reload's inherit).
    pub fn set(&self, i: usize, v: u64) {
        assert!(i < self.len, "counter {i} of {}", self.len);
        self.state.row_set(self.at + i, v);
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

    /// `n` counters in rows, zero until used.
    pub fn take_rows(&self, n: usize) -> RowWords {
        let at = self.layout.borrow_mut().take_rows(n);
        RowWords { state: self.state.clone(), at, len: n }
    }
}

/// Allocates consecutive words while clusters and hosts are built.
#[derive(Default)]
pub struct Layout {
    /// Shared words taken so far.
    pub next: usize,
    /// Words taken in each row so far.
    pub row_words: usize,
}

impl Layout {
    /// `n` shared words: the first one's index.
    pub fn take(&mut self, n: usize) -> usize {
        let at = self.next;
        self.next += n;
        at
    }

    /// `n` words in every row: the first one's index in a row.
    pub fn take_rows(&mut self, n: usize) -> usize {
        let at = self.row_words;
        self.row_words += n;
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
        let mut mem = vec![0u64; 6];
        // SAFETY: `mem` is 6 aligned words and outlives `b`'s use below.
        unsafe { b.attach(mem.as_mut_ptr().cast(), 48).unwrap() };
        assert!(b.is_shared());
        assert_eq!(b.word(1).load(Ordering::Relaxed), 7);
        b.word(2).fetch_add(1, Ordering::Relaxed);
        assert_eq!(mem[HEADER_WORDS + 2], 1);
        assert_eq!(mem[0], MAGIC);
        // SAFETY: refused before any write (already shared).
        assert!(unsafe { b.attach(mem.as_mut_ptr().cast(), 48) }.is_err());
        let small = StateBlock::new(3);
        let mut tiny = [0u64; 3];
        // SAFETY: too small: refused before any write.
        assert!(unsafe { small.attach(tiny.as_mut_ptr().cast(), 24) }.is_err());
    }
}
