//! σ-VAE acoustic decoder (`model.acoustic_tokenizer.decoder`): latents `[1, vae_dim, T]` to
//! audio `[1, channels, T·hop]`, one-shot or streaming with a minimal carried state, and the
//! next frame of a whole batch of streams at once (each with its own state).
//!
//! Activations are kept time-major (`[B·T, C]`, row-major, stream-major) throughout, so every
//! FFN, stem, head and upsampling step is one plain matmul for the whole batch and the
//! depthwise mixers are shifted multiply-adds (never candle's grouped conv). f32 on the CPU
//! runs fused kernels (`vv_kernels::cpu`): a threaded skinny matmul for the weight-bound early
//! layers, single-pass epilogues, each mixer (norm, convolution, residual) in one pass and,
//! with AMX, each later stage's feed-forward in one pass; every other device and dtype runs
//! the same maths as plain candle ops.

mod block;
mod conv;
mod depthwise;
pub(crate) mod state;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::config::AcousticTokenizerConfig;
use crate::error::{ModelError, Result};
use crate::linear::Packing;
use crate::rows::{gather, BatchRow};
use block::Block1D;
use conv::{CausalConv1d, CausalConvTranspose1d};
pub use state::DecoderState;

/// The σ-VAE decoder: stem conv, stages of Block1D separated by transposed-conv upsamplers, head.
#[derive(Debug, Clone)]
pub struct AcousticDecoder {
    stem: CausalConv1d,
    /// `upsample[k]` runs before `stages[k + 1]`.
    upsample: Vec<CausalConvTranspose1d>,
    stages: Vec<Vec<Block1D>>,
    head: CausalConv1d,
    vae_dim: usize,
    /// Output audio channels.
    channels: usize,
    hop: usize,
    /// `(rows, channels)` of each convolution's history, in decode order (see
    /// [`DecoderState`]).
    history_shapes: Vec<(usize, usize)>,
    dtype: DType,
    device: Device,
    /// The batched single-frame step captured as CUDA graphs (see `crate::graphs::decoder`).
    #[cfg(feature = "cuda")]
    graphs: crate::graphs::decoder::GraphCache,
}

/// Receives `(name, [1, C, L] tensor)` for each intermediate of a decode (parity debugging).
type Recorder<'a> = Option<&'a mut Vec<(String, Tensor)>>;

