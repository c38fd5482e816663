//! `memory_release::release_free_memory` gives freed heap pages back to the system (jemalloc,
//! glibc): the holes that `free` alone leaves resident between live blocks. Which allocator
//! runs depends on the build's features: the README's `cargo test --workspace` runs glibc's,
//! `.ci/run` runs this test again with `--features vv-server/jemalloc`.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use vv_server::memory_release::{heap_in_use_bytes, release_free_memory};

/// Resident anonymous memory of this process, in KiB.
fn rss_anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn freed_holes_in_the_heap_are_returned_to_the_system_and_the_live_heap_follows() {
    const BLOCK: usize = 64 << 10;
    const BLOCKS: usize = 1024;
    // 64 KiB blocks stay under glibc's mmap threshold, so they come from a heap (in jemalloc,
    // from its extents), written so that they are resident. Freeing every other one leaves
    // 32 MiB of holes between live blocks, which the allocator cannot give back by shrinking
    // its heap from the top.
    let before_alloc = rss_anon_kib();
    let heap_before = heap_in_use_bytes().expect("the live heap is known on Linux");
    let mut blocks: Vec<Vec<u8>> = (0..BLOCKS).map(|i| vec![(i as u8) | 1; BLOCK]).collect();
    let peak = rss_anon_kib();
    // The live-heap figure follows the blocks (within what other threads allocate meanwhile).
    let heap_peak = heap_in_use_bytes().unwrap();
    assert!(
        heap_peak >= heap_before + 60 * (1 << 20),
        "{heap_before} -> {heap_peak}"
    );
    assert!(
        peak >= before_alloc + 60 * 1024,
        "{before_alloc} -> {peak} KiB"
    );
    for block in blocks.iter_mut().skip(1).step_by(2) {
        *block = Vec::new();
    }
    let after_free = rss_anon_kib();
    let heap_after_free = heap_in_use_bytes().unwrap();
    assert!(
        heap_after_free + 28 * (1 << 20) <= heap_peak,
        "{heap_peak} -> {heap_after_free}"
    );
    assert!(
        after_free + 8 * 1024 > peak,
        "free alone returned the holes ({peak} -> {after_free} KiB): nothing to test"
    );

    release_free_memory();
    let released = rss_anon_kib();
    assert!(
        released + 16 * 1024 <= after_free,
        "holes still resident: {after_free} -> {released} KiB"
    );
    // The live blocks are untouched.
    for (i, block) in blocks.iter().enumerate().step_by(2) {
        assert!(block.iter().all(|&b| b == (i as u8) | 1));
    }
}
