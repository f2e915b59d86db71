//! Bounds a guest run in time: a guest that spins without exiting keeps
//! `KVM_RUN` in the kernel, so a timer thread signals the vCPU thread, the
//! ioctl returns `EINTR`, and the run loop sees its deadline has passed.

use std::{
    sync::{
        Arc, Once,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

/// The signal that kicks the vCPU thread out of `KVM_RUN`.
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn ignore(_: libc::c_int) {}

/// Installs a do-nothing handler for [`kick_signal`] without `SA_RESTART`,
/// so the signal interrupts `KVM_RUN` instead of killing the process.
fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is valid; the handler is async-signal
        // safe (it does nothing) and lives for the whole program.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(kick_signal(), &action, std::ptr::null_mut());
        }
    });
}

/// Kicks the thread that created it once `timeout` has passed, every
/// 100 ms, until dropped.
#[must_use = "the watchdog stops when dropped"]
pub struct Watchdog {
    done: Arc<AtomicBool>,
    timer: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Starts watching the calling thread.
    pub fn start(timeout: Duration) -> Self {
        install_handler();
        // SAFETY: pthread_self has no preconditions.
        let target = unsafe { libc::pthread_self() };
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let deadline = Instant::now() + timeout;
        let timer = thread::spawn(move || {
            while !flag.load(Ordering::Acquire) {
                thread::sleep(Duration::from_millis(100));
                if Instant::now() >= deadline && !flag.load(Ordering::Acquire) {
                    // SAFETY: `target` is alive until `done` is set: the
                    // Watchdog joins this thread in its Drop, which runs
                    // on the target thread before that thread can exit.
                    unsafe { libc::pthread_kill(target, kick_signal()) };
                }
            }
        });
        Self { done, timer: Some(timer) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        if let Some(timer) = self.timer.take() {
            // A panicking timer thread only means no more kicks.
            let _ = timer.join();
        }
    }
}
