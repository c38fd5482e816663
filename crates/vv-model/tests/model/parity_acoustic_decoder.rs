//! σ-VAE decoder: golden parity on the tiny model, streaming == one-shot for random chunkings of
//! random small configs, and an ignored real-size timing run (prints, asserts nothing on time).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use proptest::prelude::*;
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, Normal};
use vv_model::acoustic_decoder::AcousticDecoder;
use vv_model::config::{AcousticTokenizerConfig, Depths};
use vv_model::linear::Packing;
use vv_model::parity::{self, GoldenFile};
use vv_model::VibeVoiceConfig;

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vibevoice-tiny");
/// Streaming vs one-shot tolerance: max|a - b| / max|b|.
const STREAM_TOLERANCE: f64 = 1e-4;

/// Runs the golden check on the tiny model loaded in `dtype` and asserts every report passes.
fn check_tiny(dtype: DType) {
    let cfg = VibeVoiceConfig::from_file(Path::new(&format!("{TINY}/model/config.json"))).unwrap();
    let weights = format!("{TINY}/model/model.safetensors");
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&[weights], dtype, &Device::Cpu) }.unwrap();
    let decoder = AcousticDecoder::new(
        &cfg.acoustic_tokenizer_config,
        vb.pp("model.acoustic_tokenizer.decoder"),
        Packing::NONE,
    )
    .unwrap();
    let golden = GoldenFile::open(Path::new(&format!(
        "{TINY}/golden/acoustic_decoder.safetensors"
    )))
    .unwrap();
    let reports = parity::acoustic_decoder::check(&decoder, &golden).unwrap();
    for r in &reports {
        println!(
            "{dtype:?} {:<34} max_abs {:.3e} rel {:.3e} (tol {:.0e})",
            r.name, r.max_abs, r.rel, r.tolerance
        );
    }
    // 3 audio outputs + stem + 7 stages + 6 upsamplers.
    assert_eq!(reports.len(), 17, "{reports:?}");
    assert!(reports.iter().all(|r| r.passed()), "{reports:?}");
}

/// f32 on the CPU: the fused CPU kernels.
#[test]
fn tiny_decoder_matches_the_golden_file() {
    check_tiny(DType::F32);
}

/// f64 takes the plain candle-op path that GPUs use, so that path is checked end to end too.
#[test]
fn tiny_decoder_on_the_candle_op_path_matches_the_golden_file() {
    check_tiny(DType::F64);
}

/// A decoder config with the given shape (head to one channel, eps 1e-5).
fn config(
    vae_dim: usize,
    n_filters: usize,
    ratios: Vec<usize>,
    depths: Vec<usize>,
) -> AcousticTokenizerConfig {
    AcousticTokenizerConfig {
        vae_dim,
        channels: 1,
        decoder_n_filters: n_filters,
        decoder_ratios: ratios,
        decoder_depths: Some(Depths::List(depths)),
        encoder_depths: Depths::List(Vec::new()),
        layernorm_eps: 1e-5,
    }
}

/// Seeded random decoder weights, scaled like the tiny fixture (unit-variance activations).
struct RandomWeights {
    rng: StdRng,
    tensors: HashMap<String, Tensor>,
}

impl RandomWeights {
    fn add(&mut self, name: String, shape: &[usize], mean: f32, std: f32) {
        let normal = Normal::new(mean, std).unwrap();
        let n = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| normal.sample(&mut self.rng)).collect();
        let t = Tensor::from_vec(data, shape, &Device::Cpu).unwrap();
        self.tensors.insert(name, t);
    }

    fn build(cfg: &AcousticTokenizerConfig, seed: u64) -> HashMap<String, Tensor> {
        let mut w = Self {
            rng: StdRng::seed_from_u64(seed),
            tensors: HashMap::new(),
        };
        let ch = cfg.decoder_channels().unwrap();
        let fan = |n: usize| (1.0 / n as f32).sqrt();
        let stem = "upsample_layers.0.0.conv.conv";
        w.add(
            format!("{stem}.weight"),
            &[ch[0], cfg.vae_dim, 7],
            0.,
            fan(7 * cfg.vae_dim),
        );
        w.add(format!("{stem}.bias"), &[ch[0]], 0., 0.1);
        for (i, &r) in cfg.decoder_ratios.iter().enumerate() {
            let p = format!("upsample_layers.{}.0.convtr.convtr", i + 1);
            w.add(
                format!("{p}.weight"),
                &[ch[i], ch[i + 1], 2 * r],
                0.,
                fan(2 * ch[i]),
            );
            w.add(format!("{p}.bias"), &[ch[i + 1]], 0., 0.1);
        }
        for (i, &depth) in cfg.decoder_depths().unwrap().iter().enumerate() {
            let c = ch[i];
            for j in 0..depth {
                let p = format!("stages.{i}.{j}");
                w.add(format!("{p}.norm.weight"), &[c], 1., 0.2);
                w.add(format!("{p}.ffn_norm.weight"), &[c], 1., 0.2);
                w.add(format!("{p}.gamma"), &[c], 0., 0.3);
                w.add(format!("{p}.ffn_gamma"), &[c], 0., 0.3);
                w.add(
                    format!("{p}.mixer.conv.conv.conv.weight"),
                    &[c, 1, 7],
                    0.,
                    fan(7),
                );
                w.add(format!("{p}.mixer.conv.conv.conv.bias"), &[c], 0., 0.1);
                w.add(format!("{p}.ffn.linear1.weight"), &[4 * c, c], 0., fan(c));
                w.add(format!("{p}.ffn.linear1.bias"), &[4 * c], 0., 0.1);
                w.add(
                    format!("{p}.ffn.linear2.weight"),
                    &[c, 4 * c],
                    0.,
                    fan(4 * c),
                );
                w.add(format!("{p}.ffn.linear2.bias"), &[c], 0., 0.1);
            }
        }
        let last = ch[ch.len() - 1];
        w.add(
            "head.conv.conv.weight".into(),
            &[cfg.channels, last, 7],
            0.,
            fan(7 * last),
        );
        w.add("head.conv.conv.bias".into(), &[cfg.channels], 0., 0.1);
        w.tensors
    }
}

