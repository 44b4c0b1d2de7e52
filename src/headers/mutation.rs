use super::{HeaderMap, Lookup, SharedStr};

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
        // Usually no mutation names it: the host's values, without the walk below.
        if !mutations.iter().any(|m| super::name_eq(&m.name, name)) {
            return base.get(name);
        }
        // Walking back from the last mutation of this name: a Set or Remove decides what the
        // Adds after it are added to; before any, the host's values are. The first value is
        // the oldest one (the host appends what is added).
        let mut added = 0usize;
        let mut oldest_added: Option<&[u8]> = None;
        for m in mutations.iter().rev() {
            if super::name_eq(&m.name, name) {
                match m.op {
                    HeaderOp::Set => return if added > 0 { Lookup::Many(m.value.as_bytes()) } else { Lookup::One(m.value.as_bytes()) },
                    HeaderOp::Remove => {
                        return match oldest_added {
                            None => Lookup::Missing,
                            Some(v) if added == 1 => Lookup::One(v),
                            Some(v) => Lookup::Many(v),
                        }
                    }
                    HeaderOp::Add => {
                        added += 1;
                        oldest_added = Some(m.value.as_bytes());
                    }
                }
            }
        }
        match (base.get(name), oldest_added) {
            (Lookup::Missing, None) => Lookup::Missing,
            (Lookup::Missing, Some(v)) if added == 1 => Lookup::One(v),
            (Lookup::Missing, Some(v)) => Lookup::Many(v),
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
    use crate::headers::{Header, HeaderMap, Headers, Lookup};

    fn h<'a>(n: &'a str, v: &'a str) -> Header<'a> {
        Header { name: n.as_bytes(), value: v.as_bytes() }
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

    /// Found by the `headers` fuzz target: with two values added to a header the host has,
    /// the first value is still the host's (the host appends), not the first added one.
    #[test]
    fn the_first_value_is_the_oldest() {
        let hs = [h("a", "1")];
        let add = |v: &str| HeaderMutation { op: HeaderOp::Add, name: "a".into(), value: v.into() };
        let remove = HeaderMutation { op: HeaderOp::Remove, name: "a".into(), value: "".into() };
        let base = Headers(&hs);
        let get = |muts: &[HeaderMutation]| format!("{:?}", Overlay { base: &base, mutations: muts }.get("a"));
        assert_eq!(get(&[add("2"), add("3")]), format!("{:?}", Lookup::Many(b"1")));
        assert_eq!(get(&[remove.clone(), add("2"), add("3"), add("4")]), format!("{:?}", Lookup::Many(b"2")));
        assert_eq!(get(&[remove, add("2")]), format!("{:?}", Lookup::One(b"2")));
        let none = Headers(&[]);
        let two = [add("2"), add("3")];
        assert_eq!(Overlay { base: &none, mutations: &two }.get("a"), Lookup::Many(b"2"));
    }
}
