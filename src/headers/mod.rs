//! Header views and mutations shared by filters, router and hosts.
//!
//! The host owns the request's headers; the core only borrows them for the length of one
//! call through [`HeaderMap`]. Changes are not written into the host's map: they are
//! recorded as [`HeaderMutation`]s that the host applies in order. Lookups during the
//! same stream see those changes through [`Overlay`]. [`HeaderMatcher`] is MOSN's
//! `{name, value, regex}` test, used by routes and filters alike.
//!
//! A leaf module: it depends on nothing else in the crate.

mod matcher;
mod mutation;

pub use matcher::HeaderMatcher;
pub use mutation::{HeaderMutation, HeaderOp, Mutations, Overlay};

use std::sync::Arc;

/// Cheaply clonable text: config-derived names and values are allocated once at load and
/// shared; literals ([`SharedStr::from_static`]) are not counted at all, so a stream that
/// records them (a metadata driver's header name and values) touches no reference count.
///
/// Two words, as `Arc<str>` is (a stream keeps dozens inline): the text's address and
/// length, the length's top bit set when the address is an `Arc<str>`'s.
pub struct SharedStr {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

/// The length's top bit: the text is an `Arc<str>`'s (a `str` is never that long).
const SHARED: usize = 1 << (usize::BITS - 1);

// SAFETY: a `SharedStr` is a `&'static str` or an `Arc<str>`, both `Send` and `Sync`.
unsafe impl Send for SharedStr {}
// SAFETY: as above.
unsafe impl Sync for SharedStr {}

// === impl SharedStr ===

impl SharedStr {
    /// A literal, shared without a reference count.
    pub const fn from_static(s: &'static str) -> SharedStr {
        // SAFETY: a reference's address is never null.
        SharedStr { ptr: unsafe { std::ptr::NonNull::new_unchecked(s.as_ptr().cast_mut()) }, len: s.len() }
    }

    fn is_shared(&self) -> bool {
        self.len & SHARED != 0
    }

    /// The `Arc<str>`'s pointer (only when [`SharedStr::is_shared`]).
    fn arc_ptr(&self) -> *const str {
        std::ptr::slice_from_raw_parts(self.ptr.as_ptr().cast_const(), self.len & !SHARED) as *const str
    }
}

impl From<Arc<str>> for SharedStr {
    fn from(s: Arc<str>) -> SharedStr {
        let len = s.len();
        let raw = Arc::into_raw(s);
        // SAFETY: `Arc::into_raw` never gives null; the count it held is ours until `drop`.
        SharedStr { ptr: unsafe { std::ptr::NonNull::new_unchecked(raw.cast::<u8>().cast_mut()) }, len: len | SHARED }
    }
}

impl Clone for SharedStr {
    #[inline]
    fn clone(&self) -> SharedStr {
        if self.is_shared() {
            // SAFETY: `arc_ptr` is what `Arc::into_raw` gave, and `self` holds a count, so
            // the allocation is alive.
            unsafe { Arc::increment_strong_count(self.arc_ptr()) };
        }
        SharedStr { ptr: self.ptr, len: self.len }
    }
}

impl Drop for SharedStr {
    #[inline]
    fn drop(&mut self) {
        if self.is_shared() {
            // SAFETY: gives back the count this value held (from `from` or `clone`).
            unsafe { Arc::decrement_strong_count(self.arc_ptr()) };
        }
    }
}

impl std::ops::Deref for SharedStr {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        // SAFETY: `ptr` and the length (top bit cleared) are a `str`'s, alive as long as
        // `self` (a literal, or an `Arc` this value holds a count of).
        unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(self.ptr.as_ptr(), self.len & !SHARED)) }
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        self
    }
}

impl std::borrow::Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        self
    }
}

impl From<&str> for SharedStr {
    fn from(s: &str) -> SharedStr {
        SharedStr::from(Arc::<str>::from(s))
    }
}

impl From<String> for SharedStr {
    fn from(s: String) -> SharedStr {
        SharedStr::from(Arc::<str>::from(s))
    }
}

impl From<&String> for SharedStr {
    fn from(s: &String) -> SharedStr {
        SharedStr::from(s.as_str())
    }
}

impl From<Box<str>> for SharedStr {
    fn from(s: Box<str>) -> SharedStr {
        SharedStr::from(Arc::<str>::from(s))
    }
}

impl From<std::borrow::Cow<'_, str>> for SharedStr {
    fn from(s: std::borrow::Cow<'_, str>) -> SharedStr {
        SharedStr::from(&*s)
    }
}

impl PartialEq for SharedStr {
    fn eq(&self, other: &SharedStr) -> bool {
        **self == **other
    }
}

impl Eq for SharedStr {}

