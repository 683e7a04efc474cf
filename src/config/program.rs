//! Finding a lane's program (`argv[0]`) as execvp would, before anything runs: `validate`
//! warns with it, and the run supervisor execs the path it finds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file `program` names, or why it cannot be run. A name with a `/` is a path relative to
/// the lane's `cwd`; any other name is searched in `PATH` (the lane's `env.PATH` if it sets one,
/// as the child gets it; an empty entry is the lane's `cwd`).
pub fn resolve(
    program: &str,
    cwd: &Path,
    env: &BTreeMap<String, String>,
) -> Result<PathBuf, ProgramError> {
    let runnable =
        |p: &Path| p.is_file() && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok();
    if program.contains('/') {
        let path = cwd.join(program);
        return if !path.exists() {
            Err(ProgramError::Missing {
                program: program.to_string(),
                cwd: cwd.to_path_buf(),
            })
        } else if !runnable(&path) {
            Err(ProgramError::NotExecutable(program.to_string()))
        } else {
            Ok(path)
        };
    }
    let search = match env.get("PATH") {
        Some(p) => p.clone(),
        None => std::env::var("PATH").unwrap_or_else(|_| "/bin:/usr/bin".into()),
    };
    let mut not_executable = None;
    for dir in search.split(':') {
        let candidate = cwd
            .join(if dir.is_empty() { "." } else { dir })
            .join(program);
        if runnable(&candidate) {
            return Ok(candidate);
        }
        if candidate.is_file() && not_executable.is_none() {
            not_executable = Some(candidate);
        }
    }
    Err(match not_executable {
        Some(found) => ProgramError::OnPathNotExecutable {
            program: program.to_string(),
            found,
        },
        None => ProgramError::NotOnPath {
            program: program.to_string(),
            search,
        },
    })
}

/// Why a lane's program cannot be run; each says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// A path that is not there.
    #[error("`{program}` does not exist (relative to the lane's cwd {})", cwd.display())]
    Missing {
        /// As written.
        program: String,
        /// The lane's working directory.
        cwd: PathBuf,
    },
    /// A path to a file without the execute bit.
    #[error(
        "`{0}` is not executable; `chmod +x` it, or run it through its interpreter (e.g. [sh, {0}])"
    )]
    NotExecutable(String),
    /// Found on PATH, but not executable.
    #[error("`{program}` is on PATH as {}, which is not executable; `chmod +x` it", found.display())]
    OnPathNotExecutable {
        /// As written.
        program: String,
        /// Where it was found.
        found: PathBuf,
    },
    /// Not on PATH.
    #[error(
        "`{program}` is not found on PATH ({search}); install it, give its path, or set command.env.PATH"
    )]
    NotOnPath {
        /// As written.
        program: String,
        /// The PATH searched.
        search: String,
    },
}
