//! The canonical form of a gateway path's tail (SPEC §11): what route rules match and
//! what is forwarded, computed once per request.
//!
//! Upstreams decode and normalise paths before they route them (percent-decoding, dot
//! segments, `;` parameters, `//`), so a rule that looked at the raw path could be
//! walked around with `%73end-text` or `a/../send-text`. The tail is therefore put in
//! one canonical spelling, and anything whose meaning an upstream could read
//! differently from ours is refused instead of guessed at:
//! 1. escapes of unreserved characters (`A–Z a–z 0–9 - . _ ~`) are decoded; every
//!    other escape is kept with upper-case hex digits; raw bytes outside ASCII are
//!    escaped the same way, so one route has one spelling;
//! 2. refused: a `.` or `..` segment (also before a `;` parameter, raw or escaped
//!    as `%3B`), an empty segment (`//`, or nothing before a `;`), an escaped `/`, `\`
//!    or `%`-followed-by-two-hex-digits, a raw `\`, a control character raw or escaped,
//!    and a `%` that does not start a valid escape (`%%32%65` would otherwise turn
//!    into `%2e` on the way through).
//!
//! A trailing `/` is kept: `/items/` is a different resource from `/items` for many
//! APIs, and it cannot climb out of anything.

use std::borrow::Cow;

/// Why a tail was refused; the message is the `400` answer's `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("request path contains a '.' or '..' segment")]
    DotSegment,
    #[error("request path contains an empty segment")]
    EmptySegment,
    #[error("request path contains an encoded '/', '\\' or '%'")]
    EncodedSeparator,
    #[error("request path contains a backslash")]
    Backslash,
    #[error("request path contains a control character")]
    ControlCharacter,
    #[error("request path contains a malformed percent-escape")]
    BadEscape,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The canonical tail, borrowed when the input already is canonical (the common case).
pub fn canonical_tail(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    let needs_rewrite = bytes.iter().any(|&b| b == b'%' || b == b'\\' || is_control(b) || !b.is_ascii());
    let canonical = if needs_rewrite { Cow::Owned(rewrite(bytes)?) } else { Cow::Borrowed(raw) };
    check_segments(&canonical)?;
    Ok(canonical)
}

/// Step 1, with the byte-level refusals of step 2.
fn rewrite(bytes: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(bytes.len() + 8);
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let (Some(hi), Some(lo)) =
                    (bytes.get(i + 1).copied().and_then(hex_value), bytes.get(i + 2).copied().and_then(hex_value))
                else {
                    return Err(PathError::BadEscape);
                };
                let decoded = hi << 4 | lo;
                if is_control(decoded) {
                    return Err(PathError::ControlCharacter);
                }
                if matches!(decoded, b'/' | b'\\') {
                    return Err(PathError::EncodedSeparator);
                }
                if decoded == b'%' && starts_with_escape(bytes.get(i + 3..).unwrap_or_default()) {
                    return Err(PathError::EncodedSeparator);
                }
                if is_unreserved(decoded) {
                    out.push(char::from(decoded));
                } else {
                    push_escape(&mut out, decoded);
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            _ if is_control(b) => return Err(PathError::ControlCharacter),
            _ if !b.is_ascii() => {
                push_escape(&mut out, b);
                i += 1;
            }
            _ => {
                out.push(char::from(b));
                i += 1;
            }
        }
    }
    // `%25` followed by digits that were themselves escaped (`%25%32%65`) only becomes a
    // double encoding after decoding: look again at the output.
    if out.as_bytes().windows(5).any(|w| w.starts_with(b"%25") && w.get(3..).is_some_and(starts_with_escape_pair)) {
        return Err(PathError::EncodedSeparator);
    }
    Ok(out)
}

/// Whether `rest` begins with two hex digits (what would make a preceding `%` an escape).
fn starts_with_escape(rest: &[u8]) -> bool {
    rest.get(..2).is_some_and(starts_with_escape_pair)
}

fn starts_with_escape_pair(pair: &[u8]) -> bool {
    pair.len() >= 2 && pair.iter().take(2).all(|&b| hex_value(b).is_some())
}

fn push_escape(out: &mut String, b: u8) {
    use std::fmt::Write;
    let _ = write!(out, "%{b:02X}");
}

/// The part of a segment an upstream routes on: before its first `;` parameter, raw or
/// escaped (some frameworks decode before they cut parameters off).
pub fn segment_name(segment: &str) -> &str {
    let cut = [segment.find(';'), find_escaped_semicolon(segment)].into_iter().flatten().min();
    match cut {
        Some(at) => segment.get(..at).unwrap_or(segment),
        None => segment,
    }
}

fn find_escaped_semicolon(segment: &str) -> Option<usize> {
    segment.as_bytes().windows(3).position(|w| w.eq_ignore_ascii_case(b"%3B"))
}

/// Step 2 on segments.
fn check_segments(tail: &str) -> Result<(), PathError> {
    if tail.is_empty() {
        return Ok(());
    }
    // The tail starts with '/' (it follows the instance token), so the first piece is empty.
    let body = tail.strip_prefix('/').unwrap_or(tail);
    if plainly_segmented(body.as_bytes()) {
        return Ok(());
    }
    check_split_segments(body)
}

/// Step 2, segment by segment, on the tail after its first `/`.
fn check_split_segments(body: &str) -> Result<(), PathError> {
    let mut segments = body.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let name = segment_name(segment);
        if name == "." || name == ".." {
            return Err(PathError::DotSegment);
        }
        // A trailing '/' (an empty last segment) is allowed; an empty name is not.
        if name.is_empty() && !(last && segment.is_empty()) {
            return Err(PathError::EmptySegment);
        }
    }
    Ok(())
}

