//! The lock the shared mapping layers use: a spin lock (`no_std`, no
//! scheduler), or loom's mutex when the crates are built for a loom model
//! (`--cfg loom`), so the model checker sees every acquisition.

/// A mutual-exclusion lock around a `T`.
#[derive(Debug, Default)]
pub struct Lock<T> {
    #[cfg(not(loom))]
    inner: spin::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

/// What [`Lock::lock`] holds until it is dropped.
#[cfg(not(loom))]
pub type LockGuard<'a, T> = spin::MutexGuard<'a, T>;
/// What [`Lock::lock`] holds until it is dropped.
#[cfg(loom)]
pub type LockGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Lock<T> {
    /// A lock around `value`.
    pub fn new(value: T) -> Self {
        #[cfg(not(loom))]
        let inner = spin::Mutex::new(value);
        #[cfg(loom)]
        let inner = loom::sync::Mutex::new(value);
        Self { inner }
    }

    /// The value, lock and all given up.
    pub fn into_inner(self) -> T {
        #[cfg(not(loom))]
        return self.inner.into_inner();
        #[cfg(loom)]
        return self.inner.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    }

    /// Waits for the lock and takes it.
    #[inline]
    pub fn lock(&self) -> LockGuard<'_, T> {
        #[cfg(not(loom))]
        return self.inner.lock();
        #[cfg(loom)]
        return self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

/// A per-CPU value on cache lines of its own: what one CPU writes on its
/// fast path must not share a line with another CPU's (false sharing turns
/// every write into a cross-core transfer). 128 bytes: two 64-byte lines,
/// as Intel's adjacent-line prefetcher fetches them in pairs.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct PerCpu<T>(pub T);

impl<T> core::ops::Deref for PerCpu<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

const _: () = assert!(align_of::<PerCpu<u8>>() == 128 && size_of::<PerCpu<[u8; 129]>>() == 256);

/// The atomics of the shared layers (loom's under `--cfg loom`).
pub mod atomic {
    #[cfg(not(loom))]
    pub use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    #[cfg(loom)]
    pub use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
}
