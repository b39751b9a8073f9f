//! Query texts read into the library's `ExecutableDocument` in one pass
//! over the bytes. The library's parser (a PEG interpreter) was the largest
//! single cost of a product page whose text is new, about a quarter of a
//! cold page; this reader builds the same document, positions included,
//! for the texts storefronts send, in a tenth of that.
//!
//! It declines (`None`) whatever it does not read exactly as the library
//! does, and the library parses that text instead, so every syntax error
//! reads as it always has. Declined: anything malformed, escapes in
//! strings, block strings, and the corners where the library's grammar
//! reads GraphQL its own way (`queryFoo` as `query Foo`, `[0123]` as
//! `[0, 123]`, an enum value that starts with `true`, a variable's
//! directives after its default value).
//!
//! Its tests hold it to the library's parser on every text it accepts.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use async_graphql::parser::types::{
    BaseType, Directive, DocumentOperations, ExecutableDocument, Field, FragmentDefinition,
    FragmentSpread, InlineFragment, OperationDefinition, OperationType, Selection, SelectionSet,
    Type, TypeCondition, VariableDefinition,
};
use async_graphql::parser::{Pos, Positioned};
use async_graphql::{Name, Number};
use async_graphql_value::{ConstValue, Value};

/// The library's limit on nested selection sets (it refuses the 65th).
const SELECTION_DEPTH: usize = 64;
/// Deeper lists, objects or list types than this are left to the library.
const VALUE_DEPTH: usize = 64;