/// Whether `body` (the tail after its first `/`) passes step 2 without splitting it:
/// no `;` or `%` (so every segment is its own name), and no segment that is empty or
/// starts with a dot (so none is empty, `.` or `..`), except an empty last one.
fn plainly_segmented(body: &[u8]) -> bool {
    let mut after_slash = true;
    for &b in body {
        if b == b';' || b == b'%' || (after_slash && (b == b'/' || b == b'.')) {
            return false;
        }
        after_slash = b == b'/';
    }
    true
}

/// The other spelling of a canonical tail that a lenient upstream may route to the same
/// handler: `;` parameters cut from every segment and a trailing `/` dropped. `None`
/// when it is the same as the tail. Rules are checked against both, so neither form can
/// reach a route under weaker rules than the other.
pub fn route_form(canonical: &str) -> Option<String> {
    let has_params = canonical.contains(';') || find_escaped_semicolon(canonical).is_some();
    let trailing = canonical.len() > 1 && canonical.ends_with('/');
    if !has_params && !trailing {
        return None;
    }
    let mut out = String::with_capacity(canonical.len());
    for segment in canonical.strip_prefix('/').unwrap_or(canonical).split('/') {
        out.push('/');
        out.push_str(segment_name(segment));
    }
    while out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_shortcut_never_passes_what_splitting_refuses() {
        // Every string of up to 6 bytes over the bytes that matter.
        let alphabet = b"a/.;%";
        let mut checked = 0;
        let mut strings = vec![Vec::new()];
        for _ in 0..6 {
            let mut longer = Vec::new();
            for s in &strings {
                for &b in alphabet {
                    let mut t = s.clone();
                    t.push(b);
                    longer.push(t);
                }
            }
            for body in &longer {
                let text = std::str::from_utf8(body).unwrap();
                if plainly_segmented(body) {
                    assert_eq!(check_split_segments(text), Ok(()), "{text}");
                    checked += 1;
                }
            }
            strings = longer;
        }
        assert!(checked > 100, "the shortcut took {checked} strings");
        for plain in ["", "api/ping", "send-text", "a/b/", "chats/5511999999999/messages", "x.y/z.json"] {
            assert!(plainly_segmented(plain.as_bytes()), "{plain}");
        }
        for not in ["/x", ".", "..", "a//b", "a/./b", "a/..", "a;b", "a%3Bb", ".well-known"] {
            assert!(!plainly_segmented(not.as_bytes()), "{not}");
        }
    }

    #[test]
    fn canonical_inputs_are_borrowed() {
        for tail in ["", "/", "/send-text", "/a/b/c/", "/chats/5511999999999@c.us", "/x;v=1"] {
            assert!(matches!(canonical_tail(tail), Ok(Cow::Borrowed(t)) if t == tail), "{tail}");
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_others_upper_cased() {
        let cases = [
            ("/%73end-text", "/send-text"),
            ("/send%2Dtext", "/send-text"),
            ("/%7euser", "/~user"),
            ("/a%20b", "/a%20b"),
            ("/a%2ab", "/a%2Ab"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/café", "/caf%C3%A9"),
            ("/50%25", "/50%25"),
            ("/50%25zz", "/50%25zz"),
            ("/a%3bb", "/a%3Bb"),
            ("/x%2e", "/x."),
            ("/%2e.x", "/..x"),
        ];
        for (raw, want) in cases {
            assert_eq!(canonical_tail(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        use PathError::*;
        let cases = [
            ("/a/../send-text", DotSegment),
            ("/./send-text", DotSegment),
            ("/..", DotSegment),
            ("/a/%2e%2e/b", DotSegment),
            ("/a/%2E%2e/b", DotSegment),
            ("/a/.%2e/b", DotSegment),
            ("/a/..;x/b", DotSegment),
            ("/a/..;/b", DotSegment),
            ("/a/.;x/b", DotSegment),
            ("/a/..%3bx/b", DotSegment),
            ("//send-text", EmptySegment),
            ("/a//b", EmptySegment),
            ("/;x/send-text", EmptySegment),
            ("/a%2f..%2fb", EncodedSeparator),
            ("/a%2Fb", EncodedSeparator),
            ("/a%5cb", EncodedSeparator),
            ("/a/%252e%252e/b", EncodedSeparator),
            ("/a/%25%32%65", EncodedSeparator),
            ("/a\\b", Backslash),
            ("/a%00b", ControlCharacter),
            ("/a%0d%0aX:%20y", ControlCharacter),
            ("/a%7f", ControlCharacter),
            ("/a\tb", ControlCharacter),
            ("/a%", BadEscape),
            ("/a%4", BadEscape),
            ("/a%zz", BadEscape),
            ("/%u002e%u002e/b", BadEscape),
            ("/a/%%32%65%%32%65/b", BadEscape),
        ];
        for (raw, want) in cases {
            assert_eq!(canonical_tail(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn route_forms() {
        assert_eq!(route_form("/send-text"), None);
        assert_eq!(route_form("/"), None);
        assert_eq!(route_form("/send-text/").as_deref(), Some("/send-text"));
        assert_eq!(route_form("/send-text;x=1").as_deref(), Some("/send-text"));
        assert_eq!(route_form("/a;p/send-text%3Bjs").as_deref(), Some("/a/send-text"));
    }
}
