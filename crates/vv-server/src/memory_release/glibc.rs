//! glibc's allocator: `malloc_trim(0)` returns the whole free pages of every heap (and the free
//! top of the main one); `mallinfo2` gives the bytes in use.

pub const SUPPORTED: bool = true;
pub const NAME: &str = "glibc";

pub fn release_free_memory() -> bool {
    // SAFETY: malloc_trim only takes the allocator's own locks; it is safe to call from any
    // thread at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// In use in every arena plus directly mapped blocks.
pub fn heap_in_use_bytes() -> Option<u64> {
    // SAFETY: mallinfo2 only reads the allocator's statistics under its own locks.
    let info = unsafe { libc::mallinfo2() };
    Some((info.uordblks + info.hblkhd) as u64)
}
