//! Per-lane single-instance locks: an OS file lock held for the life of a run.
//!
//! The kernel releases the lock when its holder dies, however it dies, so a crashed
//! supervisor never leaves a lane locked forever.

use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

/// A held lane lock; released on drop.
#[derive(Debug)]
pub struct LaneLock {
    _file: File,
    path: PathBuf,
}

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it; `holder` is the pid it wrote, if readable.
    #[error("held by another process")]
    Busy {
        /// The holder's pid as it recorded it.
        holder: Option<u32>,
    },
    /// The lock file could not be created or locked.
    #[error("lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl LaneLock {
    /// Takes the lock without waiting, and writes our pid into it for `status` and messages.
    pub fn try_acquire(path: &Path) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                // The holder writes its pid just after it takes the lock; give it a moment,
                // so the refusal can name it.
                let read = || {
                    std::fs::read_to_string(path)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                };
                let mut holder = read();
                for _ in 0..20 {
                    if holder.is_some() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    holder = read();
                }
                return Err(LockError::Busy { holder });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