fn random_decoder(cfg: &AcousticTokenizerConfig, seed: u64) -> AcousticDecoder {
    let vb = VarBuilder::from_tensors(RandomWeights::build(cfg, seed), DType::F32, &Device::Cpu);
    AcousticDecoder::new(cfg, vb, Packing::NONE).unwrap()
}

fn random_latents(vae_dim: usize, frames: usize, seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0f32, 1.).unwrap();
    let data: Vec<f32> = (0..vae_dim * frames)
        .map(|_| normal.sample(&mut rng))
        .collect();
    Tensor::from_vec(data, (1, vae_dim, frames), &Device::Cpu).unwrap()
}

/// Splits `frames` into chunks: `cuts[f]` says whether a chunk ends after frame `f`.
fn chunking(frames: usize, cuts: &[bool]) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut size = 0;
    for (f, &cut) in cuts.iter().enumerate().take(frames) {
        size += 1;
        if cut || f + 1 == frames {
            sizes.push(size);
            size = 0;
        }
    }
    sizes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    #[test]
    fn streaming_in_any_chunking_equals_one_shot(
        vae_dim in 1usize..6,
        n_filters in 1usize..4,
        ratios in prop::collection::vec(1usize..5, 1..4),
        depth_seed in any::<u64>(),
        frames in 1usize..7,
        cuts in prop::collection::vec(any::<bool>(), 6),
        seed in any::<u64>(),
    ) {
        let depths = (0..=ratios.len()).map(|i| 1 + ((depth_seed >> i) & 1) as usize).collect();
        let cfg = config(vae_dim, n_filters, ratios, depths);
        let decoder = random_decoder(&cfg, seed);
        let latents = random_latents(vae_dim, frames, seed ^ 0x5eed);
        let full = decoder.decode(&latents).unwrap();
        prop_assert_eq!(full.dims(), &[1, 1, frames * cfg.hop_length()]);

        let mut state = decoder.new_state().unwrap();
        let mut start = 0;
        let mut parts = Vec::new();
        for size in chunking(frames, &cuts) {
            let chunk = latents.narrow(2, start, size).unwrap();
            let part = decoder.decode_step(&chunk, &mut state).unwrap();
            prop_assert_eq!(part.dims(), &[1, 1, size * cfg.hop_length()]);
            parts.push(part);
            start += size;
        }
        prop_assert_eq!(state.frames(), frames);
        let streamed = Tensor::cat(&parts, 2).unwrap();
        let rel = parity::relative_error(&streamed, &full).unwrap();
        let sizes = chunking(frames, &cuts);
        prop_assert!(rel <= STREAM_TOLERANCE, "relative error {} for chunks {:?}", rel, sizes);
    }
}

/// Real-size (0.5B) decoder with random f32 weights: prints the median streaming time per frame.
/// Run with `cargo test -p vv-model --release -- --ignored --nocapture real_size_decoder_timing`.
#[test]
#[ignore = "timing run on a 1.37 GB random decoder; prints, asserts nothing on time"]
fn real_size_decoder_timing() {
    let cfg = config(64, 32, vec![8, 5, 5, 4, 2, 2], vec![8, 3, 3, 3, 3, 3, 3]);
    let decoder = random_decoder(&cfg, 7);
    let latents = random_latents(64, 12, 8);
    let mut state = decoder.new_state().unwrap();
    let mut times = Vec::new();
    for f in 0..12 {
        let start = Instant::now();
        let audio = decoder
            .decode_step(&latents.narrow(2, f, 1).unwrap(), &mut state)
            .unwrap();
        let elapsed = start.elapsed().as_secs_f64() * 1e3;
        assert_eq!(audio.dims(), &[1, 1, 3200]);
        if f >= 2 {
            times.push(elapsed);
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "real-size decoder, f32 CPU, {} frames: median {:.1} ms/frame (min {:.1}, max {:.1})",
        times.len(),
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}
