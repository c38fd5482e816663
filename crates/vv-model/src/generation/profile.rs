//! Per-component timing of an engine round's pieces on a real model (for `bench`): where a
//! round's time goes, for a batch of any size. Each piece runs through the same batched calls
//! as [`step_round`](super::step_round) (CUDA graphs included), on the component's own device,
//! synchronised before the clock is read.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::error::Result;
use crate::generation::params::{GenerationParams, TEXT_WINDOW};
use crate::generation::voice::PreparedVoice;
use crate::kv_cache::KvCache;
use crate::model::{TextWindow, VibeVoiceModel};
use crate::placement::Component;
use crate::sampler::{GaussianNoise, NoiseSource};

/// Median milliseconds of each piece (for the whole batch of streams).
#[derive(Debug, Clone, Serialize)]
pub struct ComponentTimes {
    /// Lower LM + TTS LM on a 5-token text window of every stream.
    pub text_window_ms: f64,
    /// Sampling a latent for every stream (all diffusion steps, both CFG rows).
    pub diffusion_ms: f64,
    /// Decoding a frame of every stream.
    pub decoder_ms: f64,
    /// Connector + positive/negative TTS-LM step of every stream + EOS.
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

/// Times each piece for a batch of `streams` utterances `runs` times (after one untimed run)
/// and returns the medians: the pieces of one engine round with every utterance doing each.
pub fn component_times(
    model: &VibeVoiceModel,
    voice: &PreparedVoice,
    params: &GenerationParams,
    runs: usize,
    streams: usize,
) -> Result<ComponentTimes> {
    let n = streams.max(1);
    let latent = model.config().acoustic_vae_dim;
    let sampler = model.sampler(params.diffusion_steps, params.solver)?;
    let mut noise = GaussianNoise::new(0);
    let ids: Vec<u32> = (0..TEXT_WINDOW as u32).map(|i| 100 + i).collect();
    let head = model.place(Component::DiffusionHead);
    let tts = model.place(Component::TtsLm);
    let (mut text, mut diff, mut dec, mut feed) = (vec![], vec![], vec![], vec![]);
    let mut states = (0..n)
        .map(|_| model.decoder().new_state())
        .collect::<Result<Vec<_>>>()?;
    // A fresh copy of a prompt cache for every stream.
    let copies =
        |cache: &KvCache| -> Result<Vec<KvCache>> { (0..n).map(|_| cache.try_clone()).collect() };
    for run in 0..=runs {
        let mut kv_lm = copies(&voice.lm)?;
        let mut kv_pos = copies(&voice.tts_pos)?;
        let mut kv_neg = copies(&voice.tts_neg)?;

        let t = Instant::now();
        let mut windows: Vec<TextWindow> = kv_lm
            .iter_mut()
            .zip(kv_pos.iter_mut())
            .map(|(kv_lm, kv_pos)| TextWindow {
                ids: &ids,
                kv_lm,
                kv_pos,
            })
            .collect();
        let h_pos = model.text_windows(&mut windows)?;
        drop(windows);
        sync(&tts.device)?;
        let text_ms = t.elapsed().as_secs_f64() * 1e3;

        let t = Instant::now();
        let x_t = noise.next_vector(n * latent)?;
        let negative = Tensor::cat(&vec![&voice.neg_condition; n], 0)?;
        let z = sampler.sample_frames(
            &head.put(&h_pos)?,
            &head.put(&negative)?,
            &vec![params.cfg_scale; n],
            &x_t,
            &mut [],
        )?;
        sync(&head.device)?;
        let diff_ms = t.elapsed().as_secs_f64() * 1e3;

        let t = Instant::now();
        let mut refs: Vec<_> = states.iter_mut().collect();
        let audio = model
            .decoder
            .decode_frames(&model.denormalize(&z)?, &mut refs)?;
        audio
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        let dec_ms = t.elapsed().as_secs_f64() * 1e3;

        let t = Instant::now();
        let mut pos: Vec<_> = kv_pos.iter_mut().collect();
        let mut neg: Vec<_> = kv_neg.iter_mut().collect();
        let out = model.feed_speech_batch(&z, &mut pos, &mut neg)?;
        out.eos_logits.flatten_all()?.to_vec1::<f32>()?;
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
