//! Cache keys: how each is written in Redis and in invalidation messages,
//! and read back. Components are escaped so composite keys split safely and
//! Redis glob characters in an id can never widen a purge.

use std::fmt::Debug;
use std::hash::Hash;

/// A key a tier can cache under, locally and in Redis.
pub trait Key: Hash + Eq + Clone + Debug + Send + Sync + 'static {
    /// The key's text in Redis and on the invalidation channel.
    fn encode(&self) -> String;
    /// Reads `encode`'s output back; `None` for text it could not have made.
    fn decode(text: &str) -> Option<Self>;
    /// What an operator purges by. For a price that is the sku, covering
    /// every segment and currency; for most keys it is the whole key.
    fn id(&self) -> &str;
    /// Whether `encode` is `escape(id)` followed by more components (then a
    /// purge by id must match a prefix).
    const COMPOSITE: bool = false;
    /// The key's text as it was written under the previous data key: the
    /// same text unless the key is itself derived from the data key (a
    /// customer token's digest). Where a sealed record written before a
    /// rotation is looked for.
    fn encode_previous(&self) -> String {
        self.encode()
    }
    /// Bytes the key takes in memory, for L1's byte budget: keys carry
    /// client-chosen text (skus, cursors), so they are weighed too.
    fn weight(&self) -> usize {
        self.encode().len()
    }
}

impl Key for String {
    fn encode(&self) -> String {
        escape(self)
    }

    fn decode(text: &str) -> Option<String> {
        unescape(text)
    }

    fn id(&self) -> &str {
        self
    }
}

/// For entities cached as one value (the category tree).
impl Key for () {
    fn encode(&self) -> String {
        "all".into()
    }

    fn decode(text: &str) -> Option<()> {
        (text == "all").then_some(())
    }

    fn id(&self) -> &str {
        "all"
    }
}

const SPECIAL: &[char] = &[':', '%', '*', '?', '[', ']', '\\', ' '];

/// Percent-escapes the separator and Redis glob characters.
pub fn escape(part: &str) -> String {
    if !part.contains(SPECIAL) {
        return part.to_string();
    }
    let mut out = String::with_capacity(part.len() + 8);
    for c in part.chars() {
        if SPECIAL.contains(&c) {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

pub fn unescape(part: &str) -> Option<String> {
    if !part.contains('%') {
        return Some(part.to_string());
    }
    let mut out = String::with_capacity(part.len());
    let mut chars = part.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            let hex: String = chars.by_ref().take(2).collect();
            let byte = u8::from_str_radix(&hex, 16).ok()?;
            out.push(char::from(byte));
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Joins escaped components with `:`.
pub fn join(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| escape(p))
        .collect::<Vec<_>>()
        .join(":")
}

/// Splits `join`'s output into exactly `n` components.
pub fn split(text: &str, n: usize) -> Option<Vec<String>> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != n {
        return None;
    }
    parts.into_iter().map(unescape).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_keys_round_trip_with_awkward_characters() {
        let parts = ["SKU:1*", "vip 50%", "EUR"];
        let joined = join(&parts);
        assert_eq!(joined.matches(':').count(), 2);
        assert!(!joined.contains('*'));
        assert_eq!(split(&joined, 3).unwrap(), parts);
        assert_eq!(String::decode(&"a:b".to_string().encode()).unwrap(), "a:b");
        assert_eq!(split("a:b", 3), None);
    }
}
