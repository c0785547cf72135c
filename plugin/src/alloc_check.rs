//! The proof that `process` never allocates, for the host tests: built with
//! `--features alloc-check`, the plugin's allocator aborts the host when memory is allocated or
//! freed inside [`forbid`], and `process` runs inside it. `cargo xtask test` bundles this build
//! next to the release one (`target/bundled-alloc-check/`), at release speed.
//!
//! Debug builds have nice-plug's own check (`assert_process_allocs`, around its whole process
//! wrapper) and their own global allocator, so there [`forbid`] only runs the closure.

#[cfg(not(debug_assertions))]
mod checking {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        // `const` and `Copy`: reading it never allocates and it has no destructor.
        static FORBIDDEN: Cell<bool> = const { Cell::new(false) };
    }

    /// The system allocator, refusing while the current thread is inside [`forbid`].
    pub struct CheckingAllocator;

    fn check(what: &str) {
        if FORBIDDEN.with(Cell::get) {
            FORBIDDEN.with(|f| f.set(false));
            // Written without formatting machinery that could allocate again.
            let _ = std::io::Write::write_all(&mut std::io::stderr(), b"backline alloc-check: ");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), what.as_bytes());
            let _ = std::io::Write::write_all(&mut std::io::stderr(), b" inside process()\n");
            std::process::abort();
        }
    }

    unsafe impl GlobalAlloc for CheckingAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            check("allocation");
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            check("allocation");
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            check("reallocation");
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            check("free");
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: CheckingAllocator = CheckingAllocator;

    /// Runs `f` with allocation forbidden on this thread.
    pub fn forbid<T>(f: impl FnOnce() -> T) -> T {
        let outer = FORBIDDEN.with(|c| c.replace(true));
        let result = f();
        FORBIDDEN.with(|c| c.set(outer));
        result
    }
}

#[cfg(not(debug_assertions))]
pub use checking::forbid;

#[cfg(debug_assertions)]
pub fn forbid<T>(f: impl FnOnce() -> T) -> T {
    f()
}
