//! The process's peak resident memory (Linux `VmHWM`), which includes the load's transient
//! copies that `process_rss_bytes` after the runs no longer shows.

/// `VmHWM` of this process in bytes (`None` off Linux or if unreadable).
pub(super) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    vm_hwm(&status)
}

/// The `VmHWM:` line of a `/proc/<pid>/status` text, in bytes.
fn vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let kib = line.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::vm_hwm;

    #[test]
    fn reads_the_high_water_mark_in_bytes() {
        let status =
            "Name:\tvibevoice-rt\nVmPeak:\t 9000 kB\nVmHWM:\t  1536 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(vm_hwm(status), Some(1536 * 1024));
        assert_eq!(vm_hwm("VmRSS:\t1 kB\n"), None);
        assert_eq!(vm_hwm("VmHWM:\tlots\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_peak() {
        assert!(super::peak_rss_bytes().is_some_and(|b| b > 0));
    }
}
