//! Human-readable formatting of sizes and device descriptions (logs and the `devices` table).

/// Formats a byte count with a binary unit, e.g. `15.5 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Formats an optional byte count, `unknown` when absent.
pub fn format_optional_bytes(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "unknown".to_string(), format_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_binary_units() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(16 << 30), "16.0 GiB");
        assert_eq!(format_bytes(u64::MAX), "16777216.0 TiB");
        assert_eq!(format_optional_bytes(None), "unknown");
    }
}
