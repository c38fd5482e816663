//! Golden parity of the diffusion head, the DPM-Solver++ scheduler and teacher-forced CFG
//! sampling on the tiny fixture, plus sampler batching and SDE behaviour.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use vv_model::diffusion_head::DiffusionHead;
use vv_model::linear::Packing;
use vv_model::parity::{self, GoldenFile, TensorReport};
use vv_model::sampler::{DiffusionSampler, FrameBatch, GaussianNoise, NoiseSource};
use vv_model::scheduler::{DpmSolver, SolverKind};
use vv_model::VibeVoiceConfig;

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vibevoice-tiny");

fn tiny(rel: &str) -> PathBuf {
    Path::new(TINY).join(rel)
}

fn load() -> (VibeVoiceConfig, DiffusionHead) {
    let cfg = VibeVoiceConfig::from_file(&tiny("model/config.json")).unwrap();
    let weights = tiny("model/model.safetensors");
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu) }
        .unwrap();
    let head = DiffusionHead::new(
        &cfg.diffusion_head_config,
        vb.pp("model.prediction_head"),
        Packing::NONE,
    )
    .unwrap();
    (cfg, head)
}

fn golden(name: &str) -> GoldenFile {
    GoldenFile::open(&tiny(&format!("golden/{name}"))).unwrap()
}

/// Prints every report and asserts that all pass (each carries its own tolerance).
fn assert_all_pass(reports: &[TensorReport]) {
    assert!(!reports.is_empty());
    for r in reports {
        println!(
            "{:<15} {:<40} max_abs {:.3e} rel {:.3e} (tol {:.0e}) {}",
            r.component,
            r.name,
            r.max_abs,
            r.rel,
            r.tolerance,
            if r.passed() { "ok" } else { "FAIL" }
        );
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.name.as_str())
        .collect();
    assert!(failed.is_empty(), "failed: {failed:?}");
}

#[test]
fn diffusion_head_matches_golden() {
    let (_, head) = load();
    let reports =
        parity::diffusion_head::check(&head, &golden("diffusion_head.safetensors")).unwrap();
    // prediction + t_freq, t_emb, cond_proj, c, x_proj, 2 × (adaln, out), final.adaln
    assert_eq!(reports.len(), 1 + 4 + 1 + 2 * 2 + 1);
    assert_all_pass(&reports);
    // The timestep features reproduce the reference's f32 arithmetic (a plain f64
    // implementation misses by ~5e-5 at t = 999).
    let t_freq = reports.iter().find(|r| r.name == "debug.t_freq").unwrap();
    assert!(t_freq.max_abs < 1e-6, "t_freq max_abs {}", t_freq.max_abs);
}

#[test]
fn scheduler_matches_golden() {
    let (cfg, _) = load();
    let reports =
        parity::scheduler::check(&cfg.diffusion_head_config, &golden("scheduler.safetensors"))
            .unwrap();
    // betas, alphas_cumprod + 2 runs × (timesteps, orders, sigmas, x0_pred, prev_sample)
    assert_eq!(reports.len(), 2 + 2 * 5);
    assert_all_pass(&reports);
}

#[test]
fn teacher_forced_sampling_matches_golden() {
    let (cfg, head) = load();
    let e2e = golden("end_to_end.safetensors");
    let reports =
        parity::diffusion_head::check_sampling(&head, &cfg.diffusion_head_config, &e2e).unwrap();
    let frames = e2e.get("output.latents").unwrap().dim(0).unwrap();
    // timesteps + one latent per frame + v_cond, v_uncond, v_guided, sample
    assert_eq!(reports.len(), 1 + frames + 4);
    assert_all_pass(&reports);
}

fn random_rows(source: &mut GaussianNoise, rows: usize, cols: usize) -> Tensor {
    let values: Vec<f32> = (0..rows)
        .flat_map(|_| source.next_vector(cols).unwrap())
        .collect();
    Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap()
}

