//! Where recorded state lives: the home's own SQLite file, another file, or a PostgreSQL
//! database that replicas on several machines share (docs/DESIGN.md §2).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::home::Home;

use super::{SqliteStore, Store, StoreError};

/// A store to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite database file.
    File(PathBuf),
    /// A PostgreSQL database, by URL (`postgres://…`) or `key=value` connection string.
    Postgres(String),
}

/// How a command uses the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Writes it, creating it when missing (`run`, `fire`, `record`).
    Create,
    /// Writes it only if it exists; with none, an empty one in memory (`stop`: nothing is
    /// running then).
    WriteExisting,
    /// Only reads it; with none, an empty one in memory (`status`, `explain`).
    Read,
    /// Writes it, waiting up to this long for a busy database (the daemon and supervisors,
    /// which must not lose a record to a moment's contention).
    Wait(Duration),
}

/// A state location that cannot be used as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// Nothing was given.
    #[error("is empty; give a file path or a postgres:// URL")]
    Empty,
    /// A password was written into the location, where logs, `ps` and rules repositories see it.
    #[error(
        "holds a password; remove it and put it in PGPASSWORD or a ~/.pgpass file (PGPASSFILE), where libpq and lanekeeper look for it"
    )]
    Password,
}

impl Location {
    /// Reads a location: `postgres://` and `postgresql://` URLs and `key=value` connection
    /// strings name PostgreSQL; anything else is a file path, relative to the home.
    pub fn parse(text: &str, home: &Home) -> Result<Self, LocationError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(LocationError::Empty);
        }
        if is_postgres(text) {
            if has_password(text) {
                return Err(LocationError::Password);
            }
            return Ok(Location::Postgres(text.to_string()));
        }
        Ok(Location::File(home.resolve(Path::new(text))))
    }

    /// The store of `home`: `--state` first, then `state:` from lanekeeper.yaml, then the
    /// home's own `state/lanekeeper.db`.
    pub fn of(home: &Home, setting: Option<&str>) -> Result<Self, LocationError> {
        match home.state_override().or(setting) {
            Some(text) => Self::parse(text, home),
            None => Ok(Location::File(home.database())),
        }
    }

    /// True when replicas on several machines may share it, so leadership and run claims
    /// must go through it rather than through this machine's files.
    pub fn is_shared(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }

    /// The location as text that `parse` reads back, for a supervisor to open the same store.
    pub fn to_text(&self) -> String {
        match self {
            Location::File(p) => p.display().to_string(),
            Location::Postgres(url) => url.clone(),
        }
    }

    /// Opens the store for `access`.
    pub fn open(&self, access: Access) -> Result<Box<dyn Store>, StoreError> {
        match self {
            Location::File(path) => Ok(Box::new(open_file(path, access)?)),
            Location::Postgres(url) => Ok(Box::new(super::PostgresStore::connect(url)?)),
        }
    }
}

fn open_file(path: &Path, access: Access) -> Result<SqliteStore, StoreError> {
    match access {
        Access::Create => SqliteStore::open(path),
        Access::Wait(wait) => {
            let store = SqliteStore::open(path)?;
            store.set_busy_timeout(wait)?;
            Ok(store)
        }
        _ if !path.exists() => SqliteStore::in_memory(),
        Access::WriteExisting => SqliteStore::open(path),
        Access::Read => SqliteStore::open_read_only(path),
    }
}

fn is_postgres(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.starts_with("postgres://")
        || lower.starts_with("postgresql://")
        || text
            .split_whitespace()
            .any(|kv| kv.starts_with("host=") || kv.starts_with("dbname="))
}

/// A password in a URL's user part (`user:secret@`) or a `password=` key.
fn has_password(text: &str) -> bool {
    if let Some((_, rest)) = text.split_once("://") {
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        if let Some((user, _)) = authority.rsplit_once('@') {
            return user.contains(':');
        }
        return rest.contains("password=");
    }
    text.split_whitespace()
        .any(|kv| kv.starts_with("password="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_connection_strings_are_postgres_and_passwords_are_refused() {
        let home = Home::new("/h");
        assert_eq!(
            Location::parse("postgres://db.example/lk", &home),
            Ok(Location::Postgres("postgres://db.example/lk".into()))
        );
        assert!(matches!(
            Location::parse("host=/tmp/s dbname=lk user=me", &home),
            Ok(Location::Postgres(_))
        ));
        assert_eq!(
            Location::parse("state/other.db", &home),
            Ok(Location::File("/h/state/other.db".into()))
        );
        for bad in [
            "postgres://me:secret@db/lk",
            "postgresql://db/lk?password=x",
            "host=db password=x",
        ] {
            assert_eq!(
                Location::parse(bad, &home),
                Err(LocationError::Password),
                "{bad}"
            );
        }
        assert_eq!(
            Location::parse("postgres://me@db:5432/lk", &home),
            Ok(Location::Postgres("postgres://me@db:5432/lk".into()))
        );
        assert_eq!(Location::parse("  ", &home), Err(LocationError::Empty));
    }

    #[test]
    fn the_flag_wins_over_the_setting_and_the_home_file_is_the_default() {
        let home = Home::new("/h");
        assert_eq!(
            Location::of(&home, None),
            Ok(Location::File(home.database()))
        );
        assert_eq!(
            Location::of(&home, Some("a.db")),
            Ok(Location::File("/h/a.db".into()))
        );
        let flagged = home.with_state(Some("postgres://db/lk".into()));
        assert_eq!(
            Location::of(&flagged, Some("a.db")),
            Ok(Location::Postgres("postgres://db/lk".into()))
        );
    }
}
