//! jemalloc as the process's allocator (feature `jemalloc`: every Rust allocation of a binary
//! that links the service goes to it; feature `small-jemalloc` without it: the allocations
//! under 16 KiB, the rest to glibc, see `split.rs`). Freed pages unused for a second are
//! returned by a background thread (`dirty_decay_ms:1000`, `muzzy_decay_ms:0`), so resident
//! memory follows the live heap in every arena; `arena.<all>.purge` returns the rest at once
//! when idle. The settings can be overridden at run time with `_RJEM_MALLOC_CONF` (jemalloc's
//! `MALLOC_CONF` under this build's symbol prefix).

use std::ffi::{c_char, c_void, CStr};
use std::ptr::null_mut;
use std::time::Duration;

use tikv_jemalloc_sys::mallctl;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(not(feature = "jemalloc"))]
#[global_allocator]
static GLOBAL: super::split::Split = super::split::Split;

/// Whether large allocations go to glibc (the split allocator).
const SPLIT: bool = cfg!(not(feature = "jemalloc"));

/// jemalloc's compiled-in options: a C string pointer under the prefixed symbol name.
#[repr(transparent)]
pub struct Options(*const c_char);
// SAFETY: the pointer is to a static, immutable C string.
unsafe impl Sync for Options {}

#[export_name = "_rjem_malloc_conf"]
pub static OPTIONS: Options =
    Options(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

pub const SUPPORTED: bool = true;
pub const NAME: &str = match SPLIT {
    true => "jemalloc+glibc",
    false => "jemalloc",
};

/// `mallctl` with no old value and `new` as the new one; `true` on success.
fn write(name: &CStr, new: *mut c_void, len: usize) -> bool {
    // SAFETY: `name` is a valid C string; `new` is null with `len` 0, or points to `len`
    // bytes the caller owns, of the type the named control takes.
    unsafe { mallctl(name.as_ptr(), null_mut(), null_mut(), new, len) == 0 }
}

/// How many times a purge is retried while freed pages stay resident.
const PURGE_ATTEMPTS: u32 = 50;
/// The wait between attempts.
const PURGE_RETRY_WAIT: Duration = Duration::from_millis(2);

/// Purges every arena until no freed page is left resident (or the attempts run out). One
/// purge is not always enough: while the background thread is itself purging an arena (it
/// wakes when many pages are freed at once), jemalloc makes any other purge of that arena
/// return at once, and the background thread returns only its decay curve's share.
pub fn release_free_memory() -> bool {
    #[cfg(not(feature = "jemalloc"))]
    super::glibc::release_free_memory();
    for _ in 0..PURGE_ATTEMPTS {
        // 4096: MALLCTL_ARENAS_ALL, every arena.
        if !write(c"arena.4096.purge", null_mut(), 0) {
            return false;
        }
        match freed_resident_pages() {
            Some(0) | None => return true,
            Some(_) => std::thread::sleep(PURGE_RETRY_WAIT),
        }
    }
    true
}

/// Pages freed but still resident in every arena (`pdirty` + `pmuzzy`), after refreshing the
/// statistics.
fn freed_resident_pages() -> Option<usize> {
    refresh_stats()?;
    Some(read_size(c"stats.arenas.4096.pdirty")? + read_size(c"stats.arenas.4096.pmuzzy")?)
}

/// Refreshes jemalloc's statistics (`epoch`).
fn refresh_stats() -> Option<()> {
    let mut epoch: u64 = 1;
    write(c"epoch", (&raw mut epoch).cast(), size_of::<u64>()).then_some(())
}

/// Reads a `size_t` control.
fn read_size(name: &CStr) -> Option<usize> {
    let mut value: usize = 0;
    let mut len = size_of::<usize>();
    // SAFETY: the named control is a size_t, read into `value` of `len` bytes.
    let read = unsafe {
        mallctl(
            name.as_ptr(),
            (&raw mut value).cast(),
            &mut len,
            null_mut(),
            0,
        )
    };
    (read == 0).then_some(value)
}

/// `stats.allocated` after refreshing the statistics, plus glibc's bytes in use (its arenas
/// and mapped blocks) under the split allocator.
pub fn heap_in_use_bytes() -> Option<u64> {
    refresh_stats()?;
    let jemalloc = read_size(c"stats.allocated")? as u64;
    #[cfg(not(feature = "jemalloc"))]
    return Some(jemalloc + super::glibc::heap_in_use_bytes()?);
    #[cfg(feature = "jemalloc")]
    Some(jemalloc)
}