/// The document the library's `parse_query` would make of `text`, or `None`
/// where the library should read it.
pub fn read(text: &str) -> Option<ExecutableDocument> {
    let mut reader = Reader {
        bytes: text.as_bytes(),
        text,
        i: 0,
        seen: 0,
        line: 1,
        column: 1,
    };
    let mut operations: Option<DocumentOperations> = None;
    let mut fragments = HashMap::new();
    reader.skip_ignored();
    if reader.i == reader.bytes.len() {
        return None;
    }
    while reader.i < reader.bytes.len() {
        let start = reader.i;
        if reader.peek() == Some(b'{') {
            let pos = reader.pos(start);
            let operation = OperationDefinition {
                ty: OperationType::Query,
                variable_definitions: Vec::new(),
                directives: Vec::new(),
                selection_set: reader.selection_set(SELECTION_DEPTH)?,
            };
            if operations.is_some() {
                return None;
            }
            operations = Some(DocumentOperations::Single(Positioned::new(operation, pos)));
        } else {
            let keyword = reader.word()?;
            let pos = reader.pos(start);
            if keyword == "fragment" {
                let (name, fragment) = reader.fragment()?;
                match fragments.entry(name) {
                    Entry::Occupied(_) => return None,
                    Entry::Vacant(entry) => entry.insert(Positioned::new(fragment, pos)),
                };
            } else {
                let ty = match keyword {
                    "query" => OperationType::Query,
                    "mutation" => OperationType::Mutation,
                    "subscription" => OperationType::Subscription,
                    _ => return None,
                };
                let (name, operation) = reader.operation(ty)?;
                let operation = Positioned::new(operation, pos);
                match (&mut operations, name) {
                    (None, None) => operations = Some(DocumentOperations::Single(operation)),
                    (None, Some(name)) => {
                        operations = Some(DocumentOperations::Multiple(HashMap::from([(
                            name, operation,
                        )])));
                    }
                    (Some(DocumentOperations::Multiple(named)), Some(name)) => {
                        match named.entry(name) {
                            Entry::Occupied(_) => return None,
                            Entry::Vacant(entry) => entry.insert(operation),
                        };
                    }
                    // An anonymous operation beside another: the library's error.
                    (Some(_), _) => return None,
                }
            }
        }
        reader.skip_ignored();
    }
    Some(ExecutableDocument {
        operations: operations?,
        fragments,
    })
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    /// The next byte to read.
    i: usize,
    /// Where `line` and `column` were last counted to, as the library
    /// counts: columns in characters, `\r` back to column 1, `\n` a new line.
    seen: usize,
    line: usize,
    column: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.i).copied()
    }

    /// The position of the byte at `at`, which is never before the last one
    /// asked for (positions are asked in the order of the text).
    fn pos(&mut self, at: usize) -> Pos {
        for &b in &self.bytes[self.seen..at] {
            match b {
                b'\r' => self.column = 1,
                b'\n' => {
                    self.line += 1;
                    self.column = 1;
                }
                // The first byte of a character.
                b if b & 0xC0 != 0x80 => self.column += 1,
                _ => {}
            }
        }
        self.seen = at;
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    /// Whitespace, commas, line terminators, byte-order marks and comments.
    fn skip_ignored(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b',' | b'\n' | b'\r' => self.i += 1,
                0xEF if self.bytes[self.i..].starts_with(BOM) => self.i += BOM.len(),
                b'#' => {
                    while !matches!(self.peek(), None | Some(b'\n' | b'\r')) {
                        self.i += 1;
                    }
                }
                _ => return,
            }
        }
    }

    /// `byte` next, after what is ignored, and read.
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.skip_ignored();
        (self.peek()? == byte).then(|| self.i += 1)
    }

    /// A name, as text.
    fn word(&mut self) -> Option<&'a str> {
        let start = self.i;
        if !self
            .peek()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        {
            return None;
        }
        self.i += 1;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.i += 1;
        }
        Some(&self.text[start..self.i])
    }

    /// The next name, after what is ignored, with its position.
    fn name(&mut self) -> Option<Positioned<Name>> {
        self.skip_ignored();
        let start = self.i;
        let word = self.word()?;
        let name = Name::new(word);
        Some(Positioned::new(name, self.pos(start)))
    }

    fn operation(&mut self, ty: OperationType) -> Option<(Option<Name>, OperationDefinition)> {
        self.skip_ignored();
        let name = match self.peek()? {
            b'{' | b'(' | b'@' => None,
            _ => Some(self.name()?.node),
        };
        self.skip_ignored();
        let mut variable_definitions = Vec::new();
        if self.peek()? == b'(' {
            self.i += 1;
            loop {
                self.skip_ignored();
                if self.peek()? == b')' {
                    self.i += 1;
                    break;
                }
                variable_definitions.push(self.variable_definition()?);
            }
        }
        let directives = self.directives()?;
        self.skip_ignored();
        let selection_set = self.selection_set(SELECTION_DEPTH)?;
        let operation = OperationDefinition {
            ty,
            variable_definitions,
            directives,
            selection_set,
        };
        Some((name, operation))
    }

    fn variable_definition(&mut self) -> Option<Positioned<VariableDefinition>> {
        let pos = self.pos(self.i);
        self.expect(b'$')?;
        let name = self.name()?;
        self.expect(b':')?;
        let var_type = self.type_()?;
        let directives = self.directives()?;
        self.skip_ignored();
        let default_value = if self.peek()? == b'=' {
            self.i += 1;
            self.skip_ignored();
            let pos = self.pos(self.i);
            let value = self.value(VALUE_DEPTH)?;
            let value = value.into_const_with(|_| Err::<ConstValue, ()>(())).ok()?;
            Some(Positioned::new(value, pos))
        } else {
            None
        };
        Some(Positioned::new(
            VariableDefinition {
                name,
                var_type,
                directives,
                default_value,
            },
            pos,
        ))
    }

    /// A type, written without anything ignored inside it (the library's
    /// grammar reads it as one token).
    fn type_(&mut self) -> Option<Positioned<Type>> {
        self.skip_ignored();
        let start = self.i;
        let ty = self.type_within(VALUE_DEPTH)?;
        Some(Positioned::new(ty, self.pos(start)))
    }

    fn type_within(&mut self, depth: usize) -> Option<Type> {
        let base = if self.peek()? == b'[' {
            self.i += 1;
            let inner = self.type_within(depth.checked_sub(1)?)?;
            (self.peek()? == b']').then_some(())?;
            self.i += 1;
            BaseType::List(Box::new(inner))
        } else {
            BaseType::Named(Name::new(self.word()?))
        };
        let nullable = self.peek() != Some(b'!');
        if !nullable {
            self.i += 1;
        }
        Some(Type { base, nullable })
    }

    fn fragment(&mut self) -> Option<(Name, FragmentDefinition)> {
        let name = self.name()?.node;
        self.skip_ignored();
        let type_condition = self.type_condition()?;
        let directives = self.directives()?;
        self.skip_ignored();
        let selection_set = self.selection_set(SELECTION_DEPTH)?;
        let fragment = FragmentDefinition {
            type_condition,
            directives,
            selection_set,
        };
        Some((name, fragment))
    }

    /// `on Type`: the library wants whitespace (not a comment) between.
    fn type_condition(&mut self) -> Option<Positioned<TypeCondition>> {
        let start = self.i;
        if self.word()? != "on" {
            return None;
        }
        let before = self.i;
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b',' | b'\n' | b'\r' => self.i += 1,
                0xEF if self.bytes[self.i..].starts_with(BOM) => self.i += BOM.len(),
                _ => break,
            }
        }
        let at = self.i;
        if at == before {
            return None;
        }
        let word = self.word()?;
        let on = Name::new(word);
        let pos = self.pos(start);
        let on = Positioned::new(on, self.pos(at));
        Some(Positioned::new(TypeCondition { on }, pos))
    }

    /// `{ selection+ }`, the `{` next.
    fn selection_set(&mut self, depth: usize) -> Option<Positioned<SelectionSet>> {
        if self.peek()? != b'{' {
            return None;
        }
        let pos = self.pos(self.i);
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ignored();
            if self.peek()? == b'}' {
                self.i += 1;
                break;
            }
            items.push(self.selection(depth)?);
        }
        if items.is_empty() {
            return None;
        }
        Some(Positioned::new(SelectionSet { items }, pos))
    }

    fn selection(&mut self, depth: usize) -> Option<Positioned<Selection>> {
        let start = self.i;
        let pos = self.pos(start);
        if !self.bytes[start..].starts_with(b"...") {
            let field = self.field(depth)?;
            return Some(Positioned::new(
                Selection::Field(Positioned::new(field, pos)),
                pos,
            ));
        }
        self.i += 3;
        self.skip_ignored();
        let at = self.i;
        let spread = match self.peek()? {
            b'{' | b'@' => None,
            _ => match self.word()? {
                "on" => {
                    self.i = at;
                    Some(self.type_condition()?)
                }
                _ => {
                    self.i = at;
                    let fragment_name = self.name()?;
                    let directives = self.directives()?;
                    let spread = FragmentSpread {
                        fragment_name,
                        directives,
                    };
                    return Some(Positioned::new(
                        Selection::FragmentSpread(Positioned::new(spread, pos)),
                        pos,
                    ));
                }
            },
        };
        let directives = self.directives()?;
        self.skip_ignored();
        let fragment = InlineFragment {
            type_condition: spread,
            directives,
            selection_set: self.selection_set(depth.checked_sub(1)?)?,
        };
        Some(Positioned::new(
            Selection::InlineFragment(Positioned::new(fragment, pos)),
            pos,
        ))
    }

    fn field(&mut self, depth: usize) -> Option<Field> {
        let first = self.name()?;
        self.skip_ignored();
        let (alias, name) = if self.peek() == Some(b':') {
            self.i += 1;
            (Some(first), self.name()?)
        } else {
            (None, first)
        };
        self.skip_ignored();
        let arguments = if self.peek() == Some(b'(') {
            self.arguments()?
        } else {
            Vec::new()
        };
        let directives = self.directives()?;
        self.skip_ignored();
        let selection_set = if self.peek() == Some(b'{') {
            self.selection_set(depth.checked_sub(1)?)?
        } else {
            Positioned::default()
        };
        Some(Field {
            alias,
            name,
            arguments,
            directives,
            selection_set,
        })
    }

    /// `( name: value+ )`, the `(` next.
    fn arguments(&mut self) -> Option<Vec<(Positioned<Name>, Positioned<Value>)>> {
        self.i += 1;
        let mut arguments = Vec::new();
        loop {
            self.skip_ignored();
            if self.peek()? == b')' {
                self.i += 1;
                break;
            }
            let name = self.name()?;
            self.expect(b':')?;
            self.skip_ignored();
            let pos = self.pos(self.i);
            let value = self.value(VALUE_DEPTH)?;
            arguments.push((name, Positioned::new(value, pos)));
        }
        (!arguments.is_empty()).then_some(arguments)
    }

    /// `@name(arguments)?` as many times as they come.
    fn directives(&mut self) -> Option<Vec<Positioned<Directive>>> {
        let mut directives = Vec::new();
        loop {
            self.skip_ignored();
            if self.peek() != Some(b'@') {
                return Some(directives);
            }
            let pos = self.pos(self.i);
            self.i += 1;
            let name = self.name()?;
            self.skip_ignored();
            let arguments = if self.peek() == Some(b'(') {
                self.arguments()?
            } else {
                Vec::new()
            };
            directives.push(Positioned::new(Directive { name, arguments }, pos));
        }
    }

    /// A value, its first byte next.
    fn value(&mut self, depth: usize) -> Option<Value> {
        let depth = depth.checked_sub(1)?;
        Some(match self.peek()? {
            b'$' => {
                self.i += 1;
                Value::Variable(self.name()?.node)
            }
            b'-' | b'0'..=b'9' => Value::Number(self.number()?),
            b'"' => Value::String(self.string()?),
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ignored();
                    if self.peek()? == b']' {
                        self.i += 1;
                        break Value::List(items);
                    }
                    items.push(self.value(depth)?);
                }
            }
            b'{' => {
                self.i += 1;
                let mut fields = Vec::new();
                loop {
                    self.skip_ignored();
                    if self.peek()? == b'}' {
                        self.i += 1;
                        break Value::Object(fields.into_iter().collect());
                    }
                    let name = self.name()?.node;
                    self.expect(b':')?;
                    self.skip_ignored();
                    fields.push((name, self.value(depth)?));
                }
            }
            _ => match self.word()? {
                "true" => Value::Boolean(true),
                "false" => Value::Boolean(false),
                "null" => Value::Null,
                // The library refuses these as enum values.
                word if ["true", "false", "null"]
                    .iter()
                    .any(|w| word.starts_with(w)) =>
                {
                    return None;
                }
                word => Value::Enum(Name::new(word)),
            },
        })
    }

    /// An int or a float, ending where no name, digit or `.` follows.
    fn number(&mut self) -> Option<Number> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digits_at_least_one()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.digits_at_least_one()?;
        }
        if self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return None;
        }
        self.text[start..self.i].parse().ok()
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
    }

    fn digits_at_least_one(&mut self) -> Option<()> {
        let start = self.i;
        self.digits();
        (self.i > start).then_some(())
    }

    /// A `"…"` string without escapes, the `"` next.
    fn string(&mut self) -> Option<String> {
        if self.bytes[self.i..].starts_with(b"\"\"\"") {
            return None;
        }
        self.i += 1;
        let start = self.i;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' | b'\n' | b'\r' => return None,
                _ => self.i += 1,
            }
        }
        let content = self.text[start..self.i].to_string();
        self.i += 1;
        Some(content)
    }
}

