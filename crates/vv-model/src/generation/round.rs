//! An engine round: every given utterance advances by at most one frame, through batched
//! forwards shared by all of them: one speech-feedback pass (connector, TTS-LM step of both CFG
//! streams of every pending frame, EOS classifier), one pass of each LM over all the text
//! windows that are due (ragged, up to 5 tokens each), one diffusion sampling of every frame
//! (utterances with another step count or solver sample as a group of their own), one decoder
//! step over all streaming states. Each utterance's audio is what it gets stepping alone (up to
//! floating-point summation order): caches, conditions, noise and decoder state are its own,
//! and every batched operation is row-independent.

use std::panic::{catch_unwind, AssertUnwindSafe};

use candle_core::{DType, Tensor};

use crate::error::{ModelError, Result};
use crate::generation::utterance::{Plan, StepOutcome, Utterance};
use crate::model::{TextWindow, VibeVoiceModel};
use crate::placement::Component;
use crate::rows::{gather, BatchRow};
use crate::sampler::NoiseSource;
use crate::scheduler::SolverKind;

/// Advances each of `utts` by at most one frame in one batched round and returns their
/// outcomes in order. All or nothing: when the round fails (e.g. the device ran out of memory,
/// or a panic, returned as [`ModelError::Panicked`]) every utterance is exactly as before it,
/// so the caller may retry, or step the utterances one by one to find the one at fault; only
/// the noise already drawn is not given back.
pub fn step_round(model: &VibeVoiceModel, utts: &mut [&mut Utterance]) -> Result<Vec<StepOutcome>> {
    let snapshots: Vec<_> = utts.iter().map(|u| u.snapshot()).collect();
    let outcome = catch_unwind(AssertUnwindSafe(|| run(model, utts))).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(ModelError::Panicked(what))
    });
    if outcome.is_err() {
        for (u, snapshot) in utts.iter_mut().zip(snapshots) {
            u.restore(snapshot);
        }
    }
    outcome
}

fn run(model: &VibeVoiceModel, utts: &mut [&mut Utterance]) -> Result<Vec<StepOutcome>> {
    let max = model.config().decoder_config.max_position_embeddings;
    feed_back(model, utts, max)?;
    let mut outcomes: Vec<Option<StepOutcome>> = vec![None; utts.len()];
    let mut windows = Vec::new();
    for (i, u) in utts.iter_mut().enumerate() {
        match u.plan(max) {
            Plan::Done(outcome) => outcomes[i] = Some(outcome),
            Plan::Window(ids) => windows.push((i, ids)),
            Plan::Frame => {}
        }
    }
    run_windows(model, utts, &windows)?;
    let framing: Vec<usize> = (0..utts.len()).filter(|&i| outcomes[i].is_none()).collect();
    for (i, outcome) in frames(model, utts, &framing)? {
        outcomes[i] = Some(outcome);
    }
    outcomes
        .into_iter()
        .map(|o| o.ok_or_else(|| ModelError::InvalidInput("an utterance had no outcome".into())))
        .collect()
}

/// Feeds every pending frame back in one pass and applies the EOS test.
fn feed_back(model: &VibeVoiceModel, utts: &mut [&mut Utterance], max: usize) -> Result<()> {
    let mut fed = Vec::new();
    let mut latents = Vec::new();
    for (i, u) in utts.iter_mut().enumerate() {
        if let Some(z) = u.take_feedback(max) {
            fed.push(i);
            latents.push(z);
        }
    }
    if fed.is_empty() {
        return Ok(());
    }
    let z = gather(&latents.iter().collect::<Vec<_>>())?;
    let (mut pos, mut neg): (Vec<_>, Vec<_>) = utts
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| fed.contains(i))
        .map(|(_, u)| u.feedback_caches())
        .unzip();
    let out = model.feed_speech_batch(&z, &mut pos, &mut neg)?;
    let logits: Vec<f32> = out.eos_logits.flatten_all()?.to_vec1()?;
    for (k, &i) in fed.iter().enumerate() {
        utts[i].finish_feedback(
            BatchRow::new(&out.h_pos, k),
            BatchRow::new(&out.h_neg, k),
            logits.get(k).copied().unwrap_or(f32::NEG_INFINITY),
        )?;
    }
    Ok(())
}

