//! Finds and loads the plugins at the top level of `plugins/`, by file stem: `<name>.rhai` or
//! `<name>.wasm`. Subdirectories (plugin sources, the guest SDK) are never loaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Plugin;
use super::rhai::RhaiPlugin;
use super::wasm::cache::ArtifactCache;
use super::wasm::{WasmEngine, WasmPlugin};
use crate::config::diagnostic::{Diagnostic, Diagnostics};
use crate::config::settings::Settings;

/// File extensions of plugins, one per runtime.
pub const EXTENSIONS: &[&str] = &["rhai", "wasm"];

/// The loaded plugins of one home.
#[derive(Default, Clone)]
pub struct Registry {
    plugins: BTreeMap<String, Arc<dyn Plugin>>,
    /// Plugins present but not loadable, so lanes using them are not told "unknown".
    broken: BTreeMap<String, PathBuf>,
}

impl Registry {
    /// Loads every plugin at the top level of `dir`; problems go to `diags`. Compiled WASM
    /// modules are cached in `wasm_cache` when given.
    pub fn load(
        dir: &Path,
        settings: &Settings,
        wasm_cache: Option<&Path>,
        diags: &mut Diagnostics,
    ) -> Self {
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
        let mut by_name: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for path in entries.filter_map(Result::ok).map(|e| e.path()) {
            let known = path
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| EXTENSIONS.contains(&x));
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_string);
            if let (true, true, Some(stem)) = (known, path.is_file(), stem) {
                by_name.entry(stem).or_default().push(path);
            }
        }
        let mut rhai_engine = None;
        let mut wasm_engine: Option<Result<Arc<WasmEngine>, String>> = None;
        let cache = wasm_cache.map(ArtifactCache::new);
        for (name, mut paths) in by_name {
            paths.sort();
            if paths.len() > 1 {
                let files: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                for path in &paths {
                    diags.push(Diagnostic::file(
                        path,
                        format!(
                            "plugin `{name}` is defined twice ({}); keep one runtime per name and move the other out of the top level of plugins/",
                            files.join(" and ")
                        ),
                    ));
                }
                registry.broken.insert(name, paths[0].clone());
                continue;
            }
            let path = paths.remove(0);
            let loaded: Result<Arc<dyn Plugin>, (u64, u64, String)> =
                if path.extension().is_some_and(|x| x == "wasm") {
                    let engine = wasm_engine
                        .get_or_insert_with(|| WasmEngine::new(&settings.wasm).map(Arc::new));
                    load_wasm(&name, &path, engine, cache.as_ref())
                } else {
                    let engine = rhai_engine
                        .get_or_insert_with(|| Arc::new(super::rhai::engine(&settings.rhai)));
                    load_rhai(&name, &path, engine, settings)
                };
            match loaded {
                Ok(p) => {
                    registry.plugins.insert(name, p);
                }
                Err((line, col, message)) => {
                    registry.broken.insert(name.clone(), path.clone());
                    diags.push(Diagnostic::at(
                        &path,
                        line,
                        col,
                        format!("plugin `{name}`: {message}"),
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

type Loaded = Result<Arc<dyn Plugin>, (u64, u64, String)>;

fn load_rhai(name: &str, path: &Path, engine: &Arc<rhai::Engine>, settings: &Settings) -> Loaded {
    let source =
        std::fs::read_to_string(path).map_err(|e| (1, 1, format!("cannot read plugin: {e}")))?;
    RhaiPlugin::load(name, path, &source, Arc::clone(engine), &settings.rhai)
        .map(|p| Arc::new(p) as Arc<dyn Plugin>)
        .map_err(|e| (e.line as u64, e.col as u64, e.message))
}

/// A binary has no lines, so every WASM problem is reported at 1:1.
fn load_wasm(
    name: &str,
    path: &Path,
    engine: &Result<Arc<WasmEngine>, String>,
    cache: Option<&ArtifactCache>,
) -> Loaded {
    let engine = engine.as_ref().map_err(|e| (1, 1, e.clone()))?;
    let bytes = std::fs::read(path).map_err(|e| (1, 1, format!("cannot read plugin: {e}")))?;
    WasmPlugin::load(name, path, &bytes, engine, cache)
        .map(|p| Arc::new(p) as Arc<dyn Plugin>)
        .map_err(|e| (1, 1, e))
}
