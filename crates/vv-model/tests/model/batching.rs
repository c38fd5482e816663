//! Batched rounds equal stepping alone on the tiny fixture (CPU, f32): the scenario of
//! `vv_model::parity::batching` (utterances of two voices with prompts of different lengths,
//! different texts, seeds, guidance, step counts, solvers and lengths, starting in different
//! rounds, one cancelled midway, one waiting for text), each utterance's audio batched against
//! alone: the check's bound is 1e-4 relative; on the CPU the samples are identical (the CPU
//! kernels compute a stream's values the same way whatever shares its batch).

use std::path::Path;

use candle_core::{DType, Device};
use vv_model::generation::PreparedVoice;
use vv_model::linear::Packing;
use vv_model::parity::{batching, FixtureDir};

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vibevoice-tiny");

#[test]
fn batched_rounds_give_every_utterance_the_audio_it_gets_alone() {
    let fx = FixtureDir::open(Path::new(TINY)).unwrap();
    let model = fx
        .load_model(&Device::Cpu, DType::F32, Packing::NONE)
        .unwrap();
    let voices: Vec<PreparedVoice> = fx
        .presets()
        .unwrap()
        .iter()
        .map(|p| PreparedVoice::new(&model, p).unwrap())
        .collect();
    assert_eq!(voices.len(), 2, "the fixture's preset and voices/tiny-alt");
    assert_ne!(voices[0].prompt_positions(), voices[1].prompt_positions());
    let reports = batching::check(&model, &voices).unwrap();
    assert_eq!(reports.len(), 7, "six utterances and the batch size");
    for r in &reports {
        println!(
            "{}: max |diff| {:.3e}, rel {:.3e}",
            r.name, r.max_abs, r.rel
        );
        assert_eq!(r.tolerance, batching::TOLERANCE);
        assert!(r.passed(), "{}: rel {:.3e}", r.name, r.rel);
        if r.name != "max_batch" {
            assert_eq!(r.max_abs, 0.0, "{}: not identical on the CPU", r.name);
        }
    }
    let max_batch = reports.iter().find(|r| r.name == "max_batch").unwrap();
    assert!(max_batch.max_abs >= 5.0, "{max_batch:?}");
}

/// The comparison is sharp enough to see a lone utterance run with another seed: the same
/// check of one utterance against a different noise fails by orders of magnitude.
#[test]
fn a_different_seed_is_far_outside_the_tolerance() {
    use vv_model::generation::{GenerationParams, StepOutcome, Utterance};
    use vv_model::parity::relative_error;
    use vv_model::sampler::GaussianNoise;

    let fx = FixtureDir::open(Path::new(TINY)).unwrap();
    let model = fx
        .load_model(&Device::Cpu, DType::F32, Packing::NONE)
        .unwrap();
    let voice = PreparedVoice::new(&model, &fx.preset().unwrap()).unwrap();
    let audio = |seed| {
        let params = GenerationParams {
            max_frames: Some(6),
            ..GenerationParams::default()
        };
        let mut u =
            Utterance::new(&model, &voice, params, Box::new(GaussianNoise::new(seed))).unwrap();
        u.push_tokens(&[5, 9, 13, 17, 21, 25, 29]);
        u.close_input();
        let mut all = Vec::new();
        while let StepOutcome::Frame { audio, last } = u.step(&model).unwrap() {
            all.extend(audio);
            if last {
                break;
            }
        }
        candle_core::Tensor::new(all.as_slice(), &Device::Cpu).unwrap()
    };
    let rel = relative_error(&audio(1), &audio(2)).unwrap();
    assert!(rel > 100.0 * batching::TOLERANCE, "rel {rel:.3e}");
}
