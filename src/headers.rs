//! Header views and mutations shared by filters, router and hosts.
//!
//! The host owns the request's headers; the core only borrows them for the length of one
//! call through [`HeaderMap`]. Changes are not written into the host's map: they are
//! recorded as [`HeaderMutation`]s that the host applies in order. Lookups during the
//! same stream see those changes through [`Overlay`].

use std::sync::Arc;

/// Cheaply clonable text (config-derived names and values are allocated once at load).
pub type SharedStr = Arc<str>;

/// The empty value of [`HeaderOp::Remove`] mutations, allocated once.
pub fn empty() -> SharedStr {
    static EMPTY: std::sync::LazyLock<SharedStr> = std::sync::LazyLock::new(|| SharedStr::from(""));
    EMPTY.clone()
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

impl HeaderMap for Headers<'_> {
    fn get(&self, name: &str) -> Lookup<'_> {
        lookup(self.0.iter().copied(), name)
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        for h in self.0 {
            f(h.name, h.value)
        }
    }
}

/// What to do with one header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum HeaderOp {
    /// Replace all values of the header with this one (add it if absent).
    Set = 0,
    /// Append one more value.
    Add = 1,
    /// Remove every value of the header.
    Remove = 2,
}

/// One change the host applies to its header map, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMutation {
    pub op: HeaderOp,
    /// Lower-case header name.
    pub name: SharedStr,
    /// Empty for [`HeaderOp::Remove`].
    pub value: SharedStr,
}

/// Up to four mutations live inline: the common case allocates nothing.
pub type Mutations = smallvec::SmallVec<[HeaderMutation; 4]>;

/// The host's headers with the stream's mutations applied on top.
pub struct Overlay<'a> {
    pub base: &'a dyn HeaderMap,
    pub mutations: &'a [HeaderMutation],
}

impl<'a> Overlay<'a> {
    /// Looks `name` up; the result borrows the host's map or the mutations, not `self`.
    pub fn lookup(&self, name: &str) -> Lookup<'a> {
        let base: &'a dyn HeaderMap = self.base;
        let mutations: &'a [HeaderMutation] = self.mutations;
        // The last mutation of this name decides; Add on top of a value makes two.
        let mut added: Option<&[u8]> = None;
        for m in mutations.iter().rev() {
            if &*m.name == name {
                match m.op {
                    HeaderOp::Set => {
                        return if added.is_some() { Lookup::Many(m.value.as_bytes()) } else { Lookup::One(m.value.as_bytes()) }
                    }
                    HeaderOp::Remove => return added.map_or(Lookup::Missing, Lookup::One),
                    HeaderOp::Add => {
                        if added.is_some() {
                            return Lookup::Many(m.value.as_bytes());
                        }
                        added = Some(m.value.as_bytes());
                    }
                }
            }
        }
        match (base.get(name), added) {
            (Lookup::Missing, None) => Lookup::Missing,
            (Lookup::Missing, Some(v)) => Lookup::One(v),
            (l, None) => l,
            (Lookup::One(v) | Lookup::Many(v), Some(_)) => Lookup::Many(v),
        }
    }
}

impl HeaderMap for Overlay<'_> {
    fn get(&self, name: &str) -> Lookup<'_> {
        self.lookup(name)
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        self.base.for_each(&mut |n, v| {
            let changed = self.mutations.iter().any(|m| m.op != HeaderOp::Add && m.name.as_bytes().eq_ignore_ascii_case(n));
            if !changed {
                f(n, v)
            }
        });
        for (i, m) in self.mutations.iter().enumerate() {
            let later_override = self.mutations[i + 1..].iter().any(|l| l.name == m.name && l.op != HeaderOp::Add);
            if m.op != HeaderOp::Remove && !later_override {
                f(m.name.as_bytes(), m.value.as_bytes())
            }
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
    fn overlay_applies_mutations_in_order() {
        let hs = [h("a", "1"), h("b", "2")];
        let muts = [
            HeaderMutation { op: HeaderOp::Remove, name: "a".into(), value: "".into() },
            HeaderMutation { op: HeaderOp::Set, name: "c".into(), value: "3".into() },
            HeaderMutation { op: HeaderOp::Add, name: "b".into(), value: "4".into() },
        ];
        let o = Overlay { base: &Headers(&hs), mutations: &muts };
        assert_eq!(o.get("a"), Lookup::Missing);
        assert_eq!(o.get("c"), Lookup::One(b"3"));
        assert_eq!(o.get("b"), Lookup::Many(b"2"));
        let mut all = Vec::new();
        o.for_each(&mut |n, v| all.push((n.to_vec(), v.to_vec())));
        assert_eq!(all.len(), 3);
    }
}
