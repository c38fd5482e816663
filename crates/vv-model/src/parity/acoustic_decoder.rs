//! Parity of the σ-VAE decoder against `acoustic_decoder.safetensors`: one-shot, per-frame and
//! chunked streaming outputs, plus the one-shot `debug.*` intermediates.

use candle_core::{DType, Tensor};

use super::{GoldenFile, TensorReport};
use crate::acoustic_decoder::AcousticDecoder;
use crate::error::{ModelError, Result};

const COMPONENT: &str = "acoustic_decoder";
const TOLERANCE: f64 = 1e-4;

/// Runs the decoder on the golden latents and reports every output and debug tensor.
pub fn check(decoder: &AcousticDecoder, golden: &GoldenFile) -> Result<Vec<TensorReport>> {
    // The golden input is [1, frames, vae_dim]; the decoder takes [1, vae_dim, frames].
    let latents = golden.get("input.latents")?.transpose(1, 2)?.contiguous()?;
    let frames = latents.dim(2)?;
    let mut reports = Vec::new();
    let mut compare = |name: &str, got: &Tensor| -> Result<()> {
        let want = golden.get(name)?;
        reports.push(TensorReport::new(COMPONENT, name, got, want, TOLERANCE)?);
        Ok(())
    };

    let (full, intermediates) = decoder.decode_with_intermediates(&latents)?;
    compare("output.audio_full", &full)?;
    for (name, got) in &intermediates {
        let name = format!("debug.{name}");
        if golden.contains(&name) {
            compare(&name, got)?;
        }
    }

    let per_frame = vec![1; frames];
    compare(
        "output.audio_stream_per_frame",
        &stream(decoder, &latents, &per_frame)?,
    )?;
    let chunks = chunk_sizes(golden)?;
    compare(
        "output.audio_stream_chunked",
        &stream(decoder, &latents, &chunks)?,
    )?;
    Ok(reports)
}

/// Decodes `latents` through one streaming state in chunks of `sizes` frames, concatenated.
fn stream(decoder: &AcousticDecoder, latents: &Tensor, sizes: &[usize]) -> Result<Tensor> {
    let mut state = decoder.new_state()?;
    let mut start = 0;
    let mut parts = Vec::with_capacity(sizes.len());
    for &size in sizes {
        parts.push(decoder.decode_step(&latents.narrow(2, start, size)?, &mut state)?);
        start += size;
    }
    Ok(Tensor::cat(&parts, 2)?)
}

/// `input.chunk_sizes` as frame counts that must sum to the number of latent frames.
fn chunk_sizes(golden: &GoldenFile) -> Result<Vec<usize>> {
    let sizes = golden
        .get("input.chunk_sizes")?
        .to_dtype(DType::I64)?
        .flatten_all()?
        .to_vec1::<i64>()?;
    sizes
        .into_iter()
        .map(|s| {
            usize::try_from(s).map_err(|_| ModelError::Fixture {
                path: golden.path().display().to_string(),
                reason: format!("negative chunk size {s}"),
            })
        })
        .collect()
}
