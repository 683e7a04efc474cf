//! Precondition plugins: one contract, any runtime.
//!
//! A [`Plugin`] is a loaded file (`plugins/<name>.rhai` or `plugins/<name>.wasm`). Binding it to a lane's `with:`
//! parameters gives a [`Gate`], which the engine evaluates. Plugins see the world only through
//! the host capabilities in [`host`], which record every observation as evidence.

pub mod host;
pub mod registry;
pub mod rhai;
pub mod schema;
pub mod wasm;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::tz::TimeZone;

pub use crate::model::decision::{PluginErrorKind, Runtime};
pub use host::PassHost;
pub use registry::Registry;
pub use schema::ParamSchema;

/// What a plugin said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The gate is open; `detail` optionally says why.
    Pass {
        /// Optional explanation.
        detail: Option<String>,
    },
    /// Not now.
    Defer {
        /// A kebab-case reason from the deferral vocabulary.
        reason: String,
        /// Evidence in words.
        detail: String,
        /// What would have to change for the gate to pass, if the plugin says.
        hint: Option<String>,
    },
}

/// A plugin that failed to produce a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// What kind of failure.
    pub kind: PluginErrorKind,
    /// Names the plugin, the script position and the cause.
    pub message: String,
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

/// What a gate gets to look at, besides the host capabilities.
pub struct GateInput<'a> {
    /// The lane being decided.
    pub lane: &'a str,
    /// The lane's zone, for local time.
    pub zone: &'a TimeZone,
    /// The evaluation pass: clock reading, lane states, observation cache.
    pub pass: &'a Arc<PassHost>,
}

/// What every loaded plugin knows about itself, whatever its runtime.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// The name lanes `use:` (the file stem).
    pub name: String,
    /// Its runtime.
    pub runtime: Runtime,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// The parameters it declares.
    pub schema: ParamSchema,
    /// The fingerprint of its file's content.
    pub hash: String,
}

/// A loaded plugin file.
pub trait Plugin: Send + Sync {
    /// Name, runtime, file, parameters and fingerprint.
    fn info(&self) -> &PluginInfo;
    /// Binds normalised `with:` parameters, giving an evaluable gate.
    fn bind(&self, params: &serde_json::Value) -> Arc<dyn Gate>;

    /// The name lanes `use:`.
    fn name(&self) -> &str {
        &self.info().name
    }
    /// Its runtime.
    fn runtime(&self) -> Runtime {
        self.info().runtime
    }
    /// The file it was loaded from.
    fn path(&self) -> &Path {
        &self.info().path
    }
    /// The parameters it declares.
    fn schema(&self) -> &ParamSchema {
        &self.info().schema
    }
    /// The fingerprint of its file's content.
    fn hash(&self) -> &str {
        &self.info().hash
    }
}

/// A plugin bound to one lane's parameters.
pub trait Gate: Send + Sync {
    /// Evaluates once. Must return within the plugin's budget whatever the plugin does.
    fn evaluate(&self, input: &GateInput<'_>) -> Result<Verdict, PluginError>;
}

/// Checks that a reason is a kebab-case identifier, so the vocabulary stays greppable.
pub fn valid_reason(reason: &str) -> bool {
    !reason.is_empty()
        && reason.len() <= 64
        && reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
