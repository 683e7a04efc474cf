//! A small JSON reader and writer: enough for the context, host results and verdicts, with no
//! dependencies, so guests stay small and build reproducibly.

use std::fmt::Write;

/// A JSON value. Integers and other numbers are kept apart, as the host wrote them.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// `null`, or a missing field.
    #[default]
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number written without a fraction or exponent that fits an `i64`.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A string.
    String(String),
    /// A list.
    Array(Vec<Value>),
    /// An object, in document order.
    Object(Vec<(String, Value)>),
}

static NULL: Value = Value::Null;

impl Value {
    /// The field `key` of an object (`Null` if absent or not an object).
    pub fn get(&self, key: &str) -> &Value {
        match self {
            Value::Object(fields) => fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .unwrap_or(&NULL),
            _ => &NULL,
        }
    }

    /// True for `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The number, if this is one (integers widen).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The items of a list (empty if this is not one).
    pub fn items(&self) -> &[Value] {
        match self {
            Value::Array(items) => items,
            _ => &[],
        }
    }

    /// Writes this value as JSON.
    pub fn write(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) if f.is_finite() => {
                let _ = write!(out, "{f:?}");
            }
            Value::Float(_) => out.push_str("null"),
            Value::String(s) => write_str(out, s),
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Value::Object(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// Writes `s` as a JSON string. Runs of characters that need no escape are copied whole.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.push_str(&s[plain..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

/// Parses one JSON document.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut p = Parser { s: text, i: 0 };
    let v = p.value(0)?;
    p.end()?;
    Ok(v)
}

/// A JSON value left as text until asked for: reading one field of a large document costs a
/// scan over it, not the allocations of a whole tree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Raw<'a>(&'a str);

impl<'a> Raw<'a> {
    /// The value as a tree.
    pub fn parse(self) -> Result<Value, String> {
        parse(self.0)
    }

    /// The string, if this is one.
    pub fn as_str(self) -> Option<String> {
        let mut p = Parser { s: self.0, i: 0 };
        (self.0.starts_with('"')).then(|| p.string().ok())?
    }

    /// The integer, if this is one.
    pub fn as_i64(self) -> Option<i64> {
        int(self.0)
    }

    /// The number, if this is one (integers widen).
    pub fn as_f64(self) -> Option<f64> {
        match int(self.0) {
            Some(i) => Some(i as f64),
            None if self
                .0
                .starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) =>
            {
                self.0.parse().ok()
            }
            None => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(self) -> Option<bool> {
        match self.0 {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    /// The text of the value, as it was written.
    pub fn text(self) -> &'a str {
        self.0
    }
}

/// Calls `field(key, value)` for each field of the JSON object `text`, in order, in one pass
/// that skips over values without parsing them.
pub fn fields<'a>(text: &'a str, mut field: impl FnMut(&str, Raw<'a>)) -> Result<(), String> {
    let mut p = Parser { s: text, i: 0 };
    p.ws();
    if p.peek() != Some(&b'{') {
        return Err(p.err("expected an object"));
    }
    p.object(|p, key| {
        p.ws();
        let start = p.i;
        p.skip()?;
        field(&key, Raw(&text[start..p.i]));
        Ok(())
    })?;
    p.end()
}

const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    s: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        format!("invalid JSON at byte {}: {what}", self.i)
    }

    fn peek(&self) -> Option<&u8> {
        self.s.as_bytes().get(self.i)
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    /// Reads an object (at its `{`), calling `field` at each value with its key; `field` must
    /// move past the value.
    fn object(
        &mut self,
        mut field: impl FnMut(&mut Self, String) -> Result<(), String>,
    ) -> Result<(), String> {
        self.i += 1;
        self.ws();
        if self.peek() == Some(&b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(&b'"') {
                return Err(self.err("expected a key"));
            }
            let key = self.string()?;
            self.ws();
            self.eat(":")?;
            field(self, key)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected , or }")),
            }
        }
    }

    /// Only whitespace may follow.
    fn end(&mut self) -> Result<(), String> {
        self.ws();
        if self.i == self.s.len() {
            Ok(())
        } else {
            Err(self.err("trailing characters"))
        }
    }

