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

/// The atomics of the shared layers (loom's under `--cfg loom`).
pub mod atomic {
    #[cfg(not(loom))]
    pub use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    #[cfg(loom)]
    pub use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
}
