//! The path routes match and the path the upstream gets.
//!
//! MOSN matches routes against the decoded, normalized path (fasthttp's `URI.Path()`): every
//! `%XX` is decoded (`%2F` too), runs of `/` are merged and `.`/`..` segments removed; the
//! query is not part of it. So `/x/../admin`, `//admin`, `/%61dmin` and
//! `/public%2F..%2Fadmin` all match a `prefix: /admin` route.
//!
//! MOSN then forwards the client's raw request target, so a backend could see a different
//! path than the one routed on. Here the upstream gets exactly the path that was matched:
//! [`encode`] writes it back with the escaping nginx applies to a URI (`%XX` for controls,
//! space, `#`, `%`, `?` and bytes above 0x7e), and both hosts forward that. The query is
//! forwarded unchanged.
//!
//! A request target with a raw byte outside visible ASCII is malformed: [`is_valid`] says so,
//! and the stream answers 400 on both hosts (Envoy's codec refuses such bytes itself).

use std::borrow::Cow;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// True when every byte of the raw `:path` is visible ASCII (0x21..=0x7e).
pub fn is_valid(raw: &[u8]) -> bool {
    raw.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// `(path, rest)`: the raw path and what follows it (`?query`, `#fragment` or nothing).
pub fn split_query(raw: &[u8]) -> (&[u8], &[u8]) {
    let end = raw.iter().position(|b| *b == b'?' || *b == b'#').unwrap_or(raw.len());
    raw.split_at(end)
}

/// True when `p` (a path without query) routes and goes upstream exactly as it is: already
/// decoded and normalized, and nothing in it needs escaping. One pass; the common case.
pub fn is_canonical(p: &[u8]) -> bool {
    if p.first() != Some(&b'/') {
        return false;
    }
    // Bytes since the last '/': a segment of "." or ".." is not canonical, nor is "//".
    let mut seg_len = 0usize;
    let mut seg_dots = true;
    for &b in &p[1..] {
        if b == b'/' {
            if seg_len == 0 || (seg_dots && seg_len <= 2) {
                return false;
            }
            seg_len = 0;
            seg_dots = true;
            continue;
        }
        if b == b'%' || escaped(b) {
            return false;
        }
        seg_len += 1;
        seg_dots &= b == b'.';
    }
    !(seg_dots && (1..=2).contains(&seg_len))
}

/// A raw request target after one pass: what [`is_valid`], [`split_query`] and
/// [`is_canonical`] say of it, and whether its rest holds a `#`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The path, up to the first `?` or `#`.
    pub path: &'a [u8],
    /// What follows it (`?query`, `#fragment` or nothing).
    pub rest: &'a [u8],
    /// [`is_valid`] of the whole target.
    pub valid: bool,
    /// [`is_canonical`] of `path`.
    pub canonical: bool,
    /// `rest` holds a `#`.
    pub fragment: bool,
}

// Byte classes for `scan` (0: a byte a canonical segment may hold, other than `.`).
const SLASH: u8 = 1;
const DOT: u8 = 2;
/// `?` or `#`: the path ends.
const END: u8 = 4;
/// `%`, or a byte nginx escapes: the path is not canonical.
const NOT_CANONICAL: u8 = 8;
/// Outside visible ASCII: the target is invalid.
const INVALID: u8 = 16;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = match c {
            b'/' => SLASH,
            b'.' => DOT,
            b'?' | b'#' => END | NOT_CANONICAL,
            b'%' => NOT_CANONICAL,
            0x21..=0x7e => 0,
            _ => INVALID | NOT_CANONICAL,
        };
        b += 1;
    }
    t
};

