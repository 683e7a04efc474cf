//! Finds and loads the plugins at the top level of `plugins/`, by file stem.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::Plugin;
use super::rhai::RhaiPlugin;
use crate::config::diagnostic::{Diagnostic, Diagnostics};
use crate::config::settings::RhaiLimits;

/// The loaded plugins of one home.
#[derive(Default, Clone)]
pub struct Registry {
    plugins: BTreeMap<String, Arc<dyn Plugin>>,
    /// Plugins present but not loadable, so lanes using them are not told "unknown".
    broken: BTreeMap<String, std::path::PathBuf>,
}

impl Registry {
    /// Loads every `*.rhai` at the top level of `dir`; problems go to `diags`.
    pub fn load(dir: &Path, limits: &RhaiLimits, diags: &mut Diagnostics) -> Self {
        let mut registry = Registry::default();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return registry,
            Err(e) => {
                diags.push(Diagnostic::file(
                    dir,
                    format!("cannot read plugin directory: {e}"),
                ));
                return registry;
            }
        };
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "rhai"))
            .collect();
        files.sort();
        let engine = Arc::new(super::rhai::engine(limits));
        for path in files {
            let Some(name) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            let source = match std::fs::read_to_string(&path) {
                Ok(s) => s,
                Err(e) => {
                    diags.push(Diagnostic::file(&path, format!("cannot read plugin: {e}")));
                    continue;
                }
            };
            match RhaiPlugin::load(&name, &path, &source, Arc::clone(&engine), limits) {
                Ok(p) => {
                    registry.plugins.insert(name, Arc::new(p));
                }
                Err(e) => {
                    registry.broken.insert(name.clone(), path.clone());
                    diags.push(Diagnostic::at(
                        &path,
                        e.line as u64,
                        e.col as u64,
                        format!("plugin `{name}`: {}", e.message),
                    ));
                }
            }
        }
        registry
    }

    /// The plugin of this name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Plugin>> {
        self.plugins.get(name)
    }

    /// The file of a plugin that exists but failed to load.
    pub fn broken(&self, name: &str) -> Option<&Path> {
        self.broken.get(name).map(|p| p.as_path())
    }

    /// Every plugin name, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.plugins.keys().map(String::as_str).collect()
    }

    /// Adds a plugin (used by tests and benchmarks to register native gates).
    pub fn insert(&mut self, plugin: Arc<dyn Plugin>) {
        self.plugins.insert(plugin.name().to_string(), plugin);
    }
}
