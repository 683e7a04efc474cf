//! A throwaway PostgreSQL server per test: its own data directory (a copy of one `initdb` per
//! build), listening only on a Unix socket in a temporary directory, trusted, fsync off;
//! stopped and removed on drop. Without the server binaries a test says it is skipped.
//!
//! initdb refuses root, so as root the server runs as the `postgres` user, in directories
//! given to it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A running server.
pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
}

/// Where the server binaries are: `$PG_BIN`, the newest `/usr/lib/postgresql/*/bin`, or the
/// directory of `initdb` on the PATH.
fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
}

/// The `postgres` user's ids when running as root (the server's owner); `None` otherwise.
fn server_owner() -> Result<Option<(nix::unistd::Uid, nix::unistd::Gid)>, String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name("postgres") {
        Ok(Some(u)) => Ok(Some((u.uid, u.gid))),
        _ => Err("running as root and there is no `postgres` user to run the server".into()),
    }
}

/// A server tool, run as the server's owner.
fn tool(bin: &Path, name: &str) -> Command {
    match server_owner() {
        Ok(Some(_)) => {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join(name));
            c
        }
        _ => Command::new(bin.join(name)),
    }
}

fn give(path: &Path) {
    if let Ok(Some((uid, gid))) = server_owner() {
        std::os::unix::fs::chown(path, Some(uid.as_raw()), Some(gid.as_raw())).expect("chown");
    }
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The cluster every test copies: made once per build of the tests (kept under the target
/// directory), as initdb is most of a server's start-up.
fn template(bin: &Path) -> &'static Result<PathBuf, String> {
    static TEMPLATE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let version = bin
            .parent()
            .and_then(|p| p.file_name())
            .map(|v| v.to_string_lossy().to_string())
            .unwrap_or_default();
        let dest = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pg-template-{version}"));
        if dest.join("PG_VERSION").exists() {
            return Ok(dest);
        }
        let staging = tempfile::tempdir().map_err(|e| e.to_string())?;
        give(staging.path());
        let data = staging.path().join("data");
        let mut init = tool(bin, "initdb");
        init.args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .arg("-D")
        .arg(&data)
        .current_dir(staging.path());
        run(init, "initdb")?;
        // Another test binary may have made it meanwhile: either copy is good.
        let part = dest.with_extension(format!("part{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&part);
        run(
            {
                let mut c = Command::new("cp");
                c.arg("-a").arg(&data).arg(&part);
                c
            },
            "copy the template",
        )?;
        if std::fs::rename(&part, &dest).is_err() {
            let _ = std::fs::remove_dir_all(&part);
        }
        Ok(dest)
    })
}

impl Postgres {
    /// Starts a fresh server; `None` (with "skipped: no PostgreSQL" said) without the binaries.
    pub fn start() -> Option<Self> {
        let Some(bin) = bin_dir() else {
            eprintln!("skipped: no PostgreSQL (no initdb/pg_ctl found; set PG_BIN)");
            return None;
        };
        if let Err(e) = server_owner() {
            eprintln!("skipped: no PostgreSQL ({e})");
            return None;
        }
        let template = match template(&bin) {
            Ok(t) => t,
            Err(e) => panic!("PostgreSQL template cluster: {e}"),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        give(dir.path());
        let data = dir.path().join("data");
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(template).arg(&data);
        run(cp, "copy the template cluster").expect("copy");
        let pg = Self { dir, bin };
        pg.pg_ctl_start().expect("start PostgreSQL");
        Some(pg)
    }

    /// The cluster's data directory (owned by the server's user).
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let mut ctl = tool(&self.bin, "pg_ctl");
        ctl.arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .arg("-o")
            .arg(format!(
                "-c listen_addresses='' -c unix_socket_directories='{}' -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                self.dir.path().display()
            ))
            .args(["-w", "-t", "60", "start"])
            .current_dir(self.dir.path());
        run(ctl, "pg_ctl start").map_err(|e| format!("{e}\nserver log:\n{}", self.log()))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The URL of the `postgres` database as its superuser, over the socket.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The URL of another database of this server.
    pub fn url_of(&self, dbname: &str) -> String {
        format!(
            "host={} user=postgres dbname={dbname}",
            self.dir.path().display()
        )
    }

    /// A plain client, for a test to look at or tamper with the database.
    pub fn client(&self) -> ::postgres::Client {
        ::postgres::Client::connect(&self.url(), ::postgres::NoTls).expect("connect")
    }

    /// Runs SQL on the database.
    pub fn sql(&self, sql: &str) {
        self.client().batch_execute(sql).expect("sql");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut ctl = tool(&self.bin, "pg_ctl");
        ctl.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .current_dir(self.dir.path());
        let _ = ctl.output();
        // The postmaster is gone once its pid file is; bounded, in case it was already gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.data().join("postmaster.pid").exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
