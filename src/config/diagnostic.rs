//! A configuration problem with its place: `path:line:col: message`, or
//! `path:line:col: warning: message` for something worth knowing that does not stop a load.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration cannot be used.
    Error,
    /// Probably a mistake, but the configuration loads (e.g. a program not found here).
    Warning,
}

/// One problem found while loading rules, plugins or host settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file concerned.
    #[serde(rename = "file")]
    pub path: PathBuf,
    /// 1-based line (0 when the whole file is concerned).
    pub line: u64,
    /// 1-based column.
    pub col: u64,
    /// The lane concerned, when the problem is in a lane file.
    pub lane: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
    /// For a lint finding: its rule and fix (`rule` and `fix` in the JSON).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub lint: Option<Box<Lint>>,
}

/// What the lint adds to a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lint {
    /// The rule that found it (`validate --strict` makes these errors).
    pub rule: &'static str,
    /// What to change.
    pub fix: String,
}

impl Diagnostic {
    /// A problem at a known place.
    pub fn at(path: &Path, line: u64, col: u64, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            line: line.max(1),
            col: col.max(1),
            lane: None,
            message: message.into(),
            severity: Severity::Error,
            lint: None,
        }
    }

    /// A problem with a whole file (reported at 1:1).
    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        Self::at(path, 1, 1, message)
    }

    /// A problem at a YAML location.
    pub fn yaml(path: &Path, loc: serde_saphyr::Location, message: impl Into<String>) -> Self {
        Self::at(path, loc.line(), loc.column(), message)
    }

    /// The same problem, as a warning.
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    /// The same problem, as a finding of the lint `rule`, fixed by `fix` (a warning).
    pub fn lint(mut self, rule: &'static str, fix: impl Into<String>) -> Self {
        self.lint = Some(Box::new(Lint {
            rule,
            fix: fix.into(),
        }));
        self.severity = Severity::Warning;
        self
    }

    /// The same problem, about `lane`.
    pub fn for_lane(mut self, lane: &str) -> Self {
        self.lane = Some(lane.to_string());
        self
    }

    /// True for an error (the configuration cannot be used).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.path.display(), self.line, self.col)?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(lint) = &self.lint {
            write!(f, " [{}]\n  fix: {}", lint.rule, lint.fix)?;
        }
        Ok(())
    }
}

/// Every problem found in one load, in file order.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(Vec<Diagnostic>, Vec<(PathBuf, Shifts)>);

impl Diagnostics {
    /// Every problem, in the order found.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// Adds one problem. A place in a file whose `${…}` were substituted is moved back to
    /// where it was written.
    pub fn push(&mut self, mut d: Diagnostic) {
        if let Some((_, shifts)) = self.1.iter().find(|(p, _)| *p == d.path) {
            d.col = shifts.map(d.line, d.col);
        }
        self.0.push(d);
    }

    /// From now on, places in `path` are in its substituted text: map them back with `shifts`.
    pub(crate) fn substituted(&mut self, path: &Path, shifts: Shifts) {
        // A file without substitutions maps every place to itself: kept, it would only make
        // each later push search a list as long as the home has files.
        if !shifts.is_empty() {
            self.1.push((path.to_path_buf(), shifts));
        }
    }

    /// Appends `other` as it is (its places already mapped by its own substitutions), and
    /// keeps those substitutions for what is pushed later: a file's problems found apart.
    pub(crate) fn append(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
        for (path, shifts) in other.1 {
            if !self.1.iter().any(|(p, _)| *p == path) {
                self.1.push((path, shifts));
            }
        }
    }

    /// Pushes each of `other`'s problems, mapped by this list's substitutions: problems found
    /// apart from the list that knows where their file's `${VAR}`s were.
    pub(crate) fn push_all(&mut self, other: Diagnostics) {
        for d in other.0 {
            self.push(d);
        }
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    /// True when a problem added at or after index `from` is an error.
    pub fn has_errors_since(&self, from: usize) -> bool {
        self.0.iter().skip(from).any(Diagnostic::is_error)
    }

    /// Only the errors.
    pub fn errors(&self) -> Diagnostics {
        Diagnostics(
            self.0.iter().filter(|d| d.is_error()).cloned().collect(),
            Vec::new(),
        )
    }

    /// Names `lane` as the lane of every problem from index `from` on that names none yet.
    pub fn attribute(&mut self, from: usize, lane: &str) {
        for d in self.0.iter_mut().skip(from) {
            d.lane.get_or_insert_with(|| lane.to_string());
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// One substitution: where it sits in the text parsed, and where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub(crate) line: u64,
    /// 1-based column of its first character in the substituted text.
    pub(crate) new_col: u64,
    /// Its length there, in characters.
    pub(crate) new_len: u64,
    /// 1-based column of `${` (or `$$`) in the file.
    pub(crate) orig_col: u64,
    /// Its length as written, in characters.
    pub(crate) orig_len: u64,
}

/// Maps places in the substituted text back to the file as written.
#[derive(Debug, Clone, Default)]
pub struct Shifts(pub(crate) Vec<Site>);

impl Shifts {
    /// The column in the file of column `col` of `line` in the substituted text: inside a
    /// substituted value, where its `${` was written.
    pub fn map(&self, line: u64, col: u64) -> u64 {
        let mut delta: i64 = 0;
        for s in self.0.iter().filter(|s| s.line == line) {
            if col < s.new_col {
                break;
            }
            if col < s.new_col + s.new_len.max(1) {
                return s.orig_col;
            }
            let signed = |v: u64| i64::try_from(v).unwrap_or(0);
            delta = signed(s.orig_col) + signed(s.orig_len) - signed(s.new_col) - signed(s.new_len);
        }
        u64::try_from(i64::try_from(col).unwrap_or(0) + delta).unwrap_or(col)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