/// [`Target`] of `raw`, in one pass over its bytes (three functions' work: the stream
/// reads it from every request).
// Always inlined: out of line, its prologue and the returned struct cost more than the
// scan of a short path such as `/` (~35 instructions).
#[inline(always)]
pub fn scan(raw: &[u8]) -> Target<'_> {
    let mut canonical = raw.first() == Some(&b'/');
    let mut valid = true;
    // Bytes since the last '/': a segment of "." or ".." is not canonical, nor is "//".
    let mut seg_len = 0usize;
    let mut seg_dots = true;
    let mut end = raw.len();
    for (i, &b) in raw.iter().enumerate().skip(usize::from(canonical)) {
        let c = CLASS[usize::from(b)];
        if c == 0 {
            seg_len += 1;
            seg_dots = false;
            continue;
        }
        if c & END != 0 {
            end = i;
            break;
        }
        if c & SLASH != 0 {
            canonical &= seg_len != 0 && !(seg_dots && seg_len <= 2);
            seg_len = 0;
            seg_dots = true;
            continue;
        }
        valid &= c & INVALID == 0;
        canonical &= c & NOT_CANONICAL == 0;
        seg_len += 1;
        seg_dots &= c & DOT != 0;
    }
    canonical &= !(seg_dots && (1..=2).contains(&seg_len));
    let (path, rest) = raw.split_at(end);
    let mut fragment = false;
    for &b in rest {
        valid &= CLASS[usize::from(b)] & INVALID == 0;
        fragment |= b == b'#';
    }
    Target { path, rest, valid, canonical, fragment }
}

/// True when decoding and normalizing would change nothing (the common case: no work).
fn is_normal(p: &[u8]) -> bool {
    p.first() == Some(&b'/')
        && !p.contains(&b'%')
        && !p.windows(2).any(|w| w == b"//")
        && !p.split(|b| *b == b'/').any(|seg| seg == b"." || seg == b"..")
}

