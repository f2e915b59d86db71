//! Shared helpers of the example programs in `src/bin/`.