impl PartialOrd for SharedStr {
    fn partial_cmp(&self, other: &SharedStr) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SharedStr {
    fn cmp(&self, other: &SharedStr) -> std::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

impl std::hash::Hash for SharedStr {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (**self).hash(h)
    }
}

impl std::fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl std::fmt::Display for SharedStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&**self, f)
    }
}

/// The empty value of [`HeaderOp::Remove`] mutations.
pub fn empty() -> SharedStr {
    SharedStr::from_static("")
}

/// ASCII decimal digits (at least one, nothing else) as a number; `None` past `u64::MAX`.
/// From the bytes, without a UTF-8 check: values read on every request.
pub fn parse_digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    b.iter().try_fold(0u64, |n, &d| if d.is_ascii_digit() { n.checked_mul(10)?.checked_add(u64::from(d - b'0')) } else { None })
}

/// True for an HTTP field name (an RFC 9110 token).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The result of looking a header up by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    Missing,
    /// Exactly one header with that name.
    One(&'a [u8]),
    /// Several headers with that name; the first value is given.
    Many(&'a [u8]),
}

impl<'a> Lookup<'a> {
    /// The single value, if exactly one header has the name.
    pub fn single(self) -> Option<&'a [u8]> {
        match self {
            Lookup::One(v) => Some(v),
            _ => None,
        }
    }
    /// The first value, if any.
    pub fn first(self) -> Option<&'a [u8]> {
        match self {
            Lookup::Missing => None,
            Lookup::One(v) | Lookup::Many(v) => Some(v),
        }
    }
}

/// A host's header map, seen read-only for one call.
///
/// `name` is always lower case. Pseudo-headers use HTTP/2 names: `:method`, `:path`
/// (with query), `:authority` (falls back to `host`), `:status` on responses.
pub trait HeaderMap {
    fn get(&self, name: &str) -> Lookup<'_>;
    /// Looks each of `names` up (`out[i]` is what [`HeaderMap::get`] gives for `names[i]`).
    /// Maps over a list override it with one pass ([`lookup_many`]): the core reads a few
    /// names from every request.
    fn get_many<'s>(&'s self, names: &NameSet, out: &mut [Lookup<'s>]) {
        for (n, o) in names.iter().zip(out.iter_mut()) {
            *o = self.get(n);
        }
    }
    /// Visits every header (used for logging and for hosts that need a full copy).
    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8]));
}

/// A header as plain borrowed bytes; [`Headers`] makes a slice of them a [`HeaderMap`].
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// A slice of [`Header`]s as a [`HeaderMap`] (tests, benchmarks, simple hosts).
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a>(pub &'a [Header<'a>]);

/// Looks `name` up in a sequence of headers (case-insensitive; stops at the second match).
pub fn lookup<'a>(headers: impl IntoIterator<Item = Header<'a>>, name: &str) -> Lookup<'a> {
    let mut found = Lookup::Missing;
    for h in headers {
        if eq_lower(h.name, name.as_bytes()) {
            found = match found {
                Lookup::Missing => Lookup::One(h.value),
                Lookup::One(v) | Lookup::Many(v) => return Lookup::Many(v),
            };
        }
    }
    found
}

/// `a == b` for header names and other short strings: the same text shared from the config
/// is told by its address, other text compared in words without a call to `memcmp`.
#[inline]
pub fn name_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || words_eq(a.as_bytes(), b.as_bytes(), 0))
}

/// `name` equals `lower` ignoring ASCII case. The core's names are lower case, as most
/// clients' and every HTTP/2 host's are: one plain compare usually decides, and a name of
/// the same length that differs is usually told apart with the case bit masked, in words
/// (no call to `memcmp`: names are short, and this runs for every header).
#[inline]
pub fn eq_lower(name: &[u8], lower: &[u8]) -> bool {
    if name.len() != lower.len() {
        return false;
    }
    if words_eq(name, lower, 0) {
        return true;
    }
    // ASCII case only differs in bit 0x20, so names equal ignoring case are equal with that
    // bit set in every byte (the converse does not hold: e.g. `^` and `~`).
    words_eq(name, lower, u64::from_ne_bytes([0x20; 8])) && name.eq_ignore_ascii_case(lower)
}

/// `a == b` (equal lengths) on the bytes or'ed with `mask`, eight at a time (the last word
/// overlaps the one before it); a name shorter than eight bytes is two overlapping halves,
/// or under four bytes one by one.
#[inline(always)]
fn words_eq(a: &[u8], b: &[u8], mask: u64) -> bool {
    let n = a.len();
    let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().expect("8 bytes")) | mask;
    let half = |s: &[u8], at: usize| u32::from_ne_bytes(s[at..at + 4].try_into().expect("4 bytes")) | mask as u32;
    if n < 8 {
        if n >= 4 {
            return half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4);
        }
        return a.iter().zip(b).all(|(x, y)| (x | mask as u8) == (y | mask as u8));
    }
    let mut i = 0;
    while i + 8 < n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// Header names read together from every request (lower case, each once), indexed by
