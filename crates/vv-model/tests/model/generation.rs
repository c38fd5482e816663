//! Whole-generation tests on the tiny fixture: golden parity with the recorded noise, and
//! streaming text in any chunking gives the same tokens and the same audio as the whole text.

use std::path::Path;
use std::sync::OnceLock;

use candle_core::{DType, Device};
use proptest::prelude::*;
use vv_model::generation::{GenerationParams, PreparedVoice, StepOutcome, StopReason, Utterance};
use vv_model::linear::Packing;
use vv_model::parity::{end_to_end, FixtureDir};
use vv_model::sampler::GaussianNoise;
use vv_model::text::{normalize_text, IncrementalTokenizer, TextTokenizer};
use vv_model::VibeVoiceModel;

fn fixture() -> FixtureDir {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vibevoice-tiny");
    FixtureDir::open(Path::new(root)).unwrap()
}

/// The tiny model and its preset, loaded once for all tests of this file.
fn setup() -> &'static (FixtureDir, VibeVoiceModel, PreparedVoice) {
    static SETUP: OnceLock<(FixtureDir, VibeVoiceModel, PreparedVoice)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let fx = fixture();
        let model = fx
            .load_model(&Device::Cpu, DType::F32, Packing::NONE)
            .unwrap();
        let voice = PreparedVoice::new(&model, &fx.preset().unwrap()).unwrap();
        (fx, model, voice)
    })
}

/// Frames per generation in the chunking tests (random ids rarely trigger the tiny EOS).
const TEST_MAX_FRAMES: usize = 18;

/// Drives an utterance to the end: text chunks are pushed only when it asks for text.
fn generate(
    model: &VibeVoiceModel,
    voice: &PreparedVoice,
    chunks: &[Vec<u32>],
    seed: u64,
) -> (Vec<f32>, StopReason) {
    let params = GenerationParams {
        max_frames: Some(TEST_MAX_FRAMES),
        ..GenerationParams::default()
    };
    let mut utt = Utterance::new(model, voice, params, Box::new(GaussianNoise::new(seed))).unwrap();
    let mut pending = chunks.iter();
    let mut audio = Vec::new();
    loop {
        match utt.step(model).unwrap() {
            StepOutcome::Frame { audio: a, .. } => audio.extend(a),
            StepOutcome::NeedText => match pending.next() {
                Some(c) => utt.push_tokens(c),
                None => utt.close_input(),
            },
            StepOutcome::Finished(reason) => return (audio, reason),
        }
    }
}

#[test]
fn end_to_end_matches_the_reference_with_recorded_noise() {
    let (fx, model, voice) = setup();
    let golden = fx.golden("end_to_end").unwrap();
    let reports = end_to_end::check(model, voice, &golden).unwrap();
    for r in &reports {
        println!(
            "{:<24} max_abs {:.3e} rel {:.3e} (tol {:.0e})",
            r.name, r.max_abs, r.rel, r.tolerance
        );
    }
    assert!(reports.iter().all(|r| r.passed()), "{reports:#?}");
    let run = end_to_end::replay(model, voice, &golden).unwrap();
    assert_eq!(run.frames, 21, "EOS fires after frame 20 in the golden run");
}

#[test]
fn closed_empty_input_produces_no_audio() {
    let (_, model, voice) = setup();
    let (audio, reason) = generate(model, voice, &[], 1);
    assert!(audio.is_empty());
    assert_eq!(reason, StopReason::Empty);
}

#[test]
fn frames_are_handed_out_one_step_at_a_time_while_text_is_open() {
    let (_, model, voice) = setup();
    let mut utt = Utterance::new(
        model,
        voice,
        GenerationParams::default(),
        Box::new(GaussianNoise::new(3)),
    )
    .unwrap();
    utt.push_tokens(&[10, 11, 12]);
    assert!(matches!(utt.step(model).unwrap(), StepOutcome::NeedText));
    utt.push_tokens(&[13, 14, 15]);
    for i in 0..6 {
        match utt.step(model).unwrap() {
            StepOutcome::Frame { audio, .. } => {
                assert_eq!(audio.len(), model.frame_samples(), "frame {i}")
            }
            other => panic!("frame {i}: {other:?}"),
        }
        assert_eq!(utt.frames(), i + 1);
    }
    // One token is left and the input is open: wait instead of running ahead.
    assert!(matches!(utt.step(model).unwrap(), StepOutcome::NeedText));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Token ids pushed in any chunking give the same audio (same noise) as all at once.
    #[test]
    fn chunked_tokens_give_the_same_audio(
        ids in prop::collection::vec(2u32..500, 1..14),
        cuts in prop::collection::vec(0usize..14, 0..5),
        seed in 0u64..1000,
    ) {
        let (_, model, voice) = setup();
        let mut chunks = Vec::new();
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (ids.len() + 1)).collect();
        points.sort_unstable();
        let mut last = 0;
        for p in points.into_iter().chain([ids.len()]) {
            chunks.push(ids[last..p].to_vec());
            last = p;
        }
        let (whole, r1) = generate(model, voice, std::slice::from_ref(&ids), seed);
        let (streamed, r2) = generate(model, voice, &chunks, seed);
        prop_assert_eq!(r1, r2);
        prop_assert_eq!(whole, streamed);
    }
}

#[test]
fn streamed_text_gives_the_whole_text_audio() {
    let (fx, model, voice) = setup();
    let tok = TextTokenizer::from_file(&fx.tokenizer_path()).unwrap();
    let text = "Hello there, it’s a tiny voice test. Numbers 42 and 7!";
    let whole_ids = tok.encode(&normalize_text(text)).unwrap();
    let mut inc = IncrementalTokenizer::new();
    let mut chunks = Vec::new();
    for piece in [
        "Hel",
        "lo th",
        "ere, it",
        "’s a tiny v",
        "oice test. Num",
        "bers 4",
        "2 and 7!",
    ] {
        chunks.push(inc.push(&tok, piece).unwrap());
    }
    chunks.push(inc.finish(&tok).unwrap());
    assert_eq!(chunks.concat(), whole_ids);
    let (a, _) = generate(model, voice, &[whole_ids], 9);
    let (b, _) = generate(model, voice, &chunks, 9);
    assert_eq!(a, b);
}
