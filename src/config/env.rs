//! Environment overrides in lane files and `lanekeeper.yaml`: `${VAR}`, `${VAR:-default}`, and
//! `$$` for a literal `$`. Substituted in the text before it is parsed, so every typed check
//! applies to the result; each substitution's place is kept so that problems found later point
//! at the file as written, and `explain` can say which values came from the environment.

use std::path::Path;

use serde::Serialize;

use super::diagnostic::{Diagnostic, Diagnostics, Shifts, Site};
use super::yaml::Node;

/// A value that came from the environment (or from the default beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvRef {
    /// The variable's name.
    pub variable: String,
    /// The file.
    pub file: String,
    /// 1-based line where `${` was written.
    pub line: u64,
    /// 1-based column where `${` was written.
    pub col: u64,
    /// The variable was unset and its `:-default` was used.
    pub defaulted: bool,
    /// What was put there; `None` for a secret (a name containing TOKEN, SECRET, PASSWORD or
    /// KEY), which is never shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A secret's value, kept only so that `explain` can take it out of everything it prints
    /// (a URL or a detail may carry it); never serialized.
    #[serde(skip)]
    pub(crate) secret: Option<String>,
}

impl EnvRef {
    /// `${NAME} at FILE:LINE:COL = "value"`, for `explain`.
    pub fn describe(&self) -> String {
        let value = match (&self.value, self.defaulted) {
            (None, _) => "(secret, not shown)".to_string(),
            (Some(v), false) => format!("{v:?}"),
            (Some(v), true) => format!("{v:?} (unset; its default)"),
        };
        format!(
            "${{{}}} at {}:{}:{} = {value}",
            self.variable, self.file, self.line, self.col
        )
    }
}

/// `text` with every secret value of `refs` replaced by its `${NAME}`, as written and as JSON
/// escapes it.
pub fn redact(text: &str, refs: &[EnvRef]) -> String {
    let mut out = text.to_string();
    for r in refs {
        let Some(secret) = r.secret.as_deref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let name = format!("${{{}}}", r.variable);
        out = out.replace(secret, &name);
        if let Ok(quoted) = serde_json::to_string(secret) {
            let escaped = &quoted[1..quoted.len() - 1];
            if escaped != secret {
                out = out.replace(escaped, &name);
            }
        }
    }
    out
}

/// Whether a variable's name says it holds a secret, so its value is never shown.
pub fn is_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "KEY"]
        .iter()
        .any(|w| upper.contains(w))
}

/// The result of substituting a file.
pub struct Substituted {
    /// The text to parse.
    pub text: String,
    /// Where its places were written.
    pub shifts: Shifts,
    /// Every value that came from the environment.
    pub refs: Vec<EnvRef>,
}

