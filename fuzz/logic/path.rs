//! `path`: path normalization (`src/router/path.rs`) against a reference model written
//! here from RFC 3986 (percent-decoding, then slashes merged and `remove_dot_segments`).
//!
//! Properties, for any raw path: `normalize` agrees with the model; its result starts with
//! `/` and has no `//` and no `.`/`..` segment; normalizing again changes nothing (when the
//! result holds no escape left to decode), and the forwarded (encoded) form is visible
//! ASCII and normalizes back to the same path; `is_canonical`, `is_valid` and `split_query`
//! say what they promise.

use mosn_extension::router::path;

fn unhex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes every `%XX` (a `%` without two hex digits is kept).
fn decode(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = p;
    while let Some((&b, tail)) = rest.split_first() {
        match (b, tail) {
            (b'%', [h, l, more @ ..]) if unhex(*h).is_some() && unhex(*l).is_some() => {
                out.push((unhex(*h).unwrap_or(0) << 4) | unhex(*l).unwrap_or(0));
                rest = more;
            }
            _ => {
                out.push(b);
                rest = tail;
            }
        }
    }
    out
}

/// RFC 3986 5.2.4 on bytes.
fn remove_dot_segments(mut input: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    while !input.is_empty() {
        if let Some(r) = input.strip_prefix(b"../").or_else(|| input.strip_prefix(b"./")) {
            input = r; // A
        } else if input.starts_with(b"/./") {
            input = &input[2..]; // B
        } else if input == b"/." {
            input = b"/";
        } else if input.starts_with(b"/../") || input == b"/.." {
            // C: drop the last output segment.
            input = if input == b"/.." { b"/" } else { &input[3..] };
            let cut = out.iter().rposition(|b| *b == b'/').unwrap_or(0);
            out.truncate(cut);
        } else if input == b"." || input == b".." {
            input = b""; // D
        } else {
            // E: move the first segment (with its leading '/').
            let start = usize::from(input[0] == b'/');
            let end = input[start..].iter().position(|b| *b == b'/').map_or(input.len(), |i| i + start);
            out.extend_from_slice(&input[..end]);
            input = &input[end..];
        }
    }
    out
}

/// The model: decode, make absolute, merge slashes, remove dot segments.
pub fn model(raw: &[u8]) -> Vec<u8> {
    let mut d = decode(raw);
    if d.first() != Some(&b'/') {
        d.insert(0, b'/');
    }
    let mut merged = Vec::with_capacity(d.len());
    for b in d {
        if !(b == b'/' && merged.last() == Some(&b'/')) {
            merged.push(b);
        }
    }
    let out = remove_dot_segments(&merged);
    if out.is_empty() {
        b"/".to_vec()
    } else {
        out
    }
}

fn has_escape(p: &[u8]) -> bool {
    p.windows(3).any(|w| w[0] == b'%' && unhex(w[1]).is_some() && unhex(w[2]).is_some())
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

pub fn run(data: &[u8]) {
    assert_eq!(path::is_valid(data), data.iter().all(u8::is_ascii_graphic));
    let (raw, rest) = path::split_query(data);
    assert_eq!([raw, rest].concat(), data);
    assert!(!raw.contains(&b'?') && !raw.contains(&b'#'));
    assert!(rest.is_empty() || rest[0] == b'?' || rest[0] == b'#');
    // The stream's one pass says what the three functions say.
    let want =
        path::Target { path: raw, rest, valid: path::is_valid(data), canonical: path::is_canonical(raw), fragment: rest.contains(&b'#') };
    assert_eq!(path::scan(data), want, "scan({:?})", show(data));

    let n = path::normalize(raw).into_owned();
    assert_eq!(show(&n), show(&model(raw)), "normalize({:?}) disagrees with the model", show(raw));
    assert_eq!(n, model(raw));
    assert_eq!(n.first(), Some(&b'/'));
    assert!(!n.windows(2).any(|w| w == b"//"), "// left in {:?}", show(&n));
    assert!(!n.split(|b| *b == b'/').any(|s| s == b"." || s == b".."), "dot segment left in {:?}", show(&n));
    if !has_escape(&n) {
        assert_eq!(path::normalize(&n).as_ref(), &n[..], "normalizing twice changed {:?}", show(&n));
    }
    // The forwarded form: visible ASCII, a path only, and it routes the same.
    let wire = path::encode(&n).into_owned();
    assert!(path::is_valid(wire.as_bytes()), "forwarded {wire:?} has bytes a host refuses");
    assert_eq!(path::split_query(wire.as_bytes()).1, b"", "forwarded {wire:?} grew a query");
    assert_eq!(path::normalize(wire.as_bytes()).as_ref(), &n[..], "forwarded {wire:?} routes elsewhere");
    // Canonical: what normalize and encode leave alone.
    let same = path::normalize(raw).as_ref() == raw && path::encode(raw).as_bytes() == raw;
    assert_eq!(path::is_canonical(raw), same, "is_canonical({:?})", show(raw));
}

#[cfg(test)]
mod tests {
    #[test]
    fn model_examples() {
        for (raw, want) in [("/a/./b/../../admin/", "/admin/"), ("a", "/a"), ("/a/..", "/"), ("/a/b/..", "/a/"), ("//x//y/", "/x/y/")] {
            assert_eq!(super::model(raw.as_bytes()), want.as_bytes(), "{raw}");
        }
    }
}