/// length when the config is built: a pass over a request's headers then compares each
/// header only with the names of its length, usually none or one.
#[derive(Debug, Clone)]
pub struct NameSet {
    names: Vec<SharedStr>,
    /// `by_len[l]`: 1 + the index of the last name `l` bytes long (63: 63 or longer; 0:
    /// none); earlier names of that length are chained through `prev`.
    by_len: [u8; 64],
    prev: Vec<u8>,
}

impl NameSet {
    /// At most this many names are indexed (the index holds `u8`s); no config comes near
    /// (the core reads four, each filter a few).
    pub const MAX: usize = 255;

    /// The set of `names` in order, without repeats (the first of equal names is kept).
    /// Panics on more than [`NameSet::MAX`] distinct names (a config bug, found at build).
    pub fn new(names: impl IntoIterator<Item = SharedStr>) -> NameSet {
        let mut set = NameSet { names: Vec::new(), by_len: [0; 64], prev: Vec::new() };
        for n in names {
            if set.position(&n).is_some() {
                continue;
            }
            assert!(set.names.len() < Self::MAX, "more than {} header names read from every request", Self::MAX);
            let l = n.len().min(63);
            set.prev.push(set.by_len[l]);
            set.by_len[l] = set.names.len() as u8 + 1;
            set.names.push(n);
        }
        set
    }

    /// The names, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Name `i` (`i < len()`).
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The index of `name`. Names the config shares with the set (a filter's own literal)
    /// are found by address, without comparing bytes.
    #[inline]
    pub fn position(&self, name: &str) -> Option<usize> {
        let mut j = self.by_len[name.len().min(63)];
        while j != 0 {
            let i = usize::from(j - 1);
            if name_eq(&self.names[i], name) {
                return Some(i);
            }
            j = self.prev[i];
        }
        None
    }

    /// Calls `f(i)` for each name `i` equal to `name` ignoring ASCII case.
    #[inline]
    fn each_match(&self, name: &[u8], mut f: impl FnMut(usize)) {
        let mut j = self.by_len[name.len().min(63)];
        while j != 0 {
            let i = usize::from(j - 1);
            if eq_lower(name, self.names[i].as_bytes()) {
                f(i);
            }
            j = self.prev[i];
        }
    }
}

/// [`lookup`] of every name of `names` in one pass over `headers` (`out[i]` for the `i`th
/// name).
pub fn lookup_many<'a>(headers: impl IntoIterator<Item = Header<'a>>, names: &NameSet, out: &mut [Lookup<'a>]) {
    out.fill(Lookup::Missing);
    for h in headers {
        names.each_match(h.name, |i| {
            let o = &mut out[i];
            *o = match *o {
                Lookup::Missing => Lookup::One(h.value),
                Lookup::One(v) | Lookup::Many(v) => Lookup::Many(v),
            }
        });
    }
}

impl HeaderMap for Headers<'_> {
    fn get(&self, name: &str) -> Lookup<'_> {
        lookup(self.0.iter().copied(), name)
    }
    fn get_many<'s>(&'s self, names: &NameSet, out: &mut [Lookup<'s>]) {
        lookup_many(self.0.iter().copied(), names, out)
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        for h in self.0 {
            f(h.name, h.value)
        }
    }
}

/// A host's map with some names already looked up (in one pass, [`HeaderMap::get_many`]):
/// those answer from `found`, the rest from the host. Valid for one call into the core,
/// as the host's map is.
pub struct Prefetched<'a> {
    pub base: &'a dyn HeaderMap,
    /// Lower-case names; `found[i]` is what the host gave for `names[i]`.
    pub names: &'a NameSet,
    pub found: &'a [Lookup<'a>],
}

