//! Builds the no_std guest (`guest/`, its own workspace) for
//! x86_64-unknown-linux-gnu into OUT_DIR and tells the VMM where it is.
//! Equivalent by hand:
//! `cargo build --release --manifest-path eval/guest/Cargo.toml
//!  --target x86_64-unknown-linux-gnu`.
use std::{env, path::PathBuf, process::Command};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    let guest_dir = manifest_dir.join("guest");
    for path in ["Cargo.toml", "Cargo.lock", "build.rs", "link.ld", "src"] {
        println!("cargo:rerun-if-changed={}", guest_dir.join(path).display());
    }
    // The guest links the driver and the library crates by path.
    let root = manifest_dir.join("..");
    for dir in [
        "eval/driver",
        "vtd-regs",
        "vtd-tables",
        "iova-alloc",
        "invalidation",
        "teardown",
        "vtd-emu",
    ] {
        for path in ["Cargo.toml", "src"] {
            println!("cargo:rerun-if-changed={}", root.join(dir).join(path).display());
        }
    }
    let target_dir = out_dir.join("guest-target");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--target", "x86_64-unknown-linux-gnu"])
        .arg("--manifest-path")
        .arg(guest_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer build's flags and target are not the guest's.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .expect("run cargo for the guest");
    assert!(status.success(), "building eval/guest failed");
    let elf = target_dir.join("x86_64-unknown-linux-gnu/release/viommu-eval-guest");
    println!("cargo:rustc-env=VIOMMU_EVAL_GUEST={}", elf.display());
}
