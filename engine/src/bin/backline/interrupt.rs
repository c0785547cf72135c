//! Ctrl-C while a job runs: the first press asks the job to stop (it ends within a step, and the
//! CLI writes nothing); a second press quits at once.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The exit status of a process ended by SIGINT, as shells report it.
const EXIT_INTERRUPTED: i32 = 130;

extern "C" fn on_sigint(_: libc::c_int) {
    // Only async-signal-safe work here: an atomic swap, and `_exit` on the second press.
    if INTERRUPTED.swap(true, SeqCst) {
        // SAFETY: `_exit` is async-signal-safe and ends the process without running destructors.
        unsafe { libc::_exit(EXIT_INTERRUPTED) };
    }
}

/// Routes Ctrl-C to [`interrupted`] instead of ending the process.
pub fn install() {
    // SAFETY: the handler is an `extern "C" fn(c_int)` that only touches an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
}

/// Whether Ctrl-C has been pressed since [`install`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(SeqCst)
}

/// The flag itself, for code that takes a cancel flag (a download stops between chunks).
pub fn flag() -> &'static AtomicBool {
    &INTERRUPTED
}
