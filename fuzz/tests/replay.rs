//! Replays every harness over every file of its corpus, `corpus/<name>/`:
//! the seeds and the interesting inputs fuzzing found stay regression tests
//! on stable.

use std::fs;
use std::path::Path;

#[test]
fn replay_corpora() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, harness) in viommu_fuzz::HARNESSES {
        let dir = root.join(name);
        let entries = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("harness {name} has no corpus {}: {e}", dir.display()));
        let mut inputs = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = fs::read(&path).unwrap();
            let result = std::panic::catch_unwind(|| harness(&data));
            assert!(result.is_ok(), "harness {name} panicked on {}", path.display());
            inputs += 1;
        }
        assert!(inputs > 0, "corpus {} is empty", dir.display());
        println!("{name}: replayed {inputs} inputs");
    }
}
