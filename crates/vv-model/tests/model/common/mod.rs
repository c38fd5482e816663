//! Shared assertions of the golden parity tests.

use vv_model::parity::{GoldenFile, TensorReport};

/// Prints every report, then asserts that each non-input tensor of `golden` was checked
/// exactly once, at `tolerance`, and passed.
pub fn assert_every_golden_checked(reports: &[TensorReport], golden: &GoldenFile, tolerance: f64) {
    for r in reports {
        println!(
            "{}/{}: max_abs {:.3e}, rel {:.3e} (tolerance {:.0e})",
            r.component, r.name, r.max_abs, r.rel, r.tolerance
        );
    }
    let mut checked: Vec<&str> = reports.iter().map(|r| r.name.as_str()).collect();
    checked.sort_unstable();
    let expected: Vec<&str> = golden
        .names()
        .into_iter()
        .filter(|n| !n.starts_with("input."))
        .collect();
    assert_eq!(checked, expected);
    for r in reports {
        assert_eq!(r.tolerance, tolerance);
        assert!(r.passed(), "{} rel error {:.3e}", r.name, r.rel);
    }
}
