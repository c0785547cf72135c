//! Transparent huge pages for the engine's large buffers.
//!
//! Model weights (9.6 GB of f32 for the DiT) and the VAE decoder's activations (245 MB per op at
//! 10 s) are fresh allocations that the kernel backs page by page on first touch. With 4 KiB
//! pages that is one fault and one zeroed page per 4 KiB, and on a VM the faults dominate: the
//! DiT load spent half its time there. Backed by 2 MiB pages the same memory faults 512 times less
//! often (9.8 GB touched on two cores: 1.9 s with 4 KiB pages, 0.3 s with huge pages, on the
//! project's machine; see `docs/benchmarks.md`).
//!
//! Most Linux distributions set transparent huge pages to `madvise`, so memory gets them only
//! when asked. [`advise_huge_pages`] asks for one buffer; [`HugePageAlloc`] is a global
//! allocator for binaries (the CLI, the benchmark, the plugin) that asks for every allocation of
//! [`HUGE_ALLOCATION`] bytes or more and aligns those to 2 MiB so that all of it qualifies.
//! Elsewhere both are no-ops.

use std::alloc::{GlobalAlloc, Layout, System};

/// The x86-64 and aarch64 (4 KiB base pages) transparent huge page size.
pub const HUGE_PAGE: usize = 2 << 20;

/// Allocations at least this large are aligned to [`HUGE_PAGE`] and advised: big enough that the
/// up-to-2 MiB of alignment slack is small next to them.
pub const HUGE_ALLOCATION: usize = 16 << 20;

/// Ask the kernel to back the whole 2 MiB-aligned pages inside `ptr..ptr + len` with huge pages.
/// Call it before the memory is first touched; pages already faulted in stay small until the
/// kernel's background collapse gets to them. A hint only: failures are ignored.
pub fn advise_huge_pages(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
        let end = (ptr as usize + len) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // Safety: the range lies inside one allocation the caller owns; MADV_HUGEPAGE only
            // changes how the kernel backs it, never its contents or its mapping.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

/// A fresh buffer of `len` elements, huge pages asked for, filled on every core: `fill` gets
/// disjoint chunks of `chunk` elements (the last may be shorter) with the index of each chunk's
/// first element, and must write every element of its chunk. Writing straight into uninitialised
/// memory spreads the first touch of each page (the page fault, which dominates on a VM) over the
/// cores, with no zero-fill before it.
pub fn fill_fresh<T: Send>(len: usize, chunk: usize, fill: impl Fn(usize, &mut [std::mem::MaybeUninit<T>]) + Sync) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(len);
    advise_huge_pages(out.as_mut_ptr().cast(), len * std::mem::size_of::<T>());
    refill(&mut out, len, chunk, fill);
    out
}

/// [`fill_fresh`] into `out`, reusing its memory (grown if needed): `out` ends with `len`
/// elements, all written by `fill`.
pub fn refill<T: Send>(out: &mut Vec<T>, len: usize, chunk: usize, fill: impl Fn(usize, &mut [std::mem::MaybeUninit<T>]) + Sync) {
    use rayon::prelude::*;
    let chunk = chunk.max(1);
    out.clear();
    out.reserve(len);
    out.spare_capacity_mut()[..len].par_chunks_mut(chunk).enumerate().for_each(|(i, part)| fill(i * chunk, part));
    // Safety: `fill` writes every element of every chunk, and the chunks cover `0..len`.
    unsafe { out.set_len(len) };
}

/// Have the C allocator serve every block of 1 MiB or more with its own mapping, returned to the
/// system when freed. By default glibc raises that threshold each time such a block is freed (up
/// to 32 MiB), after which the per-tensor buffers of a model load land in the heap between
/// weights that stay, and their memory is kept: 0.6 GiB after loading the turbo DiT, 1.3 GiB
/// by the diffusion stage (`docs/benchmarks.md`). For binaries that own their process (the CLI,
/// the benchmark); a plugin leaves its host's allocator alone and calls
/// [`release_freed_memory`] instead.
pub fn map_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // Safety: mallopt only changes allocator tuning; any value is valid.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Hand memory the C allocator holds free back to the system (glibc keeps freed heap pages
/// otherwise). Called after a model loads and after each job.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // Safety: malloc_trim only returns free pages; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The system allocator, with huge pages asked for behind large allocations.
///
/// ```ignore
/// #[global_allocator]
/// static ALLOC: backline_engine::alloc::HugePageAlloc = backline_engine::alloc::HugePageAlloc;
/// ```
pub struct HugePageAlloc;

/// The layout a request is served with: large ones aligned to a huge page. `dealloc` and
/// `realloc` recompute it from the caller's layout, so the system allocator always sees the same
/// layout for the same block.
fn served(layout: Layout) -> Layout {
    if layout.size() >= HUGE_ALLOCATION && layout.align() < HUGE_PAGE {
        Layout::from_size_align(layout.size(), HUGE_PAGE).unwrap_or(layout)
    } else {
        layout
    }
}

// Safety: every call forwards to `System` with the layout `served` gives, which is a valid layout
// of at least the caller's size and alignment, and is the same for a block's alloc and dealloc.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(served(layout)) };
        if !ptr.is_null() && layout.size() >= HUGE_ALLOCATION {
            advise_huge_pages(ptr, layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // The system's calloc leaves fresh mmap'd blocks untouched (they are zero already), so
        // advising afterwards is still before the first touch.
        let ptr = unsafe { System.alloc_zeroed(served(layout)) };
        if !ptr.is_null() && layout.size() >= HUGE_ALLOCATION {
            advise_huge_pages(ptr, layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, served(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if served(layout) == layout && served(new_layout) == new_layout {
            // Both small: the system allocator's own realloc (it may grow in place).
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_are_huge_page_aligned_and_round_trip() {
        let alloc = HugePageAlloc;
        let layout = Layout::from_size_align(HUGE_ALLOCATION + 12345, 4).unwrap();
        unsafe {
            let ptr = alloc.alloc(layout);
            assert!(!ptr.is_null());
            assert_eq!(ptr as usize % HUGE_PAGE, 0, "a large block starts on a huge page");
            ptr.write_bytes(7, layout.size());
            // Grow across the threshold and back down: contents are kept each way.
            let grown = alloc.realloc(ptr, layout, layout.size() * 2);
            assert_eq!(*grown.add(layout.size() - 1), 7);
            let small = Layout::from_size_align(layout.size() * 2, 4).unwrap();
            let shrunk = alloc.realloc(grown, small, 100);
            assert_eq!(*shrunk.add(99), 7);
            alloc.dealloc(shrunk, Layout::from_size_align(100, 4).unwrap());
        }
    }

    #[test]
    fn zeroed_large_blocks_are_zero() {
        let alloc = HugePageAlloc;
        let layout = Layout::from_size_align(HUGE_ALLOCATION, 8).unwrap();
        unsafe {
            let ptr = alloc.alloc_zeroed(layout);
            assert!(std::slice::from_raw_parts(ptr, layout.size()).iter().all(|&b| b == 0));
            alloc.dealloc(ptr, layout);
        }
    }
}