/// Substitutes `${VAR}`, `${VAR:-default}` and `$$` in `text` (not in comments), reading
/// variables through `lookup`. An unset variable without a default, an unclosed `${` or a bad
/// name is a problem at its place; so is a value that would change the file's structure where
/// it is not quoted.
pub fn substitute(
    path: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    diags: &mut Diagnostics,
) -> Substituted {
    let mut out = String::with_capacity(text.len());
    let mut sites = Vec::new();
    let mut refs = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let line_no = u64::try_from(i + 1).unwrap_or(u64::MAX);
        let chars: Vec<char> = line.chars().collect();
        // Columns count characters; `new_col` tracks the substituted line.
        let mut quote: Option<char> = None;
        let mut new_col: u64 = 1;
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            let orig_col = u64::try_from(j + 1).unwrap_or(u64::MAX);
            match (quote, c) {
                (None, '#') if j == 0 || chars[j - 1].is_whitespace() => {
                    // A comment: the rest of the line as written.
                    let rest: String = chars[j..].iter().collect();
                    out.push_str(&rest);
                    break;
                }
                // A quote opens a quoted scalar only where a scalar starts (`don't` is plain).
                (None, '"' | '\'') if starts_scalar(&chars[..j]) => quote = Some(c),
                (Some('"'), '\\') if j + 1 < chars.len() => {
                    out.push(c);
                    out.push(chars[j + 1]);
                    j += 2;
                    new_col += 2;
                    continue;
                }
                (Some(q), _) if c == q => quote = None,
                _ => {}
            }
            if c != '$' || j + 1 >= chars.len() || !matches!(chars[j + 1], '$' | '{') {
                out.push(c);
                j += 1;
                new_col += 1;
                continue;
            }
            if chars[j + 1] == '$' {
                out.push('$');
                sites.push(Site {
                    line: line_no,
                    new_col,
                    new_len: 1,
                    orig_col,
                    orig_len: 2,
                });
                j += 2;
                new_col += 1;
                continue;
            }
            // `${…}`
            let Some(close) = chars[j + 2..].iter().position(|&c| c == '}') else {
                diags.push(Diagnostic::at(
                    path,
                    line_no,
                    orig_col,
                    "`${` is not closed on its line; write ${NAME} or ${NAME:-default}, or `$$` for a literal `$`",
                ));
                let rest: String = chars[j..].iter().collect();
                out.push_str(&rest);
                break;
            };
            let inner: String = chars[j + 2..j + 2 + close].iter().collect();
            let written_len = close + 3;
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n.to_string(), Some(d.to_string())),
                None => (inner.clone(), None),
            };
            let value = if !valid_name(&name) {
                diags.push(Diagnostic::at(
                    path,
                    line_no,
                    orig_col,
                    format!("`${{{inner}}}`: `{name}` is not a variable name (letters, digits and `_`, not starting with a digit); write `$$` for a literal `$`"),
                ));
                String::new()
            } else {
                match (lookup(&name), default) {
                    (Some(v), _) => {
                        refs.push(env_ref(path, line_no, orig_col, &name, &v, false));
                        v
                    }
                    (None, Some(d)) => {
                        refs.push(env_ref(path, line_no, orig_col, &name, &d, true));
                        d
                    }
                    (None, None) => {
                        diags.push(Diagnostic::at(
                            path,
                            line_no,
                            orig_col,
                            format!("environment variable `{name}` is not set and `${{{name}}}` has no default; set it in the environment lanekeeper runs in, or write ${{{name}:-default}}"),
                        ));
                        String::new()
                    }
                }
            };
            let value = match quote {
                Some('"') => value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n"),
                Some(_) => value.replace('\'', "''"),
                None => {
                    if !plain_safe(&value) {
                        diags.push(Diagnostic::at(
                            path,
                            line_no,
                            orig_col,
                            format!("the value of `{name}` would change the file's structure here (it holds YAML syntax such as `: `, `#`, a bracket or a line break); quote it: \"${{{name}}}\""),
                        ));
                    }
                    value
                }
            };
            let new_len = u64::try_from(value.chars().count()).unwrap_or(0);
            sites.push(Site {
                line: line_no,
                new_col,
                new_len,
                orig_col,
                orig_len: u64::try_from(written_len).unwrap_or(0),
            });
            out.push_str(&value);
            new_col += new_len;
            j += written_len;
        }
    }
    Substituted {
        text: out,
        shifts: Shifts(sites),
        refs,
    }
}

fn env_ref(path: &Path, line: u64, col: u64, name: &str, value: &str, defaulted: bool) -> EnvRef {
    EnvRef {
        variable: name.to_string(),
        file: path.display().to_string(),
        line,
        col,
        defaulted,
        value: (!is_secret(name)).then(|| value.to_string()),
        secret: is_secret(name).then(|| value.to_string()),
    }
}

