//! jemalloc as the process's allocator (feature `jemalloc`): every Rust allocation of a binary
//! that links the service goes to it. Freed pages unused for a second are returned by a
//! background thread (`dirty_decay_ms:1000`, `muzzy_decay_ms:0`), so resident memory follows
//! the live heap in every arena; `arena.<all>.purge` returns the rest at once when idle. The
//! settings can be overridden at run time with `_RJEM_MALLOC_CONF` (jemalloc's `MALLOC_CONF`
//! under this build's symbol prefix).

use std::ffi::{c_char, c_void, CStr};
use std::ptr::null_mut;

use tikv_jemalloc_sys::mallctl;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's compiled-in options: a C string pointer under the prefixed symbol name.
#[repr(transparent)]
pub struct Options(*const c_char);
// SAFETY: the pointer is to a static, immutable C string.
unsafe impl Sync for Options {}

#[export_name = "_rjem_malloc_conf"]
pub static OPTIONS: Options =
    Options(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

pub const SUPPORTED: bool = true;
pub const NAME: &str = "jemalloc";

/// `mallctl` with no old value and `new` as the new one; `true` on success.
fn write(name: &CStr, new: *mut c_void, len: usize) -> bool {
    // SAFETY: `name` is a valid C string; `new` is null with `len` 0, or points to `len`
    // bytes the caller owns, of the type the named control takes.
    unsafe { mallctl(name.as_ptr(), null_mut(), null_mut(), new, len) == 0 }
}

pub fn release_free_memory() -> bool {
    // 4096: MALLCTL_ARENAS_ALL, every arena.
    write(c"arena.4096.purge", null_mut(), 0)
}

/// `stats.allocated` after refreshing the statistics (`epoch`).
pub fn heap_in_use_bytes() -> Option<u64> {
    let mut epoch: u64 = 1;
    if !write(c"epoch", (&raw mut epoch).cast(), size_of::<u64>()) {
        return None;
    }
    let mut allocated: usize = 0;
    let mut len = size_of::<usize>();
    // SAFETY: `stats.allocated` is a size_t, read into `allocated` of `len` bytes.
    let read = unsafe {
        mallctl(
            c"stats.allocated".as_ptr(),
            (&raw mut allocated).cast(),
            &mut len,
            null_mut(),
            0,
        )
    };
    (read == 0).then_some(allocated as u64)
}