fn sampler(cfg: &VibeVoiceConfig, head: &DiffusionHead, kind: SolverKind) -> DiffusionSampler {
    let solver = DpmSolver::new(&cfg.diffusion_head_config, 5, kind).unwrap();
    DiffusionSampler::new(head, solver).unwrap()
}

/// Batched sampling of B = 2 frames equals two B = 1 calls (different guidance per row; for
/// the SDE solver each row draws from its own source). Tolerance 1e-5 relative: the rows
/// only differ in matmul blocking.
#[test]
fn batched_sampling_equals_single_frames() {
    let (cfg, head) = load();
    let (h, latent) = (head.hidden_size(), head.latent_size());
    let mut rng = GaussianNoise::new(42);
    let pos = random_rows(&mut rng, 2, h);
    let neg = random_rows(&mut rng, 2, h);
    let noise = random_rows(&mut rng, 2, latent);
    let guidance = [1.5f32, 2.25];
    for kind in [SolverKind::Ode, SolverKind::Sde] {
        let s = sampler(&cfg, &head, kind);
        let (mut src0, mut src1) = (GaussianNoise::new(100), GaussianNoise::new(101));
        let batch = FrameBatch {
            positive: &pos,
            negative: &neg,
            guidance: &guidance,
            noise: &noise,
        };
        let together = s.sample_batch(batch, &mut [&mut src0, &mut src1]).unwrap();
        let together: Vec<Vec<f32>> = together.to_vec2().unwrap();
        for (b, seed) in [(0usize, 100u64), (1, 101)] {
            let mut src = GaussianNoise::new(seed);
            let x: Vec<f32> = noise.get(b).unwrap().to_vec1().unwrap();
            let alone = s
                .sample(
                    &pos.get(b).unwrap(),
                    &neg.get(b).unwrap(),
                    guidance[b],
                    &x,
                    Some(&mut src),
                )
                .and_then(|z| Ok(z.flatten_all()?.to_vec1::<f32>()?))
                .unwrap();
            let scale = alone.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = alone
                .iter()
                .zip(&together[b])
                .fold(0f32, |m, (a, c)| m.max((a - c).abs()));
            println!("{kind:?} row {b}: max_abs {diff:.3e} (scale {scale:.3})");
            assert!(
                diff <= 1e-5 * scale,
                "{kind:?} row {b}: {diff} vs scale {scale}"
            );
        }
    }
}

/// The SDE solver produces finite latents that differ from the ODE ones and depend on the
/// step noise; it refuses to run without a noise source.
#[test]
fn sde_sampling_uses_the_step_noise() {
    let (cfg, head) = load();
    let mut rng = GaussianNoise::new(3);
    let pos = random_rows(&mut rng, 1, head.hidden_size());
    let neg = random_rows(&mut rng, 1, head.hidden_size());
    let x = rng.next_vector(head.latent_size()).unwrap();
    let sde = sampler(&cfg, &head, SolverKind::Sde);
    let run = |seed: u64| {
        let mut src = GaussianNoise::new(seed);
        sde.sample(&pos, &neg, 1.5, &x, Some(&mut src))
            .and_then(|z| Ok(z.flatten_all()?.to_vec1::<f32>()?))
            .unwrap()
    };
    let (a, a_again, b) = (run(1), run(1), run(2));
    assert!(a.iter().all(|v| v.is_finite()));
    assert_eq!(a, a_again);
    assert_ne!(a, b);
    let ode = sampler(&cfg, &head, SolverKind::Ode)
        .sample(&pos, &neg, 1.5, &x, None)
        .and_then(|z| Ok(z.flatten_all()?.to_vec1::<f32>()?))
        .unwrap();
    assert_ne!(a, ode);
    let err = sde.sample(&pos, &neg, 1.5, &x, None).unwrap_err();
    assert_eq!(err.code(), "invalid_input");
}
