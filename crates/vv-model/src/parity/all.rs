//! Every parity check a fixture directory supports, run in one go (what `check-fixture` prints),
//! and the check that batched rounds equal lone steps.

use candle_core::{DType, Device};

use crate::error::Result;
use crate::generation::PreparedVoice;
use crate::linear::Packing;
use crate::parity::{
    acoustic_decoder, batching, connector_eos, diffusion_head, end_to_end, lm, scheduler,
    FixtureDir, TensorReport,
};

/// Runs each component check whose golden file exists, the whole generation, then batching,
/// on the fixture's model with its weights stored as `packing` says.
pub fn check_all(
    fixture: &FixtureDir,
    device: &Device,
    dtype: DType,
    packing: Packing,
) -> Result<Vec<TensorReport>> {
    let model = fixture.load_model(device, dtype, packing)?;
    let cfg = fixture.config();
    let mut reports = Vec::new();
    if fixture.has_golden("lm") {
        let g = fixture.golden("lm")?;
        reports.extend(lm::check(model.text_lm(), model.tts_lm(), model.eos(), &g)?);
    }
    if fixture.has_golden("connector_eos") {
        let g = fixture.golden("connector_eos")?;
        reports.extend(connector_eos::check(model.connector(), model.eos(), &g)?);
    }
    if fixture.has_golden("diffusion_head") {
        let g = fixture.golden("diffusion_head")?;
        reports.extend(diffusion_head::check(model.head(), &g)?);
    }
    if fixture.has_golden("scheduler") {
        let g = fixture.golden("scheduler")?;
        reports.extend(scheduler::check(&cfg.diffusion_head_config, &g)?);
    }
    if fixture.has_golden("acoustic_decoder") {
        let g = fixture.golden("acoustic_decoder")?;
        reports.extend(acoustic_decoder::check(model.decoder(), &g)?);
    }
    if fixture.has_golden("end_to_end") {
        let g = fixture.golden("end_to_end")?;
        reports.extend(diffusion_head::check_sampling(
            model.head(),
            &cfg.diffusion_head_config,
            &g,
        )?);
        let voice = PreparedVoice::new(&model, &fixture.preset()?)?;
        reports.extend(end_to_end::check(&model, &voice, &g)?);
    }
    let voices = fixture
        .presets()?
        .iter()
        .map(|p| PreparedVoice::new(&model, p))
        .collect::<Result<Vec<_>>>()?;
    reports.extend(batching::check(&model, &voices)?);
    Ok(reports)
}
