//! The human-readable table of a [`DevicesReport`].

use super::DevicesReport;
use crate::backend::Backend;
use crate::human::format_bytes;
use crate::ops::MemoryStats;
use crate::survey::BackendStatus;
use std::fmt::Write;

const HEADER: [&str; 6] = ["BACKEND", "COMPILED", "PRESENT", "DEVICE", "NAME", "MEMORY"];

/// One table row: the leading cells, padded to column widths, and a last free-width cell.
struct Row {
    cells: Vec<String>,
    last: String,
}

pub(super) fn render(report: &DevicesReport) -> String {
    let rows: Vec<Row> = std::iter::once(Row {
        cells: HEADER[..5].iter().map(|s| s.to_string()).collect(),
        last: HEADER[5].to_string(),
    })
    .chain(report.backends.iter().flat_map(backend_rows))
    .collect();
    let columns = HEADER.len() - 1;
    let mut widths = vec![0; columns];
    // Rows of absent backends end in a reason that spans the device columns: not measured.
    for row in rows.iter().filter(|r| r.cells.len() == columns) {
        for (width, cell) in widths.iter_mut().zip(&row.cells) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (cell, width) in row.cells.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        line.push_str(&row.last);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push('\n');
    let mut field = |name: &str, value: String| {
        let _ = writeln!(out, "{name:<9} {value}");
    };
    field("request", report.request.to_string());
    if let Some(device) = &report.resolved {
        let name = device
            .name
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let reason = report.reason.as_deref().unwrap_or_default();
        field("resolved", format!("{device}{name}: {reason}"));
    }
    match &report.dtype {
        Some(choice) => field(
            "dtype",
            format!(
                "{} (requested {}): {}",
                choice.dtype.as_str(),
                choice.requested,
                choice.reason
            ),
        ),
        None => field("dtype", format!("requested {}", report.dtype_request)),
    }
    for warning in &report.warnings {
        field("warning", warning.clone());
    }
    if let Some(error) = &report.error {
        field("error", format!("[{}] {}", error.code, error.message));
    }
    out
}

fn yes_no(flag: bool) -> String {
    if flag { "yes" } else { "no" }.to_string()
}

fn backend_rows(status: &BackendStatus) -> Vec<Row> {
    let lead = [
        status.backend.to_string(),
        yes_no(status.compiled_in),
        yes_no(status.present),
    ];
    if status.devices.is_empty() {
        return vec![Row {
            cells: lead.to_vec(),
            last: status
                .unavailable_reason
                .clone()
                .unwrap_or_else(|| "unavailable".to_string()),
        }];
    }
    status
        .devices
        .iter()
        .enumerate()
        .map(|(i, device)| {
            let mut cells = if i == 0 {
                lead.to_vec()
            } else {
                vec![String::new(); lead.len()]
            };
            cells.push(device.device.clone());
            let mut name = device.name.clone().unwrap_or_else(|| "unknown".to_string());
            if let Some(cc) = &device.compute_capability {
                name.push_str(&format!(" (compute {cc})"));
            }
            cells.push(name);
            Row {
                cells,
                last: memory_summary(&device.memory),
            }
        })
        .collect()
}

/// Memory figures that are known, e.g. `12.0 GiB free / 15.6 GiB total, RSS 20.0 MiB`.
fn memory_summary(stats: &MemoryStats) -> String {
    let known = |bytes: Option<u64>| bytes.map_or_else(|| "unknown".to_string(), format_bytes);
    let mut parts = Vec::new();
    let (amount, amount_name, limit, limit_name) = match stats.backend {
        Backend::Metal => (
            stats.metal_allocated_bytes,
            "allocated",
            stats.metal_recommended_working_set_bytes,
            "recommended working set",
        ),
        Backend::Cuda | Backend::Cpu => (stats.free_bytes, "free", stats.total_bytes, "total"),
    };
    if amount.is_some() || limit.is_some() {
        parts.push(format!(
            "{} {amount_name} / {} {limit_name}",
            known(amount),
            known(limit)
        ));
    }
    if let Some(rss) = stats.process_rss_bytes {
        parts.push(format!("process RSS {}", format_bytes(rss)));
    }
    if let Some(util) = stats.utilization_percent {
        parts.push(format!("{util}% busy"));
    }
    if let Some(temp) = stats.temperature_celsius {
        parts.push(format!("{temp} °C"));
    }
    if parts.is_empty() {
        "unavailable".to_string()
    } else {
        parts.join(", ")
    }
}
