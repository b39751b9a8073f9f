//! A query text's shape: its tokens, with each string replaced by which
//! distinct string it is (the first, the second, ...). Texts of one shape
//! are one document but for the contents of their strings (and positions),
//! so every validation rule that does not look at values comes out the same
//! for all of them. Storefronts that write ids into the text
//! (`product(id: "…")`) send a new text per product but few shapes: once a
//! shape has passed the library's full validation, its other texts need
//! only the rules that look at values (`ValidationMode::Values`).
//!
//! Strings are numbered by content, so which of them are equal (what
//! `OverlappingFieldsCanBeMerged` compares) is part of the shape. Numbers
//! are kept as written, and so are names, `true`, `false`, `null` and enum
//! values: only string contents vary within a shape.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};

const BOM: &[u8] = "\u{feff}".as_bytes();

/// The shape of `text` as a keyed hash (the key is `keys`, random per
/// process, so a client cannot aim one text at another's shape), or `None`
/// for a text with escapes or block strings (a string's content then is
/// not its value) or anything else this lexer does not expect: such texts
/// are validated in full every time.
pub fn of(text: &str, keys: &RandomState) -> Option<u64> {
    let bytes = text.as_bytes();
    let mut hash = keys.build_hasher();
    let mut strings: HashMap<&str, u32, RandomState> = HashMap::with_hasher(keys.clone());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            0xEF if bytes[i..].starts_with(BOM) => i += BOM.len(),
            b'"' => {
                let start = i + 1;
                let len = bytes[start..]
                    .iter()
                    .position(|&b| matches!(b, b'"' | b'\\' | b'\n' | b'\r'))?;
                let end = start + len;
                // An escape, a line break, or `""` opening a block string.
                if bytes[end] != b'"' || (len == 0 && bytes.get(end + 1) == Some(&b'"')) {
                    return None;
                }
                let next = u32::try_from(strings.len()).ok()?;
                let which = *strings.entry(&text[start..end]).or_insert(next);
                hash.write_u8(b'"');
                hash.write_u32(which);
                i = end + 1;
            }
            // A name or a number, as written, then a byte no token holds.
            b'_' | b'-' | b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || matches!(bytes[i], b'_' | b'-' | b'+')
                        || (bytes[i] == b'.' && is_fraction(bytes, start, i)))
                {
                    i += 1;
                }
                hash.write(&bytes[start..i]);
                hash.write_u8(0);
            }
            b'.' if bytes[i..].starts_with(b"...") => {
                hash.write(b"...");
                i += 3;
            }
            c @ (b'!' | b'$' | b'&' | b'(' | b')' | b':' | b'=' | b'@' | b'[' | b']' | b'{'
            | b'|' | b'}') => {
                hash.write_u8(c);
                i += 1;
            }
            _ => return None,
        }
    }
    Some(hash.finish())
}

