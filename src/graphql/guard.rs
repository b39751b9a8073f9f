//! The first look at a query text, before any recursive parsing: a lexer
//! that reads GraphQL's lexical grammar exactly (comments end at `\n` or a
//! bare `\r`, strings and block strings with their escapes, BOMs ignored)
//! and bounds what a parser would have to recurse through or allocate for:
//! bracket nesting, tokens and aliases. A text that hides nesting in
//! something only this lexer and the parser disagree on cannot exist: a
//! text this lexer cannot read is refused here.

const BOM: &[u8] = "\u{feff}".as_bytes();

/// What a query text may hold.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Deepest nesting of `{`, `[` and `(` together.
    pub max_nesting: usize,
    pub max_tokens: usize,
    pub max_aliases: usize,
}

/// Why a text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Over one of the bounds; the message names it.
    TooLarge(String),
    /// Not GraphQL at the lexical level.
    Syntax(String),
}

/// What an open bracket belongs to, which decides whether `name:` inside
/// it is an alias (selection sets) or an argument or object field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Selection,
    Object,
    List,
    Arguments,
}

/// Reads the whole text once; refuses at the first bound it crosses.
pub fn check(text: &str, bounds: Bounds) -> Result<(), Refusal> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut stack: Vec<Open> = Vec::new();
    let mut tokens = 0usize;
    let mut aliases = 0usize;
    // A name just read directly inside a selection set: a `:` next makes it an alias.
    let mut name_in_selection = false;
    while i < bytes.len() {
        let c = bytes[i];
        // Ignored tokens: whitespace, line terminators, commas, comments.
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            // A byte-order mark is ignored wherever it stands.
            0xEF if bytes[i..].starts_with(BOM) => {
                i += BOM.len();
                continue;
            }
            _ => {}
        }
        tokens += 1;
        if tokens > bounds.max_tokens {
            return Err(Refusal::TooLarge(format!(
                "the query has more than {} tokens",
                bounds.max_tokens
            )));
        }
        let alias_candidate = std::mem::take(&mut name_in_selection);
        match c {
            b'{' | b'[' | b'(' => {
                let open = match c {
                    b'[' => Open::List,
                    b'(' => Open::Arguments,
                    // A brace inside a value position is an input object.
                    _ => match stack.last() {
                        Some(Open::Arguments | Open::List | Open::Object) => Open::Object,
                        _ => Open::Selection,
                    },
                };
                stack.push(open);
                if stack.len() > bounds.max_nesting {
                    return Err(Refusal::TooLarge(format!(
                        "the query nests brackets more than {} deep",
                        bounds.max_nesting
                    )));
                }
                i += 1;
            }
            b'}' | b']' | b')' => {
                // Unbalanced closers are the parser's to report.
                stack.pop();
                i += 1;
            }
            b':' => {
                if alias_candidate {
                    aliases += 1;
                    if aliases > bounds.max_aliases {
                        return Err(Refusal::TooLarge(format!(
                            "the query has more than {} aliases",
                            bounds.max_aliases
                        )));
                    }
                }
                i += 1;
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => i = block_string_end(bytes, i + 3)?,
            b'"' => i = string_end(bytes, i + 1)?,
            b'.' if bytes[i..].starts_with(b"...") => i += 3,
            b'_' | b'A'..=b'Z' | b'a'..=b'z' => {
                while i < bytes.len() && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                name_in_selection = stack.last() == Some(&Open::Selection);
            }
            b'-' | b'0'..=b'9' => {
                i += 1;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'.' | b'+' | b'-'))
                {
                    i += 1;
                }
            }
            b'!' | b'$' | b'&' | b'=' | b'@' | b'|' => i += 1,
            _ => {
                let ch = text[i..].chars().next().unwrap_or('\u{fffd}');
                let (line, column) = position(text, i);
                return Err(Refusal::Syntax(format!(
                    "Syntax Error: unexpected character {ch:?} at line {line}, column {column}"
                )));
            }
        }
    }
    Ok(())
}

