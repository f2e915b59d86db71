//! Building a test program for the guest: a static executable
//! (`-C target-feature=+crt-static` against Debian's glibc `libc.a`), in a
//! target directory of its own so that a build started from inside
//! `cargo test` does not wait on the outer build's lock.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// The target the guest programs are built for (explicit, so that build
/// scripts and proc-macros stay dynamically linked host programs).
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds example `example` of the package at `manifest_dir` (its
/// `CARGO_MANIFEST_DIR`), release, static, with `features`, into
/// `target_dir`; returns the executable's path.
pub fn build_static_example(
    manifest_dir: &Path,
    example: &str,
    features: &[&str],
    target_dir: &Path,
) -> Result<PathBuf> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--release", "--target", TARGET, "--example", example])
        .arg("--manifest-path")
        .arg(manifest_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    let command = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| Error::io(format!("running {command}"), &e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        let stderr = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        return Err(Error::Build { command, stderr });
    }
    Ok(target_dir.join(TARGET).join("release").join("examples").join(example))
}
