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

/// Cheaply clonable text (config-derived names and values are allocated once at load).
pub type SharedStr = Arc<str>;

/// The empty value of [`HeaderOp::Remove`] mutations, allocated once.
pub fn empty() -> SharedStr {
    static EMPTY: std::sync::LazyLock<SharedStr> = std::sync::LazyLock::new(|| SharedStr::from(""));
    EMPTY.clone()
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
    fn get_many<'s>(&'s self, names: &[&str], out: &mut [Lookup<'s>]) {
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
        if h.name.eq_ignore_ascii_case(name.as_bytes()) {
            found = match found {
                Lookup::Missing => Lookup::One(h.value),
                Lookup::One(v) | Lookup::Many(v) => return Lookup::Many(v),
            };
        }
    }
    found
}

/// [`lookup`] of several names in one pass over `headers` (`out[i]` for `names[i]`).
pub fn lookup_many<'a>(headers: impl IntoIterator<Item = Header<'a>>, names: &[&str], out: &mut [Lookup<'a>]) {
    out.fill(Lookup::Missing);
    for h in headers {
        for (n, o) in names.iter().zip(out.iter_mut()) {
            // The length first: most names differ in it, and it is one compare.
            if h.name.len() == n.len() && h.name.eq_ignore_ascii_case(n.as_bytes()) {
                *o = match *o {
                    Lookup::Missing => Lookup::One(h.value),
                    Lookup::One(v) | Lookup::Many(v) => Lookup::Many(v),
                };
            }
        }
    }
}

impl HeaderMap for Headers<'_> {
    fn get(&self, name: &str) -> Lookup<'_> {
        lookup(self.0.iter().copied(), name)
    }
    fn get_many<'s>(&'s self, names: &[&str], out: &mut [Lookup<'s>]) {
        lookup_many(self.0.iter().copied(), names, out)
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        for h in self.0 {
            f(h.name, h.value)
        }
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
        let hs = [h("Uid", "2"), h("x", "1"), h("uid", "3"), h("ab", "4"), h(":path", "/")];
        let hs = Headers(&hs);
        let names = ["uid", "x", "y", "ab", "ba", ":path"];
        let mut out = [Lookup::One(b"stale"); 6];
        hs.get_many(&names, &mut out);
        let one_by_one: Vec<Lookup<'_>> = names.iter().map(|n| hs.get(n)).collect();
        assert_eq!(out.to_vec(), one_by_one);
    }
}