const BOM: &[u8] = "\u{feff}".as_bytes();

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;
    use proptest::prelude::*;

    use super::*;

    /// The document as text, positions included, its operations and
    /// fragments in name order.
    fn shown(doc: &ExecutableDocument) -> String {
        let mut out = String::new();
        match &doc.operations {
            DocumentOperations::Single(op) => out += &format!("{op:?}\n"),
            DocumentOperations::Multiple(ops) => {
                let mut ops: Vec<_> = ops.iter().collect();
                ops.sort_by(|a, b| a.0.cmp(b.0));
                for (name, op) in ops {
                    out += &format!("{name}: {op:?}\n");
                }
            }
        }
        let mut fragments: Vec<_> = doc.fragments.iter().collect();
        fragments.sort_by(|a, b| a.0.cmp(b.0));
        for (name, fragment) in fragments {
            out += &format!("fragment {name}: {fragment:?}\n");
        }
        out
    }

    /// The reader's document for `text` is the library's, or there is none.
    fn agrees(text: &str) -> bool {
        match read(text) {
            None => true,
            Some(ours) => match parse_query(text) {
                Ok(theirs) => shown(&ours) == shown(&theirs),
                Err(_) => false,
            },
        }
    }

    fn assert_read(text: &str) {
        let ours = read(text).unwrap_or_else(|| panic!("declined: {text:?}"));
        let theirs = parse_query(text).unwrap();
        assert_eq!(shown(&ours), shown(&theirs), "{text:?}");
    }

    /// What storefronts send, and every construct of the grammar.
    const READ: &[&str] = &[
        r#"{ product(id: "prod-000001") { name price { price { amount } } availability { status } } }"#,
        "query($id: ID!) { product(id: $id) { name price { price { amount } } availability { status } } }",
        "# a storefront's page\n\
         query Page($id: ID!, $first: Int = 10, $skip: Boolean = false, $ids: [ID!]! = [\"a\", \"b\"], \
         $f: Filter = {min: -1.5e3, tags: [RED, GREEN], on: true, off: null}, $m: [[Int]!]) @live {\n\
           product(id: $id) { ...Card @include(if: true) id\n\
             alias: name, price(currency: EUR) { amount }\n\
             ... on Product @skip(if: $skip) { sku }\n\
             ... @include(if: $skip) { description }\n\
             ...   on   Product { id }\n\
             ...on Product { id }\n\
             ... onSale\n\
           }\n\
           list: products(first: $first, filter: {in: [1, 2.0, 3e2, -0, 0.5E-2], nested: {deep: [[]], empty: {}}, a: 1, a: 2}) { edges { node { id } } }\n\
         }\n\
         mutation Buy { verifyCheckout(cart: {lines: [{sku: \"S\", quantity: 2}]}) }\n\
         fragment Card on Product @dir(a: 1) { name ,, }\n\
         fragment onSale on Product { sale }",
        "query Q {\r\n  a(s: \"héllo ✓\") # ümlaut comment\r  b\n\u{feff}c(t: \"\") }",
        "subscription S { a }",
        "query { a }",
        "query($a: Int) { a }",
        "query Q() { a }",
        "query Q @d { a }",
        "{a{b{c}}}",
        "{ a(x: $ v) @ d(if: $ w) }",
        "{ true false null fragment query on }",
        "\u{feff}\n\n  { a }  # trailing\n",
    ];

    #[test]
    fn reads_what_storefronts_send_as_the_library_does() {
        for text in READ {
            assert_read(text);
        }
    }

    #[test]
    fn leaves_errors_and_the_library_s_own_readings_to_the_library() {
        let declined = [
            "",
            "   # only a comment",
            "{}",
            "{ a(",
            "{ a() }",
            "{ a }}",
            "{ a } { b }",
            "query A { a } query A { b }",
            "query A { a } { b }",
            "fragment F on T { a } fragment F on T { b } { a }",
            "fragment F on T { a }",
            "queryX { a }",
            "fragmentF on T { a }",
            "{ ...F } fragment F on# c\nT { a }",
            "{ ... on # c\n T { a } }",
            "{ ... on }",
            r#"{ a(x: "\n") }"#,
            r#"{ a(x: """block""") }"#,
            "{ a(x: \"open\n\") }",
            "{ a(x: [0123]) }",
            "{ a(x: 1.) }",
            "{ a(x: 1.5.3) }",
            "{ a(x: 1e) }",
            "{ a(x: 12abc) }",
            "{ a(x: -) }",
            "{ a(x: [trueish]) }",
            "{ a(x: nullable) }",
            "{ a(x: $) }",
            "query($a: Int = 1 @d) { a }",
            "query($a: Int = $b) { a }",
            "query($a: [ Int ]) { a }",
            "query($a: Int!!) { a }",
            "query($a Int) { a }",
            "{ a @ }",
            "{ a: }",
            "{ a(x: { y }) }",
            "{ ... }",
            "{ a { } }",
        ];
        for text in declined {
            assert!(read(text).is_none(), "read: {text:?}");
        }
        // Past the library's nesting limit, its error is the answer.
        let deep = format!("{}{}", "{ a ".repeat(66), "}".repeat(66));
        assert!(read(&deep).is_none());
        assert!(parse_query(&deep).is_err());
        let within = format!("{}{}", "{ a ".repeat(40), "}".repeat(40));
        assert_read(&within);
    }

    const TOKENS: &[&str] = &[
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        ":",
        "$",
        "@",
        "...",
        "=",
        "!",
        "query",
        "mutation",
        "fragment",
        "on",
        "a",
        "b1",
        "_c",
        "Int",
        "true",
        "null",
        "trueX",
        "0",
        "-1",
        "1.5e3",
        "0123",
        "2.",
        "\"s\"",
        "\"\"",
        "\"\"\"b\"\"\"",
        "\"\\n\"",
        "#c\n",
        " ",
        ",",
        "\n",
        "\r",
        "\r\n",
        "\t",
        "\u{feff}",
        "é",
    ];

    /// What may stand for a space in a text of `READ` (not all of them
    /// ignorable everywhere: the reader must decline where they are not).
    const SPACES: &[&str] = &[
        " ", ",", "\n", "\r\n", "\r", "\t", " # c\n", "\u{feff}", "  ", "",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        #[test]
        fn any_token_soup_is_read_as_the_library_reads_it_or_declined(
            picks in proptest::collection::vec(0..TOKENS.len(), 1..40),
        ) {
            let text: String = picks.iter().map(|&i| TOKENS[i]).collect::<Vec<_>>().join(" ");
            prop_assert!(agrees(&text), "{:?}", text);
            let tight: String = picks.iter().map(|&i| TOKENS[i]).collect();
            prop_assert!(agrees(&tight), "{:?}", tight);
        }

        #[test]
        fn storefront_texts_spaced_any_way_are_read_as_the_library_reads_them(
            which in 0..READ.len(),
            spaces in proptest::collection::vec(0..SPACES.len(), 64),
        ) {
            let mut k = 0;
            let text: String = READ[which]
                .split(' ')
                .enumerate()
                .map(|(i, part)| {
                    if i == 0 {
                        part.to_string()
                    } else {
                        k += 1;
                        format!("{}{part}", SPACES[spaces[k % spaces.len()]])
                    }
                })
                .collect();
            prop_assert!(agrees(&text), "{:?}", text);
        }
    }
}
