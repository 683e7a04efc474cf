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
) -> Result<PathBuf, String> {
    let runnable =
        |p: &Path| p.is_file() && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok();
    if program.contains('/') {
        let path = cwd.join(program);
        return if !path.exists() {
            Err(format!(
                "`{program}` does not exist (relative to the lane's cwd {})",
                cwd.display()
            ))
        } else if !runnable(&path) {
            Err(format!(
                "`{program}` is not executable; `chmod +x` it, or run it through its interpreter (e.g. [sh, {program}])"
            ))
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
        Some(found) => format!(
            "`{program}` is on PATH as {}, which is not executable; `chmod +x` it",
            found.display()
        ),
        None => format!(
            "`{program}` is not found on PATH ({search}); install it, give its path, or set command.env.PATH"
        ),
    })
}
