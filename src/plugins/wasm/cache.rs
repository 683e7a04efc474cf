//! Compiled plugins cached on disk (`state/wasm-cache/`), so a restart does not recompile.
//!
//! An entry is named by a SHA-256 over the module's bytes and the engine's compatibility hash,
//! which covers the wasmtime version and every compilation setting. Changing the plugin,
//! upgrading wasmtime or changing a setting that affects code therefore misses the cache.
//!
//! # Safety argument
//!
//! Loading an entry calls `Module::deserialize`, which is `unsafe`: the bytes are machine code
//! that will run, and wasmtime trusts them. We only deserialize files this module wrote, and we
//! check that before trusting them:
//! - the directory is created mode 0700 and entries are written mode 0600, through a temporary
//!   file and a rename, so a reader never sees a half-written entry;
//! - an entry is used only if it is a regular file owned by our effective user and writable by
//!   nobody else, in a directory with the same properties;
//! - each entry starts with a magic line and the SHA-256 of its payload, checked before use, so
//!   a truncated or corrupted file is recompiled, not executed.
//!
//! What remains trusted is whoever runs as our user: they could equally replace the binary.
//! Anything that fails these checks is ignored and the module is compiled from source.

use std::fs;
use std::hash::Hasher;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

const MAGIC: &[u8] = b"lanekeeper-wasm-cache 1\n";

/// The cache directory of one home.
pub struct ArtifactCache {
    dir: PathBuf,
}

/// Feeds `Hash` output into SHA-256.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0
    }
}

impl ArtifactCache {
    /// A cache in `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The entry name for `wasm` compiled by `engine`.
    pub fn key(engine: &Engine, wasm: &[u8]) -> String {
        let mut h = ShaHasher(Sha256::new());
        h.write(MAGIC);
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut h);
        h.write(&Sha256::digest(wasm));
        hex(&h.0.finalize())
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    /// The cached module for `key`, if a sound entry exists.
    pub fn load(&self, engine: &Engine, key: &str) -> Option<Module> {
        let path = self.path(key);
        if !private(&self.dir, true) || !private(&path, false) {
            return None;
        }
        let bytes = fs::read(&path).ok()?;
        let rest = bytes.strip_prefix(MAGIC)?;
        let (digest, payload) = rest.split_at_checked(32)?;
        if Sha256::digest(payload).as_slice() != digest {
            tracing::warn!(path = %path.display(), "corrupt WASM cache entry; recompiling");
            return None;
        }
        // SAFETY: `payload` is the output of `Module::serialize` written by `store` below: the
        // file passed the ownership and permission checks above and its digest matches (see
        // the module docs). wasmtime itself rejects artifacts of another version or config.
        unsafe { Module::deserialize(engine, payload) }.ok()
    }

    /// Stores `module` under `key`. Best effort: a read-only home simply compiles each time.
    pub fn store(&self, key: &str, module: &Module) {
        if let Err(e) = self.try_store(key, module) {
            tracing::debug!(dir = %self.dir.display(), "cannot cache a compiled WASM plugin: {e}");
        }
    }

    fn try_store(&self, key: &str, module: &Module) -> std::io::Result<()> {
        let payload = module.serialize().map_err(std::io::Error::other)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let tmp = self.dir.join(format!(".{key}.{}.tmp", std::process::id()));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&Sha256::digest(&payload))?;
        f.write_all(&payload)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, self.path(key)).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    }
}

/// True if `path` is ours and writable by nobody else.
fn private(path: &Path, dir: bool) -> bool {
    let Ok(m) = fs::symlink_metadata(path) else {
        return false;
    };
    let kind_ok = if dir { m.is_dir() } else { m.is_file() };
    kind_ok && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o022 == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
