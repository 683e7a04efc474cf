//! Watching `rules/`, `plugins/` and `lanekeeper.yaml` for changes.
//!
//! Editors save by writing a temporary file and renaming it, which produces a burst of events;
//! the debouncer folds each burst into one reload request. Directories are watched (not files)
//! so renames are seen.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify_debouncer_full::notify::event::ModifyKind;
use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc::UnboundedSender;

use super::Event;
use crate::home::Home;

/// Keeps the watch alive while held.
pub type Watch = Debouncer<RecommendedWatcher, RecommendedCache>;

/// How long a burst of file events is folded before one reload.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Sends [`Event::Reload`] whenever a rules, plugin or settings file changes, and
/// [`Event::Wake`] when a command writes the home's wake file (`Home::wake_file`).
pub fn watch(home: &Home, events: UnboundedSender<Event>) -> Result<Watch, WatchError> {
    let wake = home.wake_file();
    let woken = wake.clone();
    let rules = home.rules_dir();
    let plugins = home.plugins_dir();
    let settings = home.settings_file();
    let relevant = {
        let (rules, plugins, settings) = (rules.clone(), plugins.clone(), settings.clone());
        move |p: &Path| {
            p.starts_with(&rules) || p.parent() == Some(plugins.as_path()) || p == settings
        }
    };
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
        let Ok(events_seen) = result else { return };
        // Only writes count: loading the configuration reads these files, and reacting to
        // those access events would reload forever.
        let changed: Vec<PathBuf> = events_seen
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::Create(_)
                        | EventKind::Remove(_)
                        | EventKind::Modify(
                            ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any
                        )
                )
            })
            .flat_map(|e| e.paths.iter())
            .filter(|p| relevant(p) || *p == &woken)
            .cloned()
            .collect();
        if changed.iter().any(|p| p == &woken) {
            let _ = events.send(Event::Wake);
        }
        if changed.iter().any(|p| p != &woken) {
            tracing::debug!(paths = ?changed, "Configuration files changed.");
            let _ = events.send(Event::Reload("file change"));
        }
    })
    .map_err(WatchError::Start)?;
    for dir in [home.root(), rules.as_path(), plugins.as_path()] {
        if dir.is_dir() {
            debouncer
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|source| WatchError::Dir {
                    dir: dir.to_path_buf(),
                    source,
                })?;
        }
    }
    if wake.is_file() {
        debouncer
            .watch(&wake, RecursiveMode::NonRecursive)
            .map_err(|source| WatchError::Dir {
                dir: wake.clone(),
                source,
            })?;
    }
    Ok(debouncer)
}

/// Why hot reload could not start (SIGHUP still reloads).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The watcher itself.
    #[error("cannot start watching files: {0}")]
    Start(notify_debouncer_full::notify::Error),
    /// One of the watched directories.
    #[error("cannot watch {}: {source}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: notify_debouncer_full::notify::Error,
    },
}