/// Whether a scalar can start after `before` on its line: at its start, or after `:`, `-`,
/// `[`, `{`, `,` and spaces.
fn starts_scalar(before: &[char]) -> bool {
    before
        .iter()
        .rev()
        .find(|c| !c.is_whitespace())
        .is_none_or(|c| matches!(c, ':' | '-' | '[' | '{' | ','))
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `value` reads as the same plain scalar wherever it is put unquoted.
fn plain_safe(value: &str) -> bool {
    !value.contains(['\n', '#', ',', '[', ']', '{', '}'])
        && !value.contains(": ")
        && !value.ends_with(':')
        && !value.starts_with([
            '-', '?', ':', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`', ' ',
        ])
        && !value.ends_with(' ')
}

/// Keys are not substituted: a `${…}` written in a key is a problem at its place.
pub fn check_keys(
    path: &Path,
    tree: &serde_saphyr::Spanned<Node>,
    shifts: &Shifts,
    diags: &mut Diagnostics,
) {
    if shifts.is_empty() {
        return;
    }
    let mut stack = vec![tree];
    while let Some(node) = stack.pop() {
        match &node.value {
            Node::Map(entries) => {
                for (k, v) in entries {
                    let (line, col) = (k.referenced.line(), k.referenced.column());
                    let len = u64::try_from(k.value.chars().count()).unwrap_or(0);
                    if let Some(s) = shifts.0.iter().find(|s| {
                        s.line == line
                            && s.new_col >= col
                            && s.new_col < col + len.max(1)
                            && s.orig_len > 2
                    }) {
                        diags.push(Diagnostic::at(
                            path,
                            line,
                            s.orig_col,
                            format!("`{}`: environment variables are substituted in values only, not in keys; write the key out", k.value),
                        ));
                    }
                    stack.push(v);
                }
            }
            Node::Seq(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(text: &str) -> (Substituted, Diagnostics) {
        let mut diags = Diagnostics::default();
        let lookup = |n: &str| match n {
            "DIR" => Some("/srv/x".to_string()),
            "API_TOKEN" => Some("s3cret".to_string()),
            "ODD" => Some("a: b".to_string()),
            _ => None,
        };
        let s = substitute(Path::new("f.yaml"), text, &lookup, &mut diags);
        (s, diags)
    }

    #[test]
    fn substitutes_values_defaults_and_escapes() {
        let (s, d) = sub(
            "a: ${DIR}/b\nb: ${NOPE:-7} # ${NOPE}\nc: \"$$HOME ${API_TOKEN}\"\nd: don't ${NOPE:-it's}\n",
        );
        assert!(d.is_empty(), "{d}");
        assert_eq!(
            s.text,
            "a: /srv/x/b\nb: 7 # ${NOPE}\nc: \"$HOME s3cret\"\nd: don't it's\n"
        );
        assert_eq!(s.refs.len(), 4);
        assert_eq!(s.refs[2].value, None, "a secret is not kept");
        assert!(s.refs[1].defaulted);
    }

    #[test]
    fn places_after_a_substitution_map_back_to_the_file() {
        let (s, _) = sub("x: { a: ${NOPE:-7}, b: 1 }\n");
        // `b` is at column 21 in the file and column 12 in the text parsed.
        assert_eq!(s.text, "x: { a: 7, b: 1 }\n");
        assert_eq!(s.shifts.map(1, 12), 21);
        assert_eq!(s.shifts.map(1, 9), 9, "inside the value: its `${{`");
        assert_eq!(s.shifts.map(1, 3), 3);
    }

    #[test]
    fn unset_unclosed_and_structural_values_are_problems_at_their_place() {
        let (_, d) = sub("a: ${MISSING}\nb: ${DIR\nc: ${ODD}\nd: \"${ODD}\"\n");
        let text = d.to_string();
        assert!(
            text.contains("f.yaml:1:4: environment variable `MISSING` is not set"),
            "{text}"
        );
        assert!(text.contains("f.yaml:2:4: `${` is not closed"), "{text}");
        assert!(text.contains("f.yaml:3:4: the value of `ODD`"), "{text}");
        assert_eq!(d.len(), 3, "quoted, it is fine: {text}");
    }
}
