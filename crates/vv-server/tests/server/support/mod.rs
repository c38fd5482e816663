//! Shared helpers of the configuration tests: injected environments and scratch files.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An environment made of `pairs`, as the loader's lookup.
pub fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The lookup function over `map`.
pub fn lookup(map: &HashMap<String, String>) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| map.get(name).cloned()
}

/// A fresh scratch directory under cargo's per-target temporary directory.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("vv-server-config")
        .join(format!("{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `contents` to `name` in a fresh scratch directory and returns its path.
pub fn write_file(name: &str, contents: &str) -> PathBuf {
    let path = scratch_dir("file").join(name);
    std::fs::write(&path, contents).unwrap();
    path
}
