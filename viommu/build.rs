//! Declares the `loom` cfg the model-checking tests use
//! (`RUSTFLAGS="--cfg loom" cargo test -p viommu --test loom --release`).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