impl HeaderMap for Prefetched<'_> {
    fn get(&self, name: &str) -> Lookup<'_> {
        match self.names.position(name) {
            Some(i) => self.found[i],
            None => self.base.get(name),
        }
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        self.base.for_each(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(n: &'a str, v: &'a str) -> Header<'a> {
        Header { name: n.as_bytes(), value: v.as_bytes() }
    }

    #[test]
    fn slice_lookup_is_case_insensitive_and_counts() {
        let hs = [h("Uid", "2"), h("x", "1"), h("uid", "3")];
        let hs = Headers(&hs);
        assert_eq!(hs.get("uid"), Lookup::Many(b"2"));
        assert_eq!(hs.get("x"), Lookup::One(b"1"));
        assert_eq!(hs.get("y"), Lookup::Missing);
    }

    #[test]
    fn one_pass_lookup_agrees_with_lookup_one_by_one() {
        let long = "l".repeat(70);
        let longer = "l".repeat(71);
        let hs = [h("Uid", "2"), h("x", "1"), h("uid", "3"), h("ab", "4"), h(":path", "/"), h(&long, "5"), h(&longer, "6")];
        let hs = Headers(&hs);
        let names = ["uid", "x", "y", "ab", "ba", ":path", &longer, &"l".repeat(64), "uid"];
        let set = NameSet::new(names.iter().map(|n| SharedStr::from(*n)));
        assert_eq!(set.len(), 8, "the repeated name is kept once");
        let mut out = [Lookup::One(b"stale"); 8];
        hs.get_many(&set, &mut out);
        let one_by_one: Vec<Lookup<'_>> = set.iter().map(|n| hs.get(n)).collect();
        assert_eq!(out.to_vec(), one_by_one);
        for (i, n) in set.iter().enumerate() {
            assert_eq!(set.position(n), Some(i));
            let copy = n.to_string();
            assert_eq!(set.position(copy.as_str()), Some(i), "found by bytes too");
        }
        assert_eq!(set.position("z"), None);
        // Many names of one length, chained.
        let many = NameSet::new((0..200).map(|i| SharedStr::from(if i == 199 { "uid".to_string() } else { format!("n{i:02}") })));
        let mut out = vec![Lookup::One(b"stale"); many.len()];
        hs.get_many(&many, &mut out);
        assert_eq!(out, many.iter().map(|n| hs.get(n)).collect::<Vec<_>>());
        assert_eq!(out[199], Lookup::Many(b"2"));
    }

    /// Against the standard library's compare, on names made of header-name characters in
    /// both cases and lengths around the word size.
    #[test]
    fn eq_lower_agrees_with_eq_ignore_ascii_case() {
        let alphabet = b"aAzZ-_^~09:.";
        let mut rng = fastrand::Rng::with_seed(15);
        for _ in 0..200_000 {
            let len = rng.usize(0..20);
            let a: Vec<u8> = (0..len).map(|_| alphabet[rng.usize(..alphabet.len())]).collect();
            let mut b: Vec<u8> = a.iter().map(|c| if rng.bool() { c.to_ascii_lowercase() } else { *c }).collect();
            if rng.u8(..4) == 0 && len > 0 {
                let i = rng.usize(..len);
                b[i] = alphabet[rng.usize(..alphabet.len())];
            }
            let lower = b.to_ascii_lowercase();
            assert_eq!(eq_lower(&a, &lower), a.eq_ignore_ascii_case(&lower), "{:?} {:?}", a, lower);
            assert_eq!(eq_lower(&a, &b), a.eq_ignore_ascii_case(&b), "{:?} {:?}", a, b);
        }
        assert!(!eq_lower(b"ab", b"abc"));
        for (a, b) in
            [("", ""), ("uid", "uid"), ("uid", "uie"), (":authority", ":authoritx"), ("x-mosn-on-envoy-unit", "x-mosn-on-envoy-unix")]
        {
            assert_eq!(name_eq(a, b), a == b);
            let copy = b.to_string();
            assert_eq!(name_eq(a, copy.as_str()), a == b);
        }
    }

    #[test]
    fn shared_str_counts_only_shared_text() {
        let arc: Arc<str> = Arc::from("x-mosn-on-envoy-unit");
        let a = SharedStr::from(arc.clone());
        assert_eq!(Arc::strong_count(&arc), 2);
        let b = a.clone();
        assert_eq!(Arc::strong_count(&arc), 3);
        assert_eq!((&*a, &*b), ("x-mosn-on-envoy-unit", "x-mosn-on-envoy-unit"));
        drop(a);
        drop(b);
        assert_eq!(Arc::strong_count(&arc), 1);
        let lit = SharedStr::from_static("s1");
        assert_eq!(lit.clone(), SharedStr::from("s1"));
        assert_eq!(&*SharedStr::from_static(""), "");
        assert_eq!(std::mem::size_of::<SharedStr>(), std::mem::size_of::<Arc<str>>());
        assert_eq!(format!("{:?} {}", lit, SharedStr::from(String::from("a"))), "\"s1\" a");
    }

    #[test]
    fn prefetched_answers_its_names_and_asks_the_host_for_others() {
        let hs = [h("uid", "2"), h("x", "1")];
        let base = Headers(&hs);
        let names = NameSet::new([SharedStr::from("uid"), SharedStr::from("y")]);
        let mut found = [Lookup::Missing; 2];
        base.get_many(&names, &mut found);
        let p = Prefetched { base: &base, names: &names, found: &found };
        assert_eq!(p.get("uid"), Lookup::One(b"2"));
        assert_eq!(p.get("y"), Lookup::Missing);
        assert_eq!(p.get("x"), Lookup::One(b"1"));
    }
}