/// Runs the due text windows (`(utterance, ids)`) in one pass of each LM.
fn run_windows(
    model: &VibeVoiceModel,
    utts: &mut [&mut Utterance],
    windows: &[(usize, Vec<u32>)],
) -> Result<()> {
    if windows.is_empty() {
        return Ok(());
    }
    let mut batch: Vec<TextWindow> = utts
        .iter_mut()
        .enumerate()
        .filter_map(|(i, u)| {
            let ids = &windows.iter().find(|(w, _)| *w == i)?.1;
            let (kv_lm, kv_pos) = u.window_caches();
            Some(TextWindow { ids, kv_lm, kv_pos })
        })
        .collect();
    let h = model.text_windows(&mut batch)?;
    drop(batch);
    for (k, (i, ids)) in windows.iter().enumerate() {
        utts[*i].finish_window(ids.len(), BatchRow::new(&h, k));
    }
    Ok(())
}

/// Samples and decodes a frame for each of the utterances `framing`; returns their outcomes.
fn frames(
    model: &VibeVoiceModel,
    utts: &mut [&mut Utterance],
    framing: &[usize],
) -> Result<Vec<(usize, StepOutcome)>> {
    if framing.is_empty() {
        return Ok(Vec::new());
    }
    // Frames that share a step count and solver are sampled together.
    let mut groups: Vec<((usize, SolverKind), Vec<usize>)> = Vec::new();
    for &i in framing {
        let key = utts[i].sampler().1;
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    let order: Vec<usize> = groups.iter().flat_map(|(_, m)| m.iter().copied()).collect();
    let latents = groups
        .iter()
        .map(|(_, members)| sample(model, utts, members))
        .collect::<Result<Vec<_>>>()?;
    let z = match latents.as_slice() {
        [one] => one.clone(),
        _ => Tensor::cat(&latents, 0)?,
    };
    let mut states: Vec<_> = utts
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| order.contains(i))
        .map(|(i, u)| (i, u.decoder_state()))
        .collect();
    // The decoder takes the states in sampling order.
    states.sort_by_key(|(i, _)| order.iter().position(|o| o == i));
    let mut states: Vec<_> = states.into_iter().map(|(_, s)| s).collect();
    let audio = model
        .decoder
        .decode_frames(&model.denormalize(&z)?, &mut states)?;
    drop(states);
    let audio: Vec<Vec<f32>> = audio.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2()?;
    order
        .iter()
        .zip(audio)
        .enumerate()
        .map(|(k, (&i, audio))| Ok((i, utts[i].finish_frame(BatchRow::new(&z, k), audio)?)))
        .collect()
}

/// Samples the frames of the utterances `members` (one step count and solver) together;
/// returns their latents `[members, latent]` f32 on the head's device.
fn sample(
    model: &VibeVoiceModel,
    utts: &mut [&mut Utterance],
    members: &[usize],
) -> Result<Tensor> {
    let latent = model.config().acoustic_vae_dim;
    let head = model.place(Component::DiffusionHead);
    let mut positive = Vec::with_capacity(members.len());
    let mut negative = Vec::with_capacity(members.len());
    let mut guidance = Vec::with_capacity(members.len());
    let mut noise = Vec::with_capacity(members.len() * latent);
    for &i in members {
        let (inputs, x_t) = utts[i].frame_inputs(latent)?;
        positive.push(inputs.h_pos.clone());
        negative.push(inputs.h_neg.clone());
        guidance.push(inputs.cfg_scale);
        noise.extend(x_t);
    }
    let positive = head.put(&gather(&positive.iter().collect::<Vec<_>>())?)?;
    let negative = head.put(&gather(&negative.iter().collect::<Vec<_>>())?)?;
    let sampler = utts[members[0]].sampler().0.clone();
    let stochastic = sampler.solver().kind() == SolverKind::Sde;
    let mut sources: Vec<&mut dyn NoiseSource> = if stochastic {
        utts.iter_mut()
            .enumerate()
            .filter(|(i, _)| members.contains(i))
            .map(|(_, u)| u.step_noise())
            .collect()
    } else {
        Vec::new()
    };
    sampler.sample_frames(&positive, &negative, &guidance, &noise, &mut sources)
}