/// The index just past a string whose body starts at `i`. A backslash
/// escapes the next character; a line terminator ends the text as an error.
fn string_end(bytes: &[u8], mut i: usize) -> Result<usize, Refusal> {
    let start = i - 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Ok(i + 1),
            b'\\' => i += 2,
            b'\n' | b'\r' => break,
            _ => i += 1,
        }
    }
    Err(unterminated(bytes, start, "string"))
}

/// The index just past a block string whose body starts at `i`. Only
/// `\"""` is an escape inside one.
fn block_string_end(bytes: &[u8], mut i: usize) -> Result<usize, Refusal> {
    let start = i - 3;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"\\\"\"\"") {
            i += 4;
        } else if bytes[i..].starts_with(b"\"\"\"") {
            return Ok(i + 3);
        } else {
            i += 1;
        }
    }
    Err(unterminated(bytes, start, "block string"))
}

fn unterminated(bytes: &[u8], at: usize, what: &str) -> Refusal {
    let text = String::from_utf8_lossy(bytes);
    let (line, column) = position(&text, at);
    Refusal::Syntax(format!(
        "Syntax Error: unterminated {what} starting at line {line}, column {column}"
    ))
}

/// 1-based line and column of byte `at`, counting `\r\n`, `\n` and `\r` as
/// line ends as the spec does.
fn position(text: &str, at: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..at.min(text.len())];
    let mut line = 1;
    let mut line_start = 0;
    let mut k = 0;
    while k < before.len() {
        match before[k] {
            b'\r' if before.get(k + 1) == Some(&b'\n') => {
                k += 1;
                line += 1;
                line_start = k + 1;
            }
            b'\n' | b'\r' => {
                line += 1;
                line_start = k + 1;
            }
            _ => {}
        }
        k += 1;
    }
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        max_nesting: 10,
        max_tokens: 1000,
        max_aliases: 5,
    };

    fn nesting_refused(text: &str) -> bool {
        matches!(check(text, BOUNDS), Err(Refusal::TooLarge(m)) if m.contains("nests"))
    }

    #[test]
    fn nesting_is_counted_outside_strings_and_comments_only() {
        assert_eq!(check("{ a { b } }", BOUNDS), Ok(()));
        assert_eq!(check(r#"{ a(x: "{{{{{{{{{{{{{{") }"#, BOUNDS), Ok(()));
        assert_eq!(check("# {{{{{{{{{{{{{{{\n{ a }", BOUNDS), Ok(()));
        assert!(nesting_refused(&"{a".repeat(11)));
        assert!(nesting_refused(&"[".repeat(11)));
    }

    #[test]
    fn a_bare_carriage_return_ends_a_comment() {
        // The parser reads `{`s after `\r` as code: so must the guard.
        assert!(nesting_refused(&format!("# c\r{}", "{a".repeat(11))));
        assert!(nesting_refused(&format!("# c\r\n{}", "{a".repeat(11))));
    }

    #[test]
    fn block_strings_are_one_token_with_their_own_escape() {
        // `"""` is one block string, not three strings: what follows the
        // closing `"""` is code.
        assert!(nesting_refused(&format!(
            r#"{{ a(x: """q""") {} }}"#,
            "{b".repeat(11)
        )));
        assert_eq!(check(r#"{ a(x: """{{{{{{{{{{{{{{{""") }"#, BOUNDS), Ok(()));
        // `\"""` does not end a block string; `\\"""` does not either (a
        // backslash escapes nothing else in a block string).
        assert_eq!(
            check(r#"{ a(x: """ \""" {{{{{{{{{{{{ """) }"#, BOUNDS),
            Ok(())
        );
        let open = format!(r#"{{ a(x: """ \\""" ) {} }}"#, "{b".repeat(11));
        assert!(matches!(check(&open, BOUNDS), Err(Refusal::Syntax(_))));
    }

    #[test]
    fn escaped_quotes_stay_inside_strings() {
        assert_eq!(check(r#"{ a(x: "\"{{{{{{{{{{{{{{{\"") }"#, BOUNDS), Ok(()));
        assert!(nesting_refused(&format!(
            r#"{{ a(x: "\\") {} }}"#,
            "{b".repeat(11)
        )));
    }

    #[test]
    fn nesting_in_defaults_and_directive_arguments_counts() {
        let deep_value = format!("{}1{}", "[".repeat(11), "]".repeat(11));
        assert!(nesting_refused(&format!(
            "query($v: [Int] = {deep_value}) {{ a }}"
        )));
        assert!(nesting_refused(&format!(
            "{{ a @include(if: {deep_value}) }}"
        )));
    }

    #[test]
    fn aliases_are_counted_in_selection_sets_only() {
        let five = "{ a: x b: x c: x d: x e: x }";
        assert_eq!(check(five, BOUNDS), Ok(()));
        let six = "{ a: x b: x c: x d: x e: x f: x }";
        assert!(matches!(check(six, BOUNDS), Err(Refusal::TooLarge(m)) if m.contains("aliases")));
        // Argument names, object fields and variable types are not aliases.
        let args = "query($a: Int, $b: Int) { x(a: 1, b: {c: 1, d: 2, e: 3, f: 4}) }";
        assert_eq!(check(args, BOUNDS), Ok(()));
    }

    #[test]
    fn tokens_are_bounded() {
        let many = format!("{{ {} }}", "a ".repeat(1000));
        assert!(matches!(check(&many, BOUNDS), Err(Refusal::TooLarge(m)) if m.contains("tokens")));
        // Comments and commas are not tokens.
        let commented = format!("{{ a }} {}", "# c\n,,,\n".repeat(2000));
        assert_eq!(check(&commented, BOUNDS), Ok(()));
    }

    #[test]
    fn what_cannot_be_lexed_is_refused_with_its_position() {
        let Err(Refusal::Syntax(m)) = check("{ a(x: \"open\n) }", BOUNDS) else {
            panic!("unterminated string accepted");
        };
        assert!(m.contains("line 1, column 8"), "{m}");
        let Err(Refusal::Syntax(m)) = check("{\r\n a(x: \"\"\"open) }", BOUNDS) else {
            panic!("unterminated block string accepted");
        };
        assert!(m.contains("line 2"), "{m}");
        assert!(matches!(check("{ a % }", BOUNDS), Err(Refusal::Syntax(_))));
        assert_eq!(check("\u{feff}{ a }", BOUNDS), Ok(()));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Texts made of GraphQL's tricky pieces: quotes, block quotes,
        /// escapes, comments, every line terminator, brackets, a BOM.
        fn tricky_text() -> impl Strategy<Value = String> {
            let piece = prop::sample::select(vec![
                "{", "}", "[", "]", "(", ")", "\"", "\"\"\"", "\\", "\\\"\"\"", "#", "\r", "\n",
                "\r\n", " ", ",", ":", "a", "b:", "...", "$v", "1", "-2.5e3", "@d", "\u{feff}",
                "é", "on", "fragment", "query",
            ]);
            prop::collection::vec(piece, 0..200).prop_map(|p| p.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// The guard reads any text without panicking, and what it lets
            /// through the parser handles on this (test) thread's stack.
            #[test]
            fn the_guard_and_the_parser_agree_on_any_text(text in tricky_text()) {
                let bounds = Bounds { max_nesting: 28, max_tokens: 5_000, max_aliases: 100 };
                if check(&text, bounds).is_ok() {
                    let _ = async_graphql::parser::parse_query(&text);
                }
            }

            /// Nesting hidden after any prefix is still counted.
            #[test]
            fn hidden_nesting_is_found(prefix in tricky_text()) {
                let bounds = Bounds { max_nesting: 28, max_tokens: 100_000, max_aliases: 100_000 };
                let text = format!("{prefix}\n{}", "[".repeat(40));
                // Either the prefix is not GraphQL, or the brackets are seen.
                prop_assert!(check(&text, bounds).is_err());
            }
        }
    }
}
