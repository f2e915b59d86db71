//! Link the guest as a static, non-PIE image at the address `link.ld` gives.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    println!("cargo:rerun-if-changed=link.ld");
    for arg in ["-nostdlib", "-static", "-no-pie"] {
        println!("cargo:rustc-link-arg={arg}");
    }
    println!("cargo:rustc-link-arg=-T{dir}/link.ld");
}