impl AcousticDecoder {
    /// Builds the decoder from `cfg` with `vb` at `model.acoustic_tokenizer.decoder`, the
    /// convolution and FFN weights stored as `packing` says (judged by the time steps each
    /// stage sees per frame while streaming one frame at a time).
    pub fn new(cfg: &AcousticTokenizerConfig, vb: VarBuilder, packing: Packing) -> Result<Self> {
        let depths = cfg.decoder_depths()?;
        let channels = cfg.decoder_channels()?;
        if depths.len() != cfg.decoder_ratios.len() + 1 || cfg.decoder_ratios.contains(&0) {
            return Err(ModelError::InvalidConfig(format!(
                "decoder needs one more stage than positive ratios: depths {depths:?}, ratios {:?}",
                cfg.decoder_ratios
            )));
        }
        // Time steps per stream of each stage for one frame: 1, then times each ratio.
        let rows: Vec<usize> = std::iter::once(1)
            .chain(cfg.decoder_ratios.iter().scan(1usize, |len, &r| {
                *len = len.saturating_mul(r);
                Some(*len)
            }))
            .collect();
        let layers = vb.pp("upsample_layers");
        let stem_vb = layers.pp("0").pp("0");
        let stem = CausalConv1d::new(cfg.vae_dim, channels[0], stem_vb, packing, rows[0])?;
        let upsample = cfg
            .decoder_ratios
            .iter()
            .enumerate()
            .map(|(i, &ratio)| {
                let vb = layers.pp((i + 1).to_string()).pp("0");
                let (c_in, c_out) = (channels[i], channels[i + 1]);
                CausalConvTranspose1d::new(c_in, c_out, ratio, vb, packing, rows[i])
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let stages = depths
            .iter()
            .zip(&channels)
            .enumerate()
            .map(|(i, (&depth, &c))| {
                let vb = vb.pp("stages").pp(i.to_string());
                (0..depth)
                    .map(|j| {
                        let vb = vb.pp(j.to_string());
                        Block1D::new(c, cfg.layernorm_eps, vb, packing, rows[i])
                    })
                    .collect::<candle_core::Result<Vec<_>>>()
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let last = channels[channels.len() - 1];
        let head_rows = rows[rows.len() - 1];
        let head = CausalConv1d::new(last, cfg.channels, vb.pp("head"), packing, head_rows)?;
        let mut history_shapes = vec![stem.history_shape()];
        for (i, blocks) in stages.iter().enumerate() {
            if i > 0 {
                history_shapes.push(upsample[i - 1].history_shape());
            }
            history_shapes.extend(blocks.iter().map(Block1D::history_shape));
        }
        history_shapes.push(head.history_shape());
        Ok(Self {
            stem,
            upsample,
            stages,
            head,
            vae_dim: cfg.vae_dim,
            channels: cfg.channels,
            hop: cfg.hop_length(),
            history_shapes,
            dtype: vb.dtype(),
            device: vb.device().clone(),
            #[cfg(feature = "cuda")]
            graphs: crate::graphs::decoder::GraphCache::new("acoustic decoder step"),
        })
    }

    /// The batched single-frame step captured as CUDA graphs.
    #[cfg(feature = "cuda")]
    pub(crate) fn graphs(&self) -> &crate::graphs::decoder::GraphCache {
        &self.graphs
    }

    /// Latent width of the input.
    #[cfg(feature = "cuda")]
    pub(crate) fn vae_dim(&self) -> usize {
        self.vae_dim
    }

    /// Output audio channels.
    #[cfg(feature = "cuda")]
    pub(crate) fn channels(&self) -> usize {
        self.channels
    }

    /// Compute dtype.
    #[cfg(feature = "cuda")]
    pub(crate) fn dtype(&self) -> DType {
        self.dtype
    }

    /// Device of the weights.
    #[cfg(feature = "cuda")]
    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// `(rows, channels)` of each convolution's history, in decode order.
    #[cfg(feature = "cuda")]
    pub(crate) fn history_shapes(&self) -> &[(usize, usize)] {
        &self.history_shapes
    }

    /// Audio samples produced per latent frame.
    pub fn hop_length(&self) -> usize {
        self.hop
    }

    /// A fresh streaming state (zero history everywhere, as in a one-shot decode).
    pub fn new_state(&self) -> Result<DecoderState> {
        let len = state::packed_len(&self.history_shapes);
        Ok(DecoderState {
            packed: BatchRow::single(&Tensor::zeros((1, len), self.dtype, &self.device)?),
            frames: 0,
        })
    }

    /// Decodes all of `latents` (`[1, vae_dim, T]`) at once into f32 audio `[1, channels, T·hop]`.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        self.decode_step(latents, &mut self.new_state()?)
    }

    /// Decodes the next `T` frames of a stream (`[1, vae_dim, T]`), returning exactly the `T·hop`
    /// new samples as f32 `[1, channels, T·hop]`. Any chunking gives the one-shot result. The
    /// state is left as it was when an error is returned.
    pub fn decode_step(&self, latents: &Tensor, state: &mut DecoderState) -> Result<Tensor> {
        let x = self.time_major_input(latents)?;
        let (audio, next) = self.run_packed(&x, &state.packed.get()?, None)?;
        state.packed = BatchRow::single(&next);
        state.frames += latents.dim(2)?;
        Ok(audio)
    }

    /// Decodes the next frame of each of `B` streams: `latents` `[B, vae_dim]` (row `b` for
    /// `states[b]`) → f32 audio `[B, channels, hop]`. Every weight is read once for the batch;
    /// each stream's audio equals what [`AcousticDecoder::decode_step`] gives it alone. On CUDA
    /// the step replays a graph captured for the batch's size bucket. The states are left as
    /// they were when an error is returned.
    pub fn decode_frames(
        &self,
        latents: &Tensor,
        states: &mut [&mut DecoderState],
    ) -> Result<Tensor> {
        let (batch, dim) = latents.dims2()?;
        if batch != states.len() || dim != self.vae_dim || batch == 0 {
            return Err(ModelError::InvalidInput(format!(
                "decoder latents {:?} for {} states",
                latents.dims(),
                states.len()
            )));
        }
        let rows: Vec<&BatchRow> = states.iter().map(|s| &s.packed).collect();
        let packed = gather(&rows)?;
        #[cfg(feature = "cuda")]
        let decoded = crate::graphs::decoder::decode(self, latents, &packed)?;
        #[cfg(not(feature = "cuda"))]
        let decoded = None;
        let (audio, next) = match decoded {
            Some(done) => done,
            None => {
                let x = latents.to_device(&self.device)?.to_dtype(self.dtype)?;
                self.run_packed(&x, &packed, None)?
            }
        };
        for (b, state) in states.iter_mut().enumerate() {
            state.packed = BatchRow::new(&next, b);
            state.frames += 1;
        }
        Ok(audio)
    }

    /// One-shot decode that also returns the `stem`, `upsample{i}` and `stage{i}` intermediates
    /// as `[1, C, L]` f32 tensors (names of the golden fixture's `debug.*` tensors).
    pub(crate) fn decode_with_intermediates(
        &self,
        latents: &Tensor,
    ) -> Result<(Tensor, Vec<(String, Tensor)>)> {
        let mut recorded = Vec::new();
        let x = self.time_major_input(latents)?;
        let fresh = self.new_state()?.packed.get()?;
        let (audio, _) = self.run_packed(&x, &fresh, Some(&mut recorded))?;
        Ok((audio, recorded))
    }

    /// [`AcousticDecoder::run`] on the streams whose states are the packed rows `packed`
    /// (`[B, len]`); returns the audio and the next packed states.
    fn run_packed(
        &self,
        x: &Tensor,
        packed: &Tensor,
        record: Recorder,
    ) -> Result<(Tensor, Tensor)> {
        let mut histories = state::unpack(packed, &self.history_shapes)?;
        let audio = self.run(x, packed.dim(0)?, &mut histories, record)?;
        Ok((audio, state::pack(&histories)?))
    }

    /// Decodes the time-major latent rows `x` (`[B·T, vae_dim]` in the decoder's dtype, stream
    /// by stream) of `batch` streams with their `histories` (`[B, rows, cols]` each, in decode
    /// order, replaced by the next ones) into f32 audio `[B, channels, T·hop]`.
    pub(crate) fn run(
        &self,
        x: &Tensor,
        batch: usize,
        histories: &mut [Tensor],
        mut record: Recorder,
    ) -> Result<Tensor> {
        let frames = x.dim(0)?;
        if frames == 0 {
            return Ok(Tensor::zeros(
                (batch, self.channels, 0),
                DType::F32,
                &self.device,
            )?);
        }
        if histories.len() != self.history_shapes.len() {
            return Err(ModelError::InvalidInput(format!(
                "decoder state holds {} histories, the decoder has {}",
                histories.len(),
                self.history_shapes.len()
            )));
        }
        let mut next = histories.iter_mut();
        let mut history = move || {
            next.next()
                .ok_or_else(|| ModelError::InvalidInput("decoder state too short".into()))
        };
        let mut x = self.stem.forward(x, history()?)?;
        keep(&mut record, "stem", &x)?;
        for (i, blocks) in self.stages.iter().enumerate() {
            if i > 0 {
                x = self.upsample[i - 1].forward(&x, history()?)?;
                keep(&mut record, &format!("upsample{i}"), &x)?;
            }
            for block in blocks {
                x = block.forward(&x, history()?)?;
            }
            keep(&mut record, &format!("stage{i}"), &x)?;
        }
        let audio = self.head.forward(&x, history()?)?;
        Ok(channels_first(&audio, batch)?)
    }

    /// Validates `[1, vae_dim, T]` and returns it as `[T, vae_dim]` in the decoder's dtype.
    fn time_major_input(&self, latents: &Tensor) -> Result<Tensor> {
        let (batch, dim, _) = latents.dims3().map_err(|_| bad_shape(latents))?;
        if batch != 1 || dim != self.vae_dim {
            return Err(bad_shape(latents));
        }
        Ok(latents
            .to_device(&self.device)?
            .to_dtype(self.dtype)?
            .squeeze(0)?
            .t()?
            .contiguous()?)
    }
}

fn bad_shape(latents: &Tensor) -> ModelError {
    ModelError::InvalidInput(format!(
        "decoder latents must be [1, vae_dim, T], got {:?}",
        latents.dims()
    ))
}

/// `[B·L, C]` time-major rows of `batch` streams to f32 `[B, C, L]`.
fn channels_first(x: &Tensor, batch: usize) -> candle_core::Result<Tensor> {
    let (rows, c) = x.dims2()?;
    x.to_dtype(DType::F32)?
        .reshape((batch, rows / batch.max(1), c))?
        .transpose(1, 2)?
        .contiguous()
}

fn keep(record: &mut Recorder, name: &str, x: &Tensor) -> candle_core::Result<()> {
    if let Some(list) = record.as_mut() {
        list.push((name.to_string(), channels_first(x, 1)?));
    }
    Ok(())
}
