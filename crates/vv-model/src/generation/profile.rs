//! Per-component timing of the generation loop's pieces on a real model (for `bench`): where a
//! frame's time goes. Each piece runs through the same calls as in
//! [`Utterance`](super::Utterance) (CUDA graphs included), on the component's own device,
//! synchronised before the clock is read.

use std::time::Instant;

use candle_core::{DType, Device};
use serde::Serialize;

use crate::error::Result;
use crate::generation::params::{GenerationParams, TEXT_WINDOW};
use crate::generation::voice::PreparedVoice;
use crate::model::VibeVoiceModel;
use crate::placement::Component;
use crate::sampler::{DiffusionSampler, GaussianNoise, NoiseSource};
use crate::scheduler::DpmSolver;

/// Median milliseconds of each piece.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentTimes {
    /// Lower LM + TTS LM on one 5-token text window.
    pub text_window_ms: f64,
    /// Sampling one latent (all diffusion steps, both CFG rows).
    pub diffusion_ms: f64,
    /// Decoding one frame.
    pub decoder_ms: f64,
    /// Connector + batched positive/negative TTS-LM step + EOS.
    pub feedback_ms: f64,
}

fn sync(device: &Device) -> Result<()> {
    device.synchronize()?;
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Times each piece `runs` times (after one untimed run) and returns the medians.
pub fn component_times(
    model: &VibeVoiceModel,
    voice: &PreparedVoice,
    params: &GenerationParams,
    runs: usize,
) -> Result<ComponentTimes> {
    let latent = model.config().acoustic_vae_dim;
    let solver = DpmSolver::new(
        &model.config().diffusion_head_config,
        params.diffusion_steps,
        params.solver,
    )?;
    let sampler = DiffusionSampler::new(model.head(), solver)?;
    let mut noise = GaussianNoise::new(0);
    let ids: Vec<u32> = (0..TEXT_WINDOW as u32).map(|i| 100 + i).collect();
    let head = model.place(Component::DiffusionHead);
    let tts = model.place(Component::TtsLm);
    let (mut text, mut diff, mut dec, mut feed) = (vec![], vec![], vec![], vec![]);
    let mut state = model.decoder().new_state()?;
    for run in 0..=runs {
        let mut kv_lm = voice.lm.try_clone()?;
        let mut kv_pos = voice.tts_pos.try_clone()?;
        let mut kv_neg = voice.tts_neg.try_clone()?;

        let t = Instant::now();
        let h_pos = model.text_window(&ids, &mut kv_lm, &mut kv_pos)?;
        sync(&tts.device)?;
        let text_ms = t.elapsed().as_secs_f64() * 1e3;

        let t = Instant::now();
        let x_t = noise.next_vector(latent)?;
        let z = sampler.sample(
            &head.put(&h_pos)?,
            &head.put(&voice.neg_condition)?,
            params.cfg_scale,
            &x_t,
            None,
        )?;
        sync(&head.device)?;
        let diff_ms = t.elapsed().as_secs_f64() * 1e3;

        let t = Instant::now();
        let z_dec = model.denormalize(&z)?.reshape((1, latent))?;
        let audio = model.decoder.decode_frames(&z_dec, &mut [&mut state])?;
        audio
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        let dec_ms = t.elapsed().as_secs_f64() * 1e3;

        let t = Instant::now();
        let (h_pos, _) = model.feed_speech(&z, &mut kv_pos, &mut kv_neg)?;
        let h = model.place(Component::EosClassifier).put(&h_pos)?;
        model
            .eos
            .logit(&h)?
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        let feed_ms = t.elapsed().as_secs_f64() * 1e3;

        if run > 0 {
            text.push(text_ms);
            diff.push(diff_ms);
            dec.push(dec_ms);
            feed.push(feed_ms);
        }
    }
    Ok(ComponentTimes {
        text_window_ms: median(text),
        diffusion_ms: median(diff),
        decoder_ms: median(dec),
        feedback_ms: median(feed),
    })
}