    /// Moves past one value without building it.
    fn skip(&mut self) -> Result<(), String> {
        let bytes = self.s.as_bytes();
        match self.peek() {
            Some(b'"') => self.skip_string(),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                while let Some(&b) = bytes.get(self.i) {
                    match b {
                        b'"' => {
                            self.skip_string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Ok(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
                Err(self.err("unexpected end"))
            }
            Some(_) => {
                let start = self.i;
                while let Some(&b) = bytes.get(self.i) {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                        break;
                    }
                    self.i += 1;
                }
                if self.i == start {
                    return Err(self.err("expected a value"));
                }
                Ok(())
            }
            None => Err(self.err("unexpected end")),
        }
    }

    fn skip_string(&mut self) -> Result<(), String> {
        let bytes = self.s.as_bytes();
        self.i += 1;
        while let Some(&b) = bytes.get(self.i) {
            self.i += 1;
            match b {
                b'"' => return Ok(()),
                b'\\' => self.i += 1,
                _ => {}
            }
        }
        Err(self.err("unterminated string"))
    }

    fn eat(&mut self, lit: &str) -> Result<(), String> {
        if self.s.as_bytes()[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(self.err("unexpected token"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.ws();
        match self.peek() {
            None => Err(self.err("unexpected end")),
            Some(b'n') => self.eat("null").map(|_| Value::Null),
            Some(b't') => self.eat("true").map(|_| Value::Bool(true)),
            Some(b'f') => self.eat("false").map(|_| Value::Bool(false)),
            Some(b'"') => self.string().map(Value::String),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(&b']') {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Value::Array(items));
                        }
                        _ => return Err(self.err("expected , or ]")),
                    }
                }
            }
            Some(b'{') => {
                let mut fields = Vec::new();
                self.object(|p, key| {
                    fields.push((key, p.value(depth + 1)?));
                    Ok(())
                })?;
                Ok(Value::Object(fields))
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.i;
        let mut float = false;
        while let Some(&b) = self.peek() {
            match b {
                b'0'..=b'9' | b'-' | b'+' => {}
                b'.' | b'e' | b'E' => float = true,
                _ => break,
            }
            self.i += 1;
        }
        let text = &self.s[start..self.i];
        if !float && let Some(i) = int(text) {
            return Ok(Value::Int(i));
        }
        text.parse::<f64>()
            .map(Value::Float)
            .map_err(|_| self.err("bad number"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(h)
    }

    /// A string: plain runs are copied whole (the input is already UTF-8); only escapes are
    /// decoded one by one.
    fn string(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let bytes = &self.s.as_bytes()[self.i..];
            let Some(n) = bytes.iter().position(|&b| b == b'"' || b == b'\\') else {
                return Err(self.err("unterminated string"));
            };
            out.push_str(&self.s[self.i..self.i + n]);
            self.i += n + 1;
            if bytes[n] == b'"' {
                return Ok(out);
            }
            let Some(&e) = self.peek() else {
                return Err(self.err("unterminated string"));
            };
            self.i += 1;
            out.push(match e {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let hi = self.hex4()?;
                    let code = if (0xd800..0xdc00).contains(&hi) {
                        self.eat("\\u")?;
                        let lo = self.hex4()?;
                        0x10000 + ((hi - 0xd800) << 10) + (lo.wrapping_sub(0xdc00) & 0x3ff)
                    } else {
                        hi
                    };
                    char::from_u32(code).unwrap_or('\u{fffd}')
                }
                _ => return Err(self.err("bad escape")),
            });
        }
    }
}

/// A plain integer (`None`: not one, or out of range, so it is read as a float).
fn int(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 18 {
        return text.parse().ok();
    }
    let v = digits
        .bytes()
        .fold(0i64, |v, b| v * 10 + i64::from(b - b'0'));
    Some(if text.starts_with('-') { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_in_one_pass_with_values_left_as_text() {
        let text =
            r#" {"a" : {"x":[1,"]}"]}, "b\u0021":"q\"}", "c":-7,"d":2.5,"e":true,"f":null} "#;
        let mut seen = Vec::new();
        fields(text, |k, v| seen.push((k.to_string(), v))).unwrap();
        let keys: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b!", "c", "d", "e", "f"]);
        assert_eq!(
            seen[0].1.parse().unwrap().get("x").items()[1].as_str(),
            Some("]}")
        );
        assert_eq!(seen[1].1.as_str().as_deref(), Some("q\"}"));
        assert_eq!(seen[2].1.as_i64(), Some(-7));
        assert_eq!(seen[3].1.as_f64(), Some(2.5));
        assert_eq!(seen[3].1.as_i64(), None);
        assert_eq!(seen[4].1.as_bool(), Some(true));
        assert_eq!(seen[5].1.text(), "null");
        assert!(fields(r#"{"a":1,}"#, |_, _| {}).is_err());
        assert!(fields(r#"{"a":"x}"#, |_, _| {}).is_err());
        assert!(fields(r#"{"a":[1}"#, |_, _| {}).is_err());
        assert!(fields("[1]", |_, _| {}).is_err());
    }

    #[test]
    fn round_trips() {
        let text = r#"{"a":[1,-2.5,true,null,"x\"\n\u00e9\ud83d\ude00"],"b":{"c":1e3}}"#;
        let v = parse(text).unwrap();
        assert_eq!(v.get("a").items()[0], Value::Int(1));
        assert_eq!(v.get("a").items()[1], Value::Float(-2.5));
        assert_eq!(v.get("a").items()[4].as_str(), Some("x\"\né😀"));
        assert_eq!(v.get("b").get("c").as_f64(), Some(1000.0));
        let mut out = String::new();
        v.write(&mut out);
        assert_eq!(parse(&out).unwrap(), v);
        assert!(parse("{\"a\":1,}").is_err());
        assert_eq!(parse("-12").unwrap(), Value::Int(-12));
        assert_eq!(
            parse("123456789012345678901").unwrap().as_f64(),
            Some(1.2345678901234568e20)
        );
        assert!(parse("[1] x").is_err());
    }
}
