//! A configuration problem with its place: `path:line:col: message`.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found while loading rules, plugins or host settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file concerned.
    pub path: PathBuf,
    /// 1-based line (0 when the whole file is concerned).
    pub line: u64,
    /// 1-based column.
    pub col: u64,
    /// What is wrong and what to do.
    pub message: String,
}

impl Diagnostic {
    /// A problem at a known place.
    pub fn at(path: &Path, line: u64, col: u64, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            line: line.max(1),
            col: col.max(1),
            message: message.into(),
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
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Every problem found in one load, in file order.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Adds one problem.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
