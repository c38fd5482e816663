//! Parity of the acoustic connector and the EOS classifier against `connector_eos.safetensors`.

use super::lm::{golden_report, rows};
use super::{GoldenFile, TensorReport};
use crate::connector::AcousticConnector;
use crate::eos_classifier::EosClassifier;
use crate::error::Result;

/// Component name of the reports.
pub const COMPONENT: &str = "connector_eos";
/// Largest accepted relative error (`max|a−b| / max|b|`).
pub const TOLERANCE: f64 = 1e-4;

/// Runs the connector on `input.connector.latents` and the classifier on `input.eos.hidden`;
/// reports the outputs and the `debug.*` intermediates.
pub fn check(
    connector: &AcousticConnector,
    eos: &EosClassifier,
    golden: &GoldenFile,
) -> Result<Vec<TensorReport>> {
    let compare = |name: &str, got| golden_report(COMPONENT, TOLERANCE, golden, name, got);

    let latents = rows(golden, "input.connector.latents", connector.device())?;
    let trace = connector.trace(&latents)?;
    let hidden = rows(golden, "input.eos.hidden", eos.device())?;
    Ok(vec![
        compare("debug.connector.fc1", &trace.fc1)?,
        compare("debug.connector.norm", &trace.norm)?,
        compare("output.connector.embeds", &trace.embeds)?,
        compare("debug.eos.fc1_relu", &eos.hidden(&hidden)?)?,
        compare("output.eos.logit", &eos.logit(&hidden)?)?,
        compare("output.eos.prob", &eos.prob(&hidden)?)?,
    ])
}
