//! YAML parsing with every error turned into a `path:line:col` diagnostic.
//!
//! Typed deserialization stops at the first problem. For files where every problem should be
//! reported at once (lane files), [`read`] first parses a generic [`Node`] tree with places,
//! checks its keys against a [`Shape`], and only when something is wrong deserializes each value
//! on its own ([`pick`]), so one bad value cannot hide another. Every value is still read by
//! serde-saphyr from the whole text, so messages and `line:col` are exactly serde's.

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess,
    Visitor,
};
use serde_saphyr::{Location, Spanned};

use super::diagnostic::{Diagnostic, Diagnostics};

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: 64,
            max_aliases: 64,
            max_documents: 1,
        },
    }
}

/// Parses `text`; on failure records one diagnostic at the error's position and returns `None`.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str, diags: &mut Diagnostics) -> Option<T> {
    match serde_saphyr::from_str_with_options::<T>(text, options()) {
        Ok(v) => Some(v),
        Err(e) => {
            diags.push(diagnostic(path, text, &e));
            None
        }
    }
}

/// `bytes` as text, or a diagnostic at the first byte that is not UTF-8 (rather than at the
/// file's start, which would leave the reader to hunt for it).
pub fn utf8(path: &Path, bytes: Vec<u8>) -> Result<String, Diagnostic> {
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let valid = e.utf8_error().valid_up_to();
        let before = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let byte = bytes.get(valid).copied().unwrap_or_default();
        Diagnostic::at(
            path,
            u64::try_from(line).unwrap_or(u64::MAX),
            u64::try_from(col).unwrap_or(u64::MAX),
            format!("not valid UTF-8 (byte 0x{byte:02x}); save the file as UTF-8"),
        )
    })
}

/// A serde-saphyr error as a diagnostic at its position.
fn diagnostic(path: &Path, text: &str, e: &serde_saphyr::Error) -> Diagnostic {
    let (line, col) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    Diagnostic::at(path, line, col, explain(message(e), text, line))
}

/// A YAML node with only what key checking needs: mappings with their keys' places, lists,
/// and whether a scalar is a string (for names such as `lane:`).
#[derive(Debug)]
pub enum Node {
    /// A mapping, in document order.
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    /// A sequence.
    Seq(Vec<Spanned<Node>>),
    /// A string scalar.
    Str(String),
    /// A number or boolean.
    Scalar,
    /// `null`, `~` or nothing.
    Null,
}

impl Node {
    /// The value of `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<(&Spanned<String>, &Spanned<Node>)> {
        match self {
            Node::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.value == key)
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Node::Map(_) => "a mapping",
            Node::Seq(_) => "a list",
            Node::Str(_) | Node::Scalar => "a single value",
            Node::Null => "empty",
        }
    }
}

impl<'de> de::Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                de::Deserialize::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(NodeVisitor)
    }
}

/// Parses `text` into a [`Node`] tree; a syntax error becomes one diagnostic.
pub fn tree(path: &Path, text: &str, diags: &mut Diagnostics) -> Option<Spanned<Node>> {
    parse::<Spanned<Node>>(path, text, diags)
}

/// One step of a path into a document.
#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    /// A mapping key.
    Key(&'a str),
    /// A list index.
    Index(usize),
}

