//! The split allocator of CPU builds (feature `small-jemalloc`): allocations under
//! [`SMALL_LIMIT`] (jemalloc's slab size classes: strings, JSON, the tasks' and sockets'
//! buffers) go to jemalloc, which returns freed pages from every arena; larger ones (the model's
//! tensors) to the system allocator (glibc), whose free blocks are trimmed when the engine goes
//! idle. Measured on the CPU (docs/benchmarks.md, session 15): jemalloc for every allocation
//! made a frame 12% slower, for those under 256 KiB 7%, under 64 KiB 2%, under 16 KiB as fast as
//! glibc.
//!
//! glibc's half runs on one arena (`M_ARENA_MAX` 1, set before the first large block): its trim
//! returns the free pages of every heap and the free top of the main heap only, so a thread
//! arena's free top (up to the dynamic trim threshold, megabytes after the model's large
//! frees) stayed resident: +9.4% resident memory in a 4-minute soak, all in thread arenas
//! (docs/security.md). The one arena is shared only by large allocations (the model thread's
//! tensors, a few audio buffers); the tasks' small ones have jemalloc's per-thread arenas.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Once;

use tikv_jemallocator::Jemalloc;

/// Allocations of at least this many bytes go to the system allocator.
pub const SMALL_LIMIT: usize = 16 << 10;

/// Small allocations on jemalloc, the rest on the system allocator; a block is freed by the
/// allocator its size chose, and a reallocation across the limit moves it.
pub struct Split;

/// Whether a block of `size` bytes lives on jemalloc.
fn small(size: usize) -> bool {
    size < SMALL_LIMIT
}

/// Puts glibc on one arena (the main heap, which its trim reaches whole), once, before the
/// first block it allocates for us.
fn one_glibc_arena() {
    static SET: Once = Once::new();
    // SAFETY: mallopt only changes the allocator's parameters under its own lock.
    SET.call_once(|| unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    });
}

/// The system allocator, on one arena.
fn large() -> System {
    one_glibc_arena();
    System
}

// SAFETY: every block is allocated, resized and freed by one of two allocators, each chosen by
// the block's size, which `dealloc` and `realloc` receive as it was allocated.
unsafe impl GlobalAlloc for Split {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match small(layout.size()) {
            true => Jemalloc.alloc(layout),
            false => large().alloc(layout),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match small(layout.size()) {
            true => Jemalloc.alloc_zeroed(layout),
            false => large().alloc_zeroed(layout),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match small(layout.size()) {
            true => Jemalloc.dealloc(ptr, layout),
            false => System.dealloc(ptr, layout),
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (small(layout.size()), small(new_size)) {
            (true, true) => Jemalloc.realloc(ptr, layout, new_size),
            (false, false) => System.realloc(ptr, layout, new_size),
            _ => {
                // SAFETY: the caller guarantees `new_size`, rounded up to `layout.align()`,
                // does not overflow (GlobalAlloc::realloc's contract).
                let new = Layout::from_size_align_unchecked(new_size, layout.align());
                let moved = self.alloc(new);
                if !moved.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks on either side of the limit, resized within and across it, keep their bytes.
    #[test]
    fn blocks_keep_their_bytes_across_the_limit() {
        let a = Split;
        for (from, to) in [
            (100, 200),
            (100, SMALL_LIMIT * 4),
            (SMALL_LIMIT * 4, 100),
            (SMALL_LIMIT * 2, SMALL_LIMIT * 8),
            (SMALL_LIMIT - 1, SMALL_LIMIT),
        ] {
            let layout = Layout::from_size_align(from, 16).unwrap();
            // SAFETY: a non-zero layout; the block is written within `from`, read within the
            // smaller size after the resize, and freed with its last layout.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                for i in 0..from {
                    *p.add(i) = (i % 251) as u8;
                }
                let q = a.realloc(p, layout, to);
                assert!(!q.is_null());
                for i in 0..from.min(to) {
                    assert_eq!(*q.add(i), (i % 251) as u8, "{from} -> {to} at {i}");
                }
                a.dealloc(q, Layout::from_size_align(to, 16).unwrap());
                let z = a.alloc_zeroed(layout);
                assert!((0..from).all(|i| *z.add(i) == 0));
                a.dealloc(z, layout);
            }
        }
    }
}
