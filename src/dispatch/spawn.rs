//! Starting a lane's command so that it cannot run unrecorded.
//!
//! The child is forked, put in its own process group with its output going to the run log, and
//! then waits at a gate (a pipe) before it execs. Only once its pid is recorded does the
//! supervisor open the gate. If the supervisor dies first, the gate's write end closes and the
//! child exits without ever running the command. `std::process::Command` cannot do this: its
//! `spawn` returns only after the exec.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::unistd::{ForkResult, Pid};

/// A command ready to fork: every string converted before the fork, because the child may only
/// make async-signal-safe calls (no allocation) until it execs.
pub struct Prepared {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: CString,
}

fn cstring(what: &str, bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    })
}

impl Prepared {
    /// `program` is the resolved file to exec; `argv[0]` stays as written.
    pub fn new<'a>(
        program: &Path,
        argv: &[String],
        env: impl IntoIterator<Item = (&'a OsStr, &'a OsStr)>,
        cwd: &Path,
    ) -> io::Result<Self> {
        let mut envp = Vec::new();
        for (k, v) in env {
            let mut pair = k.as_bytes().to_vec();
            pair.push(b'=');
            pair.extend_from_slice(v.as_bytes());
            envp.push(cstring("an environment variable", &pair)?);
        }
        Ok(Self {
            program: cstring("the program path", program.as_os_str().as_bytes())?,
            argv: argv
                .iter()
                .map(|a| cstring("an argument", a.as_bytes()))
                .collect::<io::Result<_>>()?,
            envp,
            cwd: cstring("the working directory", cwd.as_os_str().as_bytes())?,
        })
    }
}

/// A forked child waiting at its gate.
pub struct Gated {
    /// The child's pid, which is also its process group.
    pub pid: u32,
    gate: OwnedFd,
    errors: OwnedFd,
}

/// How the exec went, as the child reported it.
const TAG_CHDIR: u8 = b'c';
const TAG_EXEC: u8 = b'e';

/// Forks `cmd` with stdin from /dev/null and stdout and stderr into `log`; the child waits at
/// the gate.
pub fn fork_gated(cmd: &Prepared, log: &File) -> io::Result<Gated> {
    let null = File::open("/dev/null")?;
    let (gate_r, gate_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let argv: Vec<*const libc::c_char> = cmd
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = cmd
        .envp
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let (null_fd, log_fd) = (null.as_raw_fd(), log.as_raw_fd());
    let (gate_r_fd, gate_w_fd) = (gate_r.as_raw_fd(), gate_w.as_raw_fd());
    let (err_r_fd, err_w_fd) = (err_r.as_raw_fd(), err_w.as_raw_fd());
    // SAFETY: the child only makes async-signal-safe calls (setpgid, dup2, close, sigprocmask,
    // signal, read, chdir, execve, write, _exit) on memory prepared before the fork, and never
    // returns from this block.
    match unsafe { nix::unistd::fork() }? {
        // SAFETY: as above; every pointer was made before the fork and outlives the exec.
        ForkResult::Child => unsafe {
            libc::setpgid(0, 0);
            libc::dup2(null_fd, 0);
            libc::dup2(log_fd, 1);
            libc::dup2(log_fd, 2);
            libc::close(gate_w_fd);
            libc::close(err_r_fd);
            // Rust ignores SIGPIPE and a supervisor may block signals; the command gets the
            // defaults, as `std::process::Command` gives them.
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            let mut go = 0u8;
            let n = loop {
                let n = libc::read(gate_r_fd, (&raw mut go).cast(), 1);
                if n < 0 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                break n;
            };
            if n != 1 || go != b'g' {
                libc::_exit(126);
            }
            if libc::chdir(cmd.cwd.as_ptr()) != 0 {
                report(err_w_fd, TAG_CHDIR);
            }
            libc::execve(cmd.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
            report(err_w_fd, TAG_EXEC);
        },
        ForkResult::Parent { child } => {
            drop((gate_r, err_w, null));
            Ok(Gated {
                pid: pid_u32(child),
                gate: gate_w,
                errors: err_r,
            })
        }
    }
}

/// In the child: tells the supervisor why it could not exec, and exits.
///
/// # Safety
/// Async-signal-safe: reads errno, writes five bytes, exits.
unsafe fn report(fd: libc::c_int, tag: u8) -> ! {
    // SAFETY: errno is this thread's; the buffer is on the stack; `_exit` never returns.
    unsafe {
        let errno = *libc::__errno_location();
        let mut msg = [tag, 0, 0, 0, 0];
        msg[1..].copy_from_slice(&errno.to_le_bytes());
        libc::write(fd, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

fn pid_u32(pid: Pid) -> u32 {
    u32::try_from(pid.as_raw()).unwrap_or(0)
}

/// Why the command did not start once the gate opened.
#[derive(Debug)]
pub enum ExecError {
    /// The lane's `cwd` could not be entered.
    Chdir(io::Error),
    /// The program could not be executed.
    Exec(io::Error),
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecError::Chdir(e) => write!(f, "cannot enter the working directory: {e}"),
            ExecError::Exec(e) => write!(f, "cannot execute the program: {e}"),
        }
    }
}

impl Gated {
    /// Opens the gate: the child execs. Returns once the exec happened or failed.
    pub fn release(self) -> Result<u32, ExecError> {
        let pid = self.pid;
        let _ = nix::unistd::write(&self.gate, b"g");
        drop(self.gate);
        let mut msg = [0u8; 5];
        let mut got = 0;
        let file = File::from(self.errors);
        while got < msg.len() {
            match nix::unistd::read(&file, &mut msg[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        if got < msg.len() {
            // The pipe closed on exec: the command runs.
            return Ok(pid);
        }
        let errno = i32::from_le_bytes([msg[1], msg[2], msg[3], msg[4]]);
        let error = io::Error::from_raw_os_error(errno);
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None);
        Err(if msg[0] == TAG_CHDIR {
            ExecError::Chdir(error)
        } else {
            ExecError::Exec(error)
        })
    }

    /// Never opens the gate: the child exits without running anything, and is reaped.
    pub fn abort(self) {
        let pid = self.pid;
        drop(self.gate);
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None);
    }
}
