//! The path routes match against: the request path normalized like a server would see it.
//!
//! Matching the raw `:path` would let `/x/../admin`, `//admin` or `/%61dmin` slip past a
//! `prefix: /admin` route while the backend still serves `/admin`. So before matching, the
//! query is dropped, `%XX` escapes of unreserved characters are decoded, runs of `/` are
//! merged and `.`/`..` segments are removed (RFC 3986 §6.2.2, §5.2.4). Other escapes (e.g.
//! `%2F`) stay encoded, so they never create new segments.

use std::borrow::Cow;

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// True when the path needs no work (the common case: no allocation).
fn is_normal(p: &[u8]) -> bool {
    p.first() == Some(&b'/')
        && !p.contains(&b'%')
        && !p.windows(2).any(|w| w == b"//")
        && !p.split(|b| *b == b'/').any(|seg| seg == b"." || seg == b"..")
}

/// The normalized path of a `:path` value (query and fragment removed).
pub fn normalize(raw: &[u8]) -> Cow<'_, [u8]> {
    let end = raw.iter().position(|b| *b == b'?' || *b == b'#').unwrap_or(raw.len());
    let p = &raw[..end];
    if is_normal(p) {
        return Cow::Borrowed(p);
    }
    // 1. Decode escapes of unreserved characters.
    let mut decoded = Vec::with_capacity(p.len() + 1);
    if p.first() != Some(&b'/') {
        decoded.push(b'/');
    }
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'%' && i + 2 < p.len() {
            if let (Some(h), Some(l)) = (hex(p[i + 1]), hex(p[i + 2])) {
                let c = h * 16 + l;
                if unreserved(c) {
                    decoded.push(c);
                    i += 3;
                    continue;
                }
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

#[cfg(test)]
mod tests {
    use super::normalize;

    fn n(s: &str) -> String {
        String::from_utf8(normalize(s.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn normal_paths_are_borrowed() {
        assert!(matches!(normalize(b"/api/orders?id=1"), std::borrow::Cow::Borrowed(b"/api/orders")));
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
    }

    #[test]
    fn reserved_escapes_stay_encoded() {
        assert_eq!(n("/a%2Fb"), "/a%2Fb");
        assert_eq!(n("/a%2"), "/a%2");
        assert_eq!(n("/a%zz"), "/a%zz");
        assert_eq!(n("/%"), "/%");
    }
}