/// The decoded, normalized form of a raw path (without its query).
pub fn normalize(p: &[u8]) -> Cow<'_, [u8]> {
    if is_normal(p) {
        return Cow::Borrowed(p);
    }
    // 1. Decode every valid escape; a `%` not followed by two hex digits stays as it is.
    let mut decoded = Vec::with_capacity(p.len() + 1);
    if p.first() != Some(&b'/') {
        decoded.push(b'/');
    }
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'%' && i + 2 < p.len() {
            if let (Some(h), Some(l)) = (hex(p[i + 1]), hex(p[i + 2])) {
                decoded.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        decoded.push(p[i]);
        i += 1;
    }
    // 2. Merge slashes and remove dot segments.
    let mut out: Vec<&[u8]> = Vec::new();
    let trailing = decoded.ends_with(b"/") || decoded.ends_with(b"/.") || decoded.ends_with(b"/..");
    for seg in decoded.split(|b| *b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = Vec::with_capacity(decoded.len());
    for s in &out {
        path.push(b'/');
        path.extend_from_slice(s);
    }
    if path.is_empty() || (trailing && !out.is_empty()) {
        path.push(b'/');
    }
    Cow::Owned(path)
}

/// Bytes nginx escapes in a URI (`NGX_ESCAPE_URI`): controls, space, `#`, `%`, `?`, DEL
/// and everything above 0x7e.
fn escaped(b: u8) -> bool {
    b <= 0x20 || b >= 0x7f || matches!(b, b'#' | b'%' | b'?')
}

/// A normalized path written back as a request target (see the module doc).
pub fn encode(path: &[u8]) -> Cow<'_, str> {
    if !path.iter().any(|b| escaped(*b)) {
        // Only visible ASCII: valid UTF-8.
        return Cow::Borrowed(std::str::from_utf8(path).unwrap_or("/"));
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(path.len() + 8);
    for &b in path {
        if escaped(b) {
            s.push('%');
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 15)] as char);
        } else {
            s.push(b as char);
        }
    }
    Cow::Owned(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        String::from_utf8_lossy(&normalize(s.as_bytes())).into_owned()
    }

    fn fwd(s: &str) -> String {
        encode(&normalize(split_query(s.as_bytes()).0)).into_owned()
    }

    #[test]
    fn normal_paths_are_borrowed() {
        assert!(matches!(normalize(b"/api/orders"), Cow::Borrowed(b"/api/orders")));
        assert!(matches!(encode(b"/api/orders"), Cow::Borrowed("/api/orders")));
        assert_eq!(split_query(b"/a?b=1#c"), (&b"/a"[..], &b"?b=1#c"[..]));
        assert_eq!(n("/"), "/");
        assert_eq!(n("/a/b/"), "/a/b/");
    }

    #[test]
    fn bypass_spellings_normalize_to_the_real_path() {
        assert_eq!(n("/x/../admin/x"), "/admin/x");
        assert_eq!(n("//admin/x"), "/admin/x");
        assert_eq!(n("/%61dmin/x"), "/admin/x");
        assert_eq!(n("/%2e%2e/admin"), "/admin");
        assert_eq!(n("/a/./b/../../admin/"), "/admin/");
        assert_eq!(n("/../../admin"), "/admin");
        assert_eq!(n("admin"), "/admin");
        assert_eq!(n("/a/.."), "/");
        assert_eq!(n("/a/b/.."), "/a/");
        // MOSN decodes %2F too: an encoded slash is a slash.
        assert_eq!(n("/public%2F..%2Fadmin"), "/admin");
        assert_eq!(n("/a%2fb"), "/a/b");
    }

    #[test]
    fn escapes_decode_once_and_forward_as_nginx_escapes() {
        assert_eq!(n("/a%2"), "/a%2");
        assert_eq!(n("/a%zz"), "/a%zz");
        assert_eq!(n("/%"), "/%");
        assert_eq!(fwd("/a%20b"), "/a%20b");
        assert_eq!(fwd("/a%252F"), "/a%252F", "decoded once: %25 is a literal % again on the wire");
        assert_eq!(fwd("/%E4%BD%A0"), "/%E4%BD%A0");
        assert_eq!(fwd("/a%3Fb"), "/a%3Fb", "an encoded ? stays part of the path");
        assert_eq!(fwd("/public%2F..%2Fadmin?x=%2F"), "/admin");
        assert_eq!(fwd("/%7e%61"), "/~a");
        assert_eq!(fwd("/a\"b"), "/a\"b");
    }

    #[test]
    fn canonical_is_what_normalize_and_encode_leave_alone() {
        for p in [
            "/", "/a", "/a/b/", "/a/./b", "/a/../b", "//a", "/a//b", "/.", "/..", "/.a", "/a..", "/...", "/a%20b", "/a b", "a", "", "/a?",
            "/é",
        ] {
            let p = p.as_bytes();
            let same = normalize(p).as_ref() == p && encode(p).as_bytes() == p;
            assert_eq!(is_canonical(p), same, "{:?}", String::from_utf8_lossy(p));
        }
    }

    /// `scan` says what the three functions say, on every short target over an alphabet
    /// of the bytes that matter.
    #[test]
    fn scan_agrees_with_the_functions_it_fuses() {
        let alphabet = b"/.?#%a\x00\x80 ";
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..200_000 {
            let raw: Vec<u8> = (0..rng.usize(0..9)).map(|_| alphabet[rng.usize(0..alphabet.len())]).collect();
            let (path, rest) = split_query(&raw);
            let want = Target { path, rest, valid: is_valid(&raw), canonical: is_canonical(path), fragment: rest.contains(&b'#') };
            assert_eq!(scan(&raw), want, "{:?}", String::from_utf8_lossy(&raw));
        }
    }

    #[test]
    fn raw_bytes_outside_visible_ascii_are_invalid() {
        assert!(is_valid(b"/a/b?c=d"));
        assert!(!is_valid(b"/a\x80b"));
        assert!(!is_valid(b"/a b"));
        assert!(!is_valid(b"/a\x00"));
    }

    #[test]
    fn the_forwarded_path_routes_the_same() {
        // Decoding is done once: the property is on the wire form, not on decoding twice.
        for p in ["/a/../b", "//x//y/", "/%2e/%2F/z", "/a%zz/../b", "/.", "/..", "/%25%2e%2e/", "/a%2541"] {
            let once = normalize(p.as_bytes()).into_owned();
            let segs: Vec<&[u8]> = once.split(|b| *b == b'/').skip(1).collect();
            assert!(!segs.iter().any(|s| *s == b"." || *s == b".."), "{p}: dot segment left");
            assert!(!once.windows(2).any(|w| w == b"//"), "{p}: // left");
            let wire = encode(&once).into_owned();
            assert_eq!(normalize(wire.as_bytes()).into_owned(), once, "{p}: the forwarded path routes the same");
        }
    }
}