/// A `.` at `at` continues the number that starts at `start` (`1.5`), not
/// a name followed by a spread (`a...F`).
fn is_fraction(bytes: &[u8], start: usize, at: usize) -> bool {
    matches!(bytes[start], b'-' | b'0'..=b'9') && bytes.get(at + 1).is_some_and(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shape(text: &str) -> Option<u64> {
        thread_local!(static KEYS: RandomState = RandomState::new());
        KEYS.with(|keys| of(text, keys))
    }

    #[test]
    fn texts_that_differ_only_in_strings_share_a_shape() {
        let a = r#"{ product(id: "prod-000001") { name price { price { amount } } } }"#;
        let b = "{product(id:\"prod-912\"){name,price{price{amount}}}}# a comment";
        assert_eq!(shape(a), shape(b));
        assert!(shape(a).is_some());
        // Equal strings stay equal, different ones different.
        let same = r#"{ a: product(id: "1") { name } a: product(id: "1") { name } }"#;
        let also_same = r#"{ a: product(id: "xyz") { name } a: product(id: "xyz") { name } }"#;
        let differing = r#"{ a: product(id: "1") { name } a: product(id: "2") { name } }"#;
        assert_eq!(shape(same), shape(also_same));
        assert_ne!(shape(same), shape(differing));
    }

    #[test]
    fn anything_but_a_string_s_content_is_part_of_the_shape() {
        let base = r#"query Q($n: Int = 5) { products(first: 2) { nodes { id } } product(id: "1") { ...F } } fragment F on Product { name }"#;
        let others = [
            // another name, number, default, enum-like name, type, operation name
            r#"query Q($n: Int = 5) { products(first: 3) { nodes { id } } product(id: "1") { ...F } } fragment F on Product { name }"#,
            r#"query Q($n: Int = 6) { products(first: 2) { nodes { id } } product(id: "1") { ...F } } fragment F on Product { name }"#,
            r#"query Q($n: Float = 5) { products(first: 2) { nodes { id } } product(id: "1") { ...F } } fragment F on Product { name }"#,
            r#"query R($n: Int = 5) { products(first: 2) { nodes { id } } product(id: "1") { ...F } } fragment F on Product { name }"#,
            r#"query Q($n: Int = 5) { products(first: 2) { nodes { id } } product(sku: "1") { ...F } } fragment F on Product { name }"#,
            r#"query Q($n: Int = 5) { products(first: 2) { nodes { id } } product(id: 1) { ...F } } fragment F on Product { name }"#,
            r#"query Q($n: Int = 5) { products(first: 2) { nodes { id } } product(id: "1") { ...F } } fragment F on Product { id }"#,
            r#"query Q($n: Int = 5) { products(first: 2.0) { nodes { id } } product(id: "1") { ...F } } fragment F on Product { name }"#,
            r#"query Q($n: Int = 5) { products(first: 2) { nodes { id } } product(id: "1") { ... F } } fragment F on Product { name }"#,
            r#"query Q($n: Int = 5) { products(first: 2) { nodes { id } } product(id: "1") { ...F @skip(if: true) } } fragment F on Product { name }"#,
        ];
        let base_shape = shape(base).expect("a shape");
        for other in others {
            // `... F` and `...F` are one text to a parser; the shape may
            // tell them apart, but never joins two different documents.
            if other.contains("... F") {
                continue;
            }
            assert_ne!(shape(other), Some(base_shape), "{other}");
        }
        // Names and numbers are not run together with what follows them.
        assert_ne!(shape("{ a b }"), shape("{ ab }"));
        assert_ne!(shape("{ a(x: 1.5) }"), shape("{ a(x: 15) }"));
        assert_ne!(shape("{ a(x: -1) }"), shape("{ a(x: 1) }"));
        assert_eq!(shape("{ a(x: 1.5e+3) }"), shape("{a(x:1.5e+3)}"));
    }

    #[test]
    fn texts_whose_string_contents_are_not_their_values_have_no_shape() {
        for text in [
            r#"{ product(id: "a\"b") { name } }"#,
            r#"{ product(id: "a\u0062") { name } }"#,
            r#"{ product(id: """block""") { name } }"#,
            "{ product(id: \"open\n\") { name } }",
            r#"{ product(id: "unterminated) { name } }"#,
            "{ product(id: 1) { name } } ~",
            "{ a. }",
        ] {
            assert_eq!(shape(text), None, "{text}");
        }
        // An empty string is a string, not the start of a block string.
        assert!(shape(r#"{ product(id: "") { name } }"#).is_some());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Any client's text: a shape or none, never a panic.
        #[test]
        fn any_text_gets_a_shape_or_none(text in r##"[{}()\[\]:$!@=.,"#\\ a-z0-9\n\r\t\u{feff}\u{e9}-]{0,80}"##) {
            let _ = shape(&text);
        }

        /// Strings renamed one for one keep the shape; making two equal
        /// strings different changes it.
        #[test]
        fn renaming_strings_one_for_one_keeps_the_shape(
            a in "[a-z0-9-]{0,12}",
            b in "[a-z0-9-]{0,12}",
            c in "[a-z0-9-]{0,12}",
        ) {
            prop_assume!(a != b && b != c && a != c);
            let page = |x: &str, y: &str, z: &str| format!(
                r#"{{ p: product(id: "{x}") {{ name }} q: product(sku: "{y}") {{ id }} r: product(id: "{z}") {{ name }} }}"#
            );
            prop_assert_eq!(shape(&page(&a, &b, &a)), shape(&page(&b, &c, &b)));
            prop_assert_ne!(shape(&page(&a, &b, &a)), shape(&page(&a, &b, &c)));
        }
    }
}
