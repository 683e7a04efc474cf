//! The layout of a lanekeeper home (docs/DESIGN.md §2): where rules, plugins and state live.

use std::path::{Path, PathBuf};

/// Paths inside one lanekeeper home directory, and who this replica of it is.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
    /// Rules read from elsewhere (`lanekeeper diff --rules DIR`: candidate rules with this
    /// home's plugins and settings).
    rules: Option<PathBuf>,
    /// Where state lives when given on the command line (`--state`, `LANEKEEPER_STATE`): it
    /// wins over `state:` in lanekeeper.yaml.
    state: Option<String>,
    /// This replica's name among those sharing a store (`--host`), by default the host name.
    host: String,
}

impl Home {
    /// A home rooted at `root` (nothing is created until state is first written).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            rules: None,
            state: None,
            host: local_host_name(),
        }
    }

    /// This home with its state at `state` (a path or a `postgres://` URL) whatever
    /// lanekeeper.yaml says.
    pub fn with_state(mut self, state: Option<String>) -> Self {
        self.state = state;
        self
    }

    /// The state location given on the command line, if any.
    pub fn state_override(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// This home as the replica named `host`.
    pub fn with_host(mut self, host: Option<String>) -> Self {
        if let Some(h) = host {
            self.host = h;
        }
        self
    }

    /// This replica's name: what leases, run claims and `hosts:` know it by.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The same home at `root` (an absolute path, say), keeping who it is.
    pub fn rooted_at(&self, root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            ..self.clone()
        }
    }

    /// The home directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `rules/`: one lane per YAML file.
    pub fn rules_dir(&self) -> PathBuf {
        match &self.rules {
            Some(dir) => dir.clone(),
            None => self.root.join("rules"),
        }
    }

    /// This home with its lanes read from `dir` instead of `rules/`.
    pub fn with_rules(&self, dir: impl Into<PathBuf>) -> Self {
        Self {
            rules: Some(dir.into()),
            ..self.clone()
        }
    }

    /// `plugins/`: precondition plugins; only the top level is loaded.
    pub fn plugins_dir(&self) -> PathBuf {
        self.root.join("plugins")
    }

    /// `lanekeeper.yaml`: optional host settings.
    pub fn settings_file(&self) -> PathBuf {
        self.root.join("lanekeeper.yaml")
    }

    /// `state/`: lanekeeper's own data.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    /// The embedded database.
    pub fn database(&self) -> PathBuf {
        self.state_dir().join("lanekeeper.db")
    }

    /// Written by commands that change a lane's recorded state (`pause`, `resume`, `stop`);
    /// the daemon watches it and decides again at once.
    pub fn wake_file(&self) -> PathBuf {
        self.state_dir().join("wake")
    }

    /// Compiled WASM plugins, keyed by content hash and engine (see `plugins::wasm::cache`).
    pub fn wasm_cache_dir(&self) -> PathBuf {
        self.state_dir().join("wasm-cache")
    }

    /// Per-lane lock files, held for the life of a run.
    pub fn lock_file(&self, lane: &str) -> PathBuf {
        self.state_dir().join("locks").join(format!("{lane}.lock"))
    }

    /// The directory of one lane's run logs.
    pub fn run_log_dir(&self, lane: &str) -> PathBuf {
        self.state_dir().join("runs").join(lane)
    }

    /// Where the hooks of `lane` write their output (`state/hooks/<lane>.log`, appended).
    pub fn hook_log(&self, lane: &str) -> PathBuf {
        self.state_dir().join("hooks").join(format!("{lane}.log"))
    }

    /// `simulations/`: `simulate --json` reports an operator keeps; the HTTP endpoint's
    /// `/simulation` shows the newest.
    pub fn simulations_dir(&self) -> PathBuf {
        self.root.join("simulations")
    }

    /// Resolves a path written in a lane file: relative paths are relative to the home.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.root.join(path)
        }
    }
}

/// The machine's host name, or `localhost` when it has none that is text.
fn local_host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
