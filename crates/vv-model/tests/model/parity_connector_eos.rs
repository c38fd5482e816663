//! Golden parity of the acoustic connector and the EOS classifier on the tiny fixture model.

use crate::common;
use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use vv_model::connector::AcousticConnector;
use vv_model::eos_classifier::EosClassifier;
use vv_model::linear::Packing;
use vv_model::parity::{connector_eos, GoldenFile};
use vv_model::VibeVoiceConfig;

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vibevoice-tiny");

#[test]
fn connector_and_eos_match_the_reference() {
    let cfg = VibeVoiceConfig::from_file(Path::new(&format!("{TINY}/model/config.json"))).unwrap();
    let weights = format!("{TINY}/model/model.safetensors");
    // SAFETY: the fixture file is not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu) }
        .unwrap();
    let connector =
        AcousticConnector::new(&cfg, vb.pp("model.acoustic_connector"), Packing::NONE).unwrap();
    let eos = EosClassifier::new(&cfg, vb.pp("tts_eos_classifier"), Packing::NONE).unwrap();
    let golden = GoldenFile::open(Path::new(&format!(
        "{TINY}/golden/connector_eos.safetensors"
    )))
    .unwrap();

    let reports = connector_eos::check(&connector, &eos, &golden).unwrap();
    // Every output and intermediate of the file is checked, at 1e-4 relative.
    common::assert_every_golden_checked(&reports, &golden, 1e-4);
}