/// Deserializes only the value at `path` (`None` if it is absent), skipping everything else.
pub fn pick<T: DeserializeOwned>(
    text: &str,
    path: &[Seg<'_>],
) -> Result<Option<T>, serde_saphyr::Error> {
    serde_saphyr::with_deserializer_from_str_with_options(text, options(), |d| {
        At::<T> {
            path,
            _t: PhantomData,
        }
        .deserialize(d)
    })
}

struct At<'p, T> {
    path: &'p [Seg<'p>],
    _t: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for At<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        match self.path.first() {
            None => T::deserialize(d).map(Some),
            Some(Seg::Key(_)) => d.deserialize_map(self),
            Some(Seg::Index(_)) => d.deserialize_seq(self),
        }
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for At<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping or a list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let (Some(Seg::Key(key)), rest) = (self.path.first(), &self.path[1..]) else {
            return Ok(None);
        };
        let mut found = None;
        while let Some(k) = map.next_key::<String>()? {
            if found.is_none() && k == *key {
                found = map.next_value_seed(At::<T> {
                    path: rest,
                    _t: PhantomData,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<T>, A::Error> {
        let (Some(Seg::Index(index)), rest) = (self.path.first(), &self.path[1..]) else {
            return Ok(None);
        };
        let mut found = None;
        for i in 0.. {
            if i == *index {
                match seq.next_element_seed(At::<T> {
                    path: rest,
                    _t: PhantomData,
                })? {
                    Some(v) => found = v,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
        }
        Ok(found)
    }
}

/// What a node must look like.
pub enum Shape {
    /// A mapping with these keys and no others.
    Map(&'static [Key]),
    /// A list of nodes of one shape.
    List(&'static Shape),
    /// A value read with this check: `check::<T>` for the field's type `T`.
    Value(Check),
}

/// Deserializes the value at a path, for its error.
pub type Check = fn(&str, &[Seg<'_>]) -> Result<(), serde_saphyr::Error>;

/// Checks that the value at `path` deserializes as `T`.
pub fn check<T: DeserializeOwned>(text: &str, path: &[Seg<'_>]) -> Result<(), serde_saphyr::Error> {
    pick::<T>(text, path).map(|_| ())
}

/// One key of a mapping.
pub struct Key {
    /// The key.
    pub name: &'static str,
    /// For a required key: what to add, said when it is missing.
    pub required: Option<&'static str>,
    /// Its value.
    pub shape: Shape,
}

/// Reads a document already parsed into `tree`, checking it against `shape` first so every
/// unknown key, missing key and ill-typed value is reported, not only the first. `owner` names
/// the document in messages about missing top-level keys (e.g. "lane `backup`"), reported at
/// `owner_at` (or the file's start).
pub fn read<T: DeserializeOwned>(
    path: &Path,
    text: &str,
    tree: &Spanned<Node>,
    shape: &Shape,
    owner: &str,
    owner_at: Location,
    diags: &mut Diagnostics,
) -> Option<T> {
    let mut walk = Walk {
        path,
        text,
        typed: false,
        problems: Vec::new(),
    };
    let root = Place {
        name: owner.to_string(),
        at: owner_at,
    };
    walk.node(tree, shape, &mut Vec::new(), &root);
    let whole = if walk.problems.is_empty() {
        match serde_saphyr::from_str_with_options::<T>(text, options()) {
            Ok(v) => return Some(v),
            Err(e) => Some(e),
        }
    } else {
        None
    };
    // Something is wrong: read every value on its own to report them all.
    walk.typed = true;
    walk.node(tree, shape, &mut Vec::new(), &root);
    if walk.problems.is_empty()
        && let Some(e) = whole
    {
        walk.problems.push(diagnostic(path, text, &e));
    }
    walk.problems.sort_by_key(|d| (d.line, d.col));
    walk.problems.dedup();
    for d in walk.problems {
        diags.push(d);
    }
    None
}

/// How a node is named in messages, and where it is.
struct Place {
    name: String,
    at: Location,
}

struct Walk<'a> {
    path: &'a Path,
    text: &'a str,
    /// Also deserialize each value (second pass), or only check keys and shapes.
    typed: bool,
    problems: Vec<Diagnostic>,
}

impl Walk<'_> {
    fn at(&self, loc: Location, message: String) -> Diagnostic {
        if loc == Location::UNKNOWN {
            Diagnostic::file(self.path, message)
        } else {
            Diagnostic::yaml(self.path, loc, message)
        }
    }

    fn node<'t>(
        &mut self,
        node: &'t Spanned<Node>,
        shape: &Shape,
        segs: &mut Vec<Seg<'t>>,
        place: &Place,
    ) {
        match shape {
            Shape::Value(check) => {
                if self.typed
                    && let Err(e) = check(self.text, segs)
                {
                    self.problems.push(diagnostic(self.path, self.text, &e));
                }
            }
            Shape::List(item) => match &node.value {
                Node::Seq(items) => {
                    for (i, n) in items.iter().enumerate() {
                        segs.push(Seg::Index(i));
                        let name = format!("{}[{i}]", place.name.trim_matches('`'));
                        let item_place = Place {
                            name: format!("`{name}`"),
                            at: n.referenced,
                        };
                        self.node(n, item, segs, &item_place);
                        segs.pop();
                    }
                }
                // An absent list is an empty one.
                Node::Null => {}
                other if !self.typed => {
                    let message = format!("{} must be a list, not {}", place.name, other.kind());
                    self.problems.push(self.at(node.referenced, message));
                }
                _ => {}
            },
            Shape::Map(keys) => {
                let entries: &[_] = match &node.value {
                    Node::Map(entries) => entries,
                    // An empty document or key has no keys; missing ones are said below.
                    Node::Null => &[],
                    other => {
                        if !self.typed {
                            let message = format!(
                                "{} must be a mapping with {}, not {}",
                                place.name,
                                names(keys),
                                other.kind()
                            );
                            self.problems.push(self.at(node.referenced, message));
                        }
                        return;
                    }
                };
                for (key, value) in entries {
                    let Some(known) = keys.iter().find(|k| k.name == key.value) else {
                        if !self.typed {
                            let message = unknown(&key.value, keys, segs.is_empty(), place);
                            self.problems.push(self.at(key.referenced, message));
                        }
                        continue;
                    };
                    segs.push(Seg::Key(&key.value));
                    let prefix = place.name.trim_matches('`');
                    let child = Place {
                        name: if segs.len() == 1 {
                            format!("`{}`", key.value)
                        } else {
                            format!("`{prefix}.{}`", key.value)
                        },
                        at: key.referenced,
                    };
                    let empty = matches!(value.value, Node::Null)
                        && !matches!(known.shape, Shape::Value(_));
                    match (empty, known.required) {
                        // `retry:` with nothing is no retry, as serde reads it.
                        (true, None) => {}
                        (true, Some(_)) if !self.typed => {
                            self.problems.push(missing(self, place, known));
                        }
                        (true, Some(_)) => {}
                        (false, _) => self.node(value, &known.shape, segs, &child),
                    }
                    segs.pop();
                }
                if !self.typed {
                    for key in keys.iter().filter(|k| k.required.is_some()) {
                        if !entries.iter().any(|(k, _)| k.value == key.name) {
                            self.problems.push(missing(self, place, key));
                        }
                    }
                }
            }
        }
    }
}

fn names(keys: &[Key]) -> String {
    keys.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

fn missing(walk: &Walk<'_>, place: &Place, key: &Key) -> Diagnostic {
    walk.at(
        place.at,
        format!(
            "{} has no `{}:`; {}",
            place.name,
            key.name,
            key.required.unwrap_or("add it")
        ),
    )
}

fn unknown(key: &str, keys: &[Key], top: bool, place: &Place) -> String {
    let within = if top {
        String::new()
    } else {
        format!(" in {}", place.name)
    };
    match keys.iter().find(|k| similar(key, k.name)) {
        Some(k) => format!("unknown field `{key}`{within}; did you mean `{}`?", k.name),
        None => format!(
            "unknown field `{key}`{within}, expected one of {}",
            names(keys)
        ),
    }
}

/// A likely typo: at most two single-character edits apart (Levenshtein), case aside.
fn similar(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    if a.len().abs_diff(b.len()) > 2 || a.len().min(b.len()) < 3 {
        return false;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            row.push((prev[j] + cost).min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()] <= 2
}

/// serde-saphyr's messages that give advice to a program using it ("set DuplicateKeyPolicy in
/// Options", "use Option<String>", "budget breached: Documents { … }"), said in the terms of the
/// file being read instead.
fn in_user_terms(message: String) -> String {
    let m = message.as_str();
    if let Some(rest) = m.strip_prefix("duplicate mapping key") {
        let key = rest
            .strip_prefix(": ")
            .and_then(|r| r.rsplit_once(", set DuplicateKeyPolicy"))
            .map(|(k, _)| format!(" `{k}`"))
            .unwrap_or_default();
        return format!("duplicate key{key}: a key may appear only once in a mapping; remove one");
    }
    if m.starts_with("cannot deserialize null into string")
        || m.starts_with("invalid char: cannot deserialize null")
    {
        return "expected a value, found nothing (empty or `~`); write one".into();
    }
    if let Some(rest) = m.strip_prefix("non-finite float ") {
        let value = rest.split(" rejected").next().unwrap_or(rest);
        return format!("{value} is not a finite number");
    }
    if m.starts_with("YAML merge keys are not allowed") {
        return "YAML merge keys (`<<`) are not supported; write the keys out".into();
    }
    if m.contains("on a struct field name is not allowed") {
        return "a tag on a key is not supported; remove it".into();
    }
    if m.starts_with("!!binary scalar is not valid UTF-8") {
        return "a !!binary value that is not text cannot be used here; remove the !!binary tag"
            .into();
    }
    if m.starts_with("multiple YAML documents") || m.starts_with("budget breached: Documents") {
        return "a file holds one YAML document; remove the `---` that starts another".into();
    }
    if let Some(breach) = m.strip_prefix("budget breached: ") {
        let what = match breach.split([' ', '{']).next().unwrap_or_default() {
            "Depth" => "nested too deeply (at most 64 levels)",
            "Aliases" | "Anchors" => "uses too many anchors or aliases (at most 64)",
            _ => "too large or complex",
        };
        return format!("the YAML is {what}; simplify it");
    }
    message
}

/// Makes serde's terse type errors readable and names the key they concern.
fn explain(message: String, text: &str, line: u64) -> String {
    let message = in_user_terms(message);
    let plain = match message.as_str() {
        "invalid i64" | "invalid u64" | "invalid i32" | "invalid u32" | "invalid usize" => {
            "expected an integer".to_string()
        }
        "invalid f64" | "invalid f32" => "expected a number".to_string(),
        "invalid bool" => "expected true or false".to_string(),
        "expected sequence start" => "expected a list, such as [a, b]".to_string(),
        "expected mapping start" => "expected a mapping, such as { key: value }".to_string(),
        _ => message,
    };
    let key = usize::try_from(line)
        .ok()
        .and_then(|l| text.lines().nth(l.checked_sub(1)?))
        .and_then(|l| l.trim_start().trim_start_matches("- ").split_once(':'))
        .map(|(k, _)| k.trim())
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    match key {
        Some(k) if !plain.contains(k) => format!("`{k}`: {plain}"),
        _ => plain,
    }
}

/// The error's message without the source snippet or the trailing position (we print our own).
fn message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let first = text.lines().next().unwrap_or("invalid YAML").trim();
    let trimmed = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    let trimmed = trimmed.trim_start_matches("error: ").trim();
    if trimmed.is_empty() {
        "invalid YAML".to_string()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_reads_one_value_and_skips_the_rest() {
        let text = "a: [1, {b: x}]\nc: nope\nd: 4\n";
        let b: Option<String> =
            pick(text, &[Seg::Key("a"), Seg::Index(1), Seg::Key("b")]).expect("valid");
        assert_eq!(b.as_deref(), Some("x"));
        let d: Option<i64> = pick(text, &[Seg::Key("d")]).expect("valid");
        assert_eq!(d, Some(4));
        assert!(pick::<i64>(text, &[Seg::Key("c")]).is_err());
        assert_eq!(pick::<i64>(text, &[Seg::Key("e")]).expect("absent"), None);
        assert_eq!(
            pick::<i64>(text, &[Seg::Key("a"), Seg::Index(5)]).expect("absent"),
            None
        );
    }

    #[test]
    fn similar_keys_are_typos() {
        assert!(similar("tmeout", "timeout"));
        assert!(similar("Schedlue", "schedule"));
        assert!(!similar("bogus", "group"));
        assert!(!similar("a", "b"));
    }
}
