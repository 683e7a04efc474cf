//! `lanekeeper plugin new NAME --rhai|--wasm`: writes a working plugin skeleton with a test.
//!
//! Rhai: `plugins/NAME.rhai` and `plugins/tests/NAME.sh`. WASM: a guest crate in
//! `plugins/wasm/NAME/` (with a native unit test and `build.sh`, which installs
//! `plugins/NAME.wasm`), plus the guest SDK in `plugins/wasm/sdk/` if the home lacks it.
//! Sources live below the top level of `plugins/`, so they are never loaded as plugins.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::{CliError, CliResult};
use crate::home::Home;
use crate::plugins::registry::EXTENSIONS;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Write a working plugin skeleton with a test.
    New(NewArgs),
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("runtime").required(true).args(["rhai", "wasm"])))]
pub struct NewArgs {
    /// The plugin's name, as lanes will `use:` it (a-z, 0-9 and `-`).
    name: String,
    /// A Rhai script, plugins/NAME.rhai.
    #[arg(long)]
    rhai: bool,
    /// A WebAssembly guest crate in plugins/wasm/NAME/, built into plugins/NAME.wasm.
    #[arg(long)]
    wasm: bool,
}

const RHAI: &str = include_str!("scaffold/plugin.rhai");
const RHAI_TEST: &str = include_str!("scaffold/test.sh");
const GUEST_RS: &str = include_str!("scaffold/guest.rs");
const GUEST_TOML: &str = include_str!("scaffold/guest.toml");
const GUEST_BUILD: &str = include_str!("scaffold/guest-build.sh");
const GUEST_GITIGNORE: &str = include_str!("scaffold/guest.gitignore");

/// The guest SDK, embedded so any home can build guests without this repository.
const SDK: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../plugins/wasm/sdk/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../plugins/wasm/sdk/src/lib.rs"),
    ),
    (
        "src/bump.rs",
        include_str!("../../plugins/wasm/sdk/src/bump.rs"),
    ),
    (
        "src/json.rs",
        include_str!("../../plugins/wasm/sdk/src/json.rs"),
    ),
    (
        "src/sys.rs",
        include_str!("../../plugins/wasm/sdk/src/sys.rs"),
    ),
    (
        "src/testing.rs",
        include_str!("../../plugins/wasm/sdk/src/testing.rs"),
    ),
    (
        "src/wire.rs",
        include_str!("../../plugins/wasm/sdk/src/wire.rs"),
    ),
];

pub fn run(home: &Home, command: Command) -> CliResult {
    match command {
        Command::New(args) => new(home, &args),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-')
}

fn new(home: &Home, args: &NewArgs) -> CliResult {
    let name = args.name.as_str();
    if !valid_name(name) {
        return Err(CliError::Usage(format!(
            "plugin name `{name}` must start with a letter and use only a-z, 0-9 and `-` (it also names the deferral reason `{name}-failed`)"
        )));
    }
    let plugins = home.plugins_dir();
    for ext in EXTENSIONS {
        let existing = plugins.join(format!("{name}.{ext}"));
        if existing.exists() {
            return Err(CliError::Usage(format!(
                "{} already exists; pick another name or remove it",
                existing.display()
            )));
        }
    }
    let fill = |t: &str| {
        t.replace("__NAME__", name)
            .replace("__LIB__", &format!("{}_plugin", name.replace('-', "_")))
    };
    let mut written = Vec::new();
    if args.rhai {
        let file = format!("{name}.rhai");
        write_new(&plugins.join(&file), &fill(RHAI), false, &mut written)?;
        let test = fill(RHAI_TEST).replace("__FILE__", &file);
        write_new(
            &plugins.join(format!("tests/{name}.sh")),
            &test,
            true,
            &mut written,
        )?;
    } else {
        let sdk = plugins.join("wasm/sdk");
        if !sdk.join("Cargo.toml").exists() {
            for (rel, text) in SDK {
                write_new(&sdk.join(rel), text, false, &mut written)?;
            }
        }
        let dir = plugins.join(format!("wasm/{name}"));
        if dir.exists() {
            return Err(CliError::Usage(format!(
                "{} already exists; pick another name or remove it",
                dir.display()
            )));
        }
        write_new(
            &dir.join("Cargo.toml"),
            &fill(GUEST_TOML),
            false,
            &mut written,
        )?;
        write_new(
            &dir.join("src/lib.rs"),
            &fill(GUEST_RS),
            false,
            &mut written,
        )?;
        write_new(
            &dir.join("build.sh"),
            &fill(GUEST_BUILD),
            true,
            &mut written,
        )?;
        write_new(
            &dir.join(".gitignore"),
            GUEST_GITIGNORE,
            false,
            &mut written,
        )?;
    }
    let mut out = String::new();
    for p in &written {
        out.push_str(&format!("wrote {}\n", p.display()));
    }
    out.push_str(&if args.rhai {
        format!(
            "next: use it from a lane (`- use: {name}` with `with: {{ lane: … }}`), run `lanekeeper validate`, and try `bash plugins/tests/{name}.sh`\n"
        )
    } else {
        format!(
            "next: `cd plugins/wasm/{name} && cargo test && ./build.sh` (needs `rustup target add wasm32-unknown-unknown`), then `lanekeeper validate`\n"
        )
    });
    super::emit(&out)?;
    Ok(0)
}

/// Writes a file that must not exist yet, creating its directory.
fn write_new(
    path: &Path,
    text: &str,
    executable: bool,
    written: &mut Vec<PathBuf>,
) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if executable { 0o755 } else { 0o644 })
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path.to_path_buf());
    Ok(())
}
