//! Accuracy of packed (bf16 and int8) weights against f32, stated and tested:
//!
//! - **Golden fixture, per component.** Every check of `check-fixture` on the tiny fixture
//!   (each component, teacher-forced sampling, the free-running generation, batching) with
//!   *every* matrix and the embedding table packed ([`Packing::every_matrix`]: the fixture's
//!   matrices are all below the production size rule, so this is the worst case). The bar is
//!   the CUDA bf16 path's: every f32 tolerance scaled by [`CUDA_BF16_SCALE`] (5e-2 per
//!   component, 5e-1 end to end; the CUDA bf16 path measured worst 2.7e-2 in the decoder,
//!   1.28e-2 in the LM, 9.5e-2 end to end, docs/cuda.md). Exact checks (timesteps, frame
//!   counts) must stay exact, and batched rounds must still equal lone steps bit for bit.
//! - **Small random model, end to end.** A random model whose matrices are large enough for
//!   the production rule ([`Packing::large`], what `--quantize` loads) generates the same
//!   utterance with the same noise in f32, bf16 and int8; the audio's relative error against
//!   f32 (`max |q − f32| / max |f32|`) stays within [`END_TO_END_BOUND`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, Normal};
use vv_model::generation::{GenerationParams, PreparedVoice, StepOutcome, Utterance};
use vv_model::linear::{Packing, WeightFormat};
use vv_model::parity::{check_all, relative_error, FixtureDir, TensorReport};
use vv_model::random_init::RandomInit;
use vv_model::sampler::GaussianNoise;
use vv_model::{VibeVoiceConfig, VibeVoiceModel};
use vv_preset::VoicePreset;

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vibevoice-tiny");

/// The tolerance scale the CUDA bf16 path passes `check-fixture` at (docs/cuda.md).
const CUDA_BF16_SCALE: f64 = 500.0;

/// The CUDA bf16 path's worst relative error per component on the tiny fixture (docs/cuda.md,
/// measured on an H100): packed weights must stay within each. The free-running generation
/// (`end_to_end`, CUDA 9.5e-2) is held to the tolerance only: its error is chaotic, moving
/// from 3.4e-2 to 1.6e-1 with the int8 block size and which matrices are kept in bf16
/// (docs/quantization.md).
const CUDA_BF16_MEASURED: [(&str, f64); 5] = [
    ("lm", 1.28e-2),
    ("connector_eos", 7.1e-3),
    ("acoustic_decoder", 2.53e-2),
    ("diffusion_head", 1.2e-6),
    ("sampling", 9.0e-7),
];

/// Largest accepted relative error of the small random model's audio against f32.
const END_TO_END_BOUND: f64 = 5e-2;

/// Every `check-fixture` report of the tiny fixture with every matrix packed to `format`.
fn fixture_reports(format: WeightFormat) -> Vec<TensorReport> {
    let fixture = FixtureDir::open(Path::new(TINY)).unwrap();
    let packing = Packing::every_matrix(format);
    check_all(&fixture, &Device::Cpu, DType::F32, packing).unwrap()
}

/// Prints the worst error of each component; asserts each report within the CUDA bf16
/// tolerance, each component within the CUDA bf16 path's measured error, exact checks exact,
/// batching bit for bit; returns the worst error per component.
fn assert_within_cuda_bf16(format: WeightFormat) -> BTreeMap<String, f64> {
    let reports = fixture_reports(format);
    let mut worst: BTreeMap<String, f64> = BTreeMap::new();
    for r in &reports {
        let w = worst.entry(r.component.clone()).or_default();
        *w = w.max(r.rel);
    }
    for (component, rel) in &worst {
        println!("{format:?} {component:<16} worst rel {rel:.3e}");
    }
    for r in &reports {
        let bar = r.tolerance * CUDA_BF16_SCALE;
        assert!(
            r.rel.is_finite() && r.rel <= bar,
            "{format:?} {}/{}: rel {:.3e} above the CUDA bf16 tolerance {bar:.1e}",
            r.component,
            r.name,
            r.rel
        );
        if r.component == "batching" {
            assert_eq!(r.rel, 0.0, "{format:?} batching {}", r.name);
        }
    }
    for (component, cuda) in CUDA_BF16_MEASURED {
        let rel = worst[component];
        assert!(
            rel <= cuda,
            "{format:?} {component}: worst rel {rel:.3e} above the CUDA bf16 path's {cuda:.2e}"
        );
    }
    worst
}

#[test]
fn int8_fixture_errors_are_within_the_cuda_bf16_tolerances() {
    let worst = assert_within_cuda_bf16(WeightFormat::Int8);
    // The weights were packed: the LM is far off its f32 error (5e-7).
    assert!(worst["lm"] > 1e-4, "{worst:?}");
}

#[test]
fn bf16_fixture_errors_are_within_the_cuda_bf16_tolerances() {
    let worst = assert_within_cuda_bf16(WeightFormat::Bf16);
    assert!(worst["lm"] > 1e-4, "{worst:?}");
}

/// The tiny fixture's configuration widened so that the production rule packs matrices of
/// every component: 512-wide LMs, head and connector, a decoder whose first two stages have
/// 512 and 256 channels.
fn small_config() -> VibeVoiceConfig {
    let text = std::fs::read_to_string(format!("{TINY}/model/config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["decoder_config"]["hidden_size"] = 512.into();
    json["decoder_config"]["intermediate_size"] = 1024.into();
    json["decoder_config"]["num_attention_heads"] = 8.into();
    json["diffusion_head_config"]["hidden_size"] = 512.into();
    json["acoustic_tokenizer_config"]["decoder_n_filters"] = 8.into();
    VibeVoiceConfig::from_json(&json.to_string()).unwrap()
}

/// A flat voice preset of random (seeded) caches for `cfg` (4 prompt positions).
fn random_preset(cfg: &VibeVoiceConfig) -> VoicePreset {
    let shape = cfg.preset_shape();
    let len = 4;
    let mut rng = StdRng::seed_from_u64(5);
    let normal = Normal::new(0f32, 1.).unwrap();
    let mut randn = |dims: &[usize]| {
        let values: Vec<f32> = (0..dims.iter().product())
            .map(|_| normal.sample(&mut rng))
            .collect();
        Tensor::from_vec(values, dims, &Device::Cpu).unwrap()
    };
    let mut tensors = Vec::new();
    for (name, layers) in [
        ("lm", shape.lower_layers),
        ("tts_lm", shape.tts_layers),
        ("neg_lm", shape.lower_layers),
        ("neg_tts_lm", shape.tts_layers),
    ] {
        tensors.push((
            format!("{name}/last_hidden_state"),
            randn(&[1, len, shape.hidden_size]),
        ));
        for l in 0..layers {
            for which in ["key", "value"] {
                let kv = randn(&[1, shape.kv_heads, len, shape.head_dim]);
                tensors.push((format!("{name}/past_key_values/{l}/{which}"), kv));
            }
        }
    }
    let metadata = HashMap::from([(
        "format".to_string(),
        "vibevoice-voice-preset-flat-v1".to_string(),
    )]);
    let bytes = safetensors::serialize(tensors, Some(metadata)).unwrap();
    VoicePreset::from_bytes(&bytes, "random").unwrap()
}

/// The audio of one fixed utterance (same text, same noise) on `model`.
fn speak(model: &VibeVoiceModel, preset: &VoicePreset) -> Vec<f32> {
    let voice = PreparedVoice::new(model, preset).unwrap();
    let params = GenerationParams {
        eos_enabled: false,
        max_frames: Some(3),
        ..GenerationParams::default()
    };
    let noise = Box::new(GaussianNoise::new(7));
    let mut utt = Utterance::new(model, &voice, params, noise).unwrap();
    utt.push_tokens(&[11, 42, 97, 300, 5, 260, 77]);
    utt.close_input();
    let mut audio = Vec::new();
    while let StepOutcome::Frame { audio: a, last } = utt.step(model).unwrap() {
        audio.extend(a);
        if last {
            break;
        }
    }
    audio
}

fn small_setup() -> &'static (VibeVoiceConfig, VoicePreset) {
    static SETUP: OnceLock<(VibeVoiceConfig, VoicePreset)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let cfg = small_config();
        let preset = random_preset(&cfg);
        (cfg, preset)
    })
}

/// The small model with the same seeded random weights, stored as `packing` says.
fn small_model(packing: Packing) -> VibeVoiceModel {
    let cfg = &small_setup().0;
    let vb = || VarBuilder::from_backend(Box::new(RandomInit::seeded(1)), DType::F32, Device::Cpu);
    VibeVoiceModel::new(cfg.clone(), vb(), vb(), packing).unwrap()
}

#[test]
fn small_random_model_audio_stays_close_to_f32_with_packed_weights() {
    let preset = &small_setup().1;
    let f32 = speak(&small_model(Packing::NONE), preset);
    assert!(!f32.is_empty() && f32.iter().all(|v| v.is_finite()));
    let want = Tensor::new(f32.as_slice(), &Device::Cpu).unwrap();
    for format in [WeightFormat::Bf16, WeightFormat::Int8] {
        let model = small_model(Packing::large(format));
        assert_eq!(model.packing(), Packing::large(format));
        let audio = speak(&model, preset);
        let got = Tensor::new(audio.as_slice(), &Device::Cpu).unwrap();
        let rel = relative_error(&got, &want).unwrap();
        println!("{format:?}: audio relative error {rel:.3e} against f32");
        assert!(rel > 0.0, "{format:?}: no weight was packed");
        assert!(
            rel <= END_TO_END_BOUND,
            "{format:?}: relative error {rel:.3e}"
        );
    }
}
