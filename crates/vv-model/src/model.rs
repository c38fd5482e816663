//! The whole VibeVoice-Realtime model: every component loaded from one checkpoint, on one
//! device, in one compute dtype (the diffusion head stays f32, see `diffusion_head`), its large
//! matrices packed to bf16 or int8 at load on the CPU when asked (see `crate::quantize`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::acoustic_decoder::AcousticDecoder;
use crate::config::VibeVoiceConfig;
use crate::connector::AcousticConnector;
use crate::diffusion_head::DiffusionHead;
use crate::eos_classifier::EosClassifier;
use crate::error::{ModelError, Result};
use crate::kv_cache::KvCache;
use crate::language_model::{TextLm, TtsInput, TtsLm};
use crate::linear::Packing;
use crate::placement::{Component, Place};
use crate::random_init::RandomInit;
use crate::sampler::DiffusionSampler;
use crate::scheduler::{DpmSolver, SolverKind};
use crate::source::CheckpointFiles;
use vv_device::backend::Backend;
use vv_device::fallback::FallbackNotice;

/// The seed of [`VibeVoiceModel::random`]'s weights.
pub const RANDOM_WEIGHTS_SEED: u64 = 0x5eed_0005;

/// Builds a CPU var builder in the given dtype (for components that fall back to the CPU).
type CpuWeights<'a> = &'a dyn Fn(DType) -> Result<VarBuilder<'static>>;

/// All inference components of the checkpoint.
#[derive(Debug, Clone)]
pub struct VibeVoiceModel {
    cfg: VibeVoiceConfig,
    pub(crate) text_lm: TextLm,
    pub(crate) tts_lm: TtsLm,
    pub(crate) connector: AcousticConnector,
    pub(crate) eos: EosClassifier,
    pub(crate) head: DiffusionHead,
    pub(crate) decoder: AcousticDecoder,
    speech_scaling: f32,
    speech_bias: f32,
    device: Device,
    dtype: DType,
    /// Device and dtype of each component, indexed like [`Component::ALL`].
    places: [Place; 6],
    fallbacks: Vec<Component>,
    /// Which weights are packed (none off the CPU).
    packing: Packing,
    /// The speech feedback step captured as CUDA graphs (see `crate::graphs::feedback`).
    #[cfg(feature = "cuda")]
    pub(crate) feedback_graphs: crate::graphs::feedback::GraphCache,
    /// Text windows captured as CUDA graphs (see `crate::graphs::text_window`).
    #[cfg(feature = "cuda")]
    pub(crate) text_window_graphs: crate::graphs::text_window::GraphCache,
    /// One sampler per step count and solver (its timestep embeddings computed once), shared
    /// by every utterance that samples with them.
    samplers: Arc<Mutex<HashMap<(usize, SolverKind), DiffusionSampler>>>,
}

/// One utterance's text window in a batch: its token ids (1 to 5) and the two caches it extends.
pub struct TextWindow<'a> {
    /// The window's token ids.
    pub ids: &'a [u32],
    /// The lower LM's cache.
    pub kv_lm: &'a mut KvCache,
    /// The positive TTS stream's cache.
    pub kv_pos: &'a mut KvCache,
}

/// What feeding a batch of frames back gives, row `b` for frame `b`.
#[derive(Debug, Clone)]
pub struct Feedback {
    /// The positive streams' new hidden states `[B, hidden]`.
    pub h_pos: Tensor,
    /// The negative streams' new hidden states `[B, hidden]`.
    pub h_neg: Tensor,
    /// The EOS classifier's logits on `h_pos`, `[B, 1]` f32 (still on the device).
    pub eos_logits: Tensor,
}

fn open_weights(path: &Path, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
    // SAFETY: the file is memory-mapped read-only; like every safetensors loader we rely on it
    // not being modified while the model is loaded.
    unsafe { VarBuilder::from_mmaped_safetensors(&[path], dtype, device) }.map_err(|e| {
        ModelError::Tensor {
            name: path.display().to_string(),
            reason: e.to_string(),
        }
    })
}

/// Reads a 0-d (or 1-element) scalar tensor as f32.
fn scalar(vb: &VarBuilder, name: &str) -> Result<f32> {
    let t = vb
        .get_unchecked_dtype(name, DType::F32)
        .map_err(|e| ModelError::Tensor {
            name: format!("model.{name}"),
            reason: e.to_string(),
        })?;
    if t.elem_count() != 1 {
        return Err(ModelError::Tensor {
            name: format!("model.{name}"),
            reason: format!("expected a scalar, found shape {:?}", t.dims()),
        });
    }
    Ok(t.flatten_all()?.to_vec1::<f32>()?[0])
}

impl VibeVoiceModel {
    /// Loads a checkpoint (`config.json` + `model.safetensors`) onto `device` in `dtype`, each
    /// weight packed as `packing` says as it is read (the f32 model never exists whole).
    /// A component whose operations the device's backend lacks is moved to the CPU (one
    /// warning per component).
    pub fn load(
        files: &CheckpointFiles,
        device: &Device,
        dtype: DType,
        packing: Packing,
    ) -> Result<Self> {
        let cfg = VibeVoiceConfig::from_file(&files.config)?;
        let vb = open_weights(&files.weights, dtype, device)?;
        let head_vb = open_weights(&files.weights, DType::F32, device)?;
        let mut model = Self::new(cfg, vb, head_vb, packing)?;
        model.fall_back_unsupported(&|dt| open_weights(&files.weights, dt, &Device::Cpu))?;
        Ok(model)
    }

    /// Builds the real architecture of `cfg` with random weights (for benchmarks: speed does not
    /// depend on the weight values), packed as `packing` says. The values are seeded
    /// ([`RANDOM_WEIGHTS_SEED`]): every run, device and dtype starts from the same f32 weights,
    /// so the formats' outputs can be compared on the real shapes.
    pub fn random(
        cfg: VibeVoiceConfig,
        device: &Device,
        dtype: DType,
        packing: Packing,
    ) -> Result<Self> {
        let random = || Box::new(RandomInit::seeded(RANDOM_WEIGHTS_SEED));
        let vb = VarBuilder::from_backend(random(), dtype, device.clone());
        let head_vb = VarBuilder::from_backend(random(), DType::F32, device.clone());
        let mut model = Self::new(cfg, vb, head_vb, packing)?;
        model
            .fall_back_unsupported(&|dt| Ok(VarBuilder::from_backend(random(), dt, Device::Cpu)))?;
        Ok(model)
    }

    /// Builds every component from a root `vb` (model dtype) and `head_vb` (f32) at the
    /// checkpoint's top level, the weights stored as `packing` says (packing needs f32 on the
    /// CPU: anything else is a `quantize_unsupported` error).
    pub fn new(
        cfg: VibeVoiceConfig,
        vb: VarBuilder,
        head_vb: VarBuilder,
        packing: Packing,
    ) -> Result<Self> {
        cfg.validate()?;
        let device = vb.device().clone();
        let dtype = vb.dtype();
        crate::quantize::check_target(packing, Backend::of(&device), dtype)?;
        let m = vb.pp("model");
        let text_lm = TextLm::new(&cfg, m.clone(), packing)?;
        let tts_lm = TtsLm::new(&cfg, m.clone(), packing)?;
        let connector = AcousticConnector::new(&cfg, m.pp("acoustic_connector"), packing)?;
        let eos = EosClassifier::new(&cfg, vb.pp("tts_eos_classifier"), packing)?;
        let head = DiffusionHead::new(
            &cfg.diffusion_head_config,
            head_vb.pp("model").pp("prediction_head"),
            // The head stays f32 whatever `packing` says, as on CUDA: it is a small share of
            // a frame's bytes, and packing it put the sampling above the CUDA bf16 path's
            // errors (docs/quantization.md).
            Packing::NONE,
        )?;
        let decoder = AcousticDecoder::new(
            &cfg.acoustic_tokenizer_config,
            m.pp("acoustic_tokenizer").pp("decoder"),
            packing,
        )?;
        let speech_scaling = scalar(&m, "speech_scaling_factor")?;
        let speech_bias = scalar(&m, "speech_bias_factor")?;
        if !speech_scaling.is_finite() || speech_scaling == 0.0 || !speech_bias.is_finite() {
            return Err(ModelError::Tensor {
                name: "model.speech_scaling_factor".into(),
                reason: format!("unusable latent scaling {speech_scaling} / bias {speech_bias}"),
            });
        }
        let place = |dtype| Place {
            device: device.clone(),
            dtype,
        };
        let places = Component::ALL.map(|c| match c {
            Component::DiffusionHead => place(DType::F32),
            _ => place(dtype),
        });
        Ok(Self {
            cfg,
            text_lm,
            tts_lm,
            connector,
            eos,
            head,
            decoder,
            speech_scaling,
            speech_bias,
            device,
            dtype,
            places,
            fallbacks: Vec::new(),
            packing,
            #[cfg(feature = "cuda")]
            feedback_graphs: crate::graphs::feedback::GraphCache::new("speech feedback step"),
            #[cfg(feature = "cuda")]
            text_window_graphs: crate::graphs::text_window::GraphCache::new("text windows"),
            samplers: Arc::default(),
        })
    }

    /// Runs each component once on a tiny input; a component failing with an operation its
    /// GPU backend lacks is rebuilt on the CPU in f32. Other errors are returned.
    fn fall_back_unsupported(&mut self, cpu: CpuWeights) -> Result<()> {
        if self.device.is_cpu() {
            return Ok(());
        }
        // The probes check the backend's kernels one by one; CUDA graphs are captured at their
        // first real use (the warmup), after the caller's graph setting is applied.
        self.set_cuda_graphs(false);
        let probed = self.probe_components(cpu);
        self.set_cuda_graphs(true);
        probed
    }

    /// Probes every component, rebuilding on the CPU those whose operations the backend lacks.
    fn probe_components(&mut self, cpu: CpuWeights) -> Result<()> {
        let backend = Backend::of(&self.device);
        let notice = FallbackNotice::new();
        for c in Component::ALL {
            let Err(err) = self.probe(c) else { continue };
            match &err {
                ModelError::Candle(e) if notice.falls_back_to_cpu(c.name(), backend, e) => {
                    self.rebuild_on_cpu(c, cpu)?;
                    self.probe(c)?;
                }
                _ => return Err(err),
            }
        }
        Ok(())
    }

    /// One tiny forward pass of a component.
    fn probe(&self, c: Component) -> Result<()> {
        let (h, latent) = (
            self.cfg.decoder_config.hidden_size,
            self.cfg.acoustic_vae_dim,
        );
        let place = self.place(c);
        let zeros = |shape: &[usize]| -> Result<Tensor> {
            Ok(Tensor::zeros(shape, place.dtype, &place.device)?)
        };
        match c {
            Component::TextLm => self
                .text_lm
                .forward(&[0], &mut self.text_lm.new_cache())
                .map(drop),
            Component::TtsLm => self
                .tts_lm
                .forward(
                    TtsInput::speech(&zeros(&[1, h])?),
                    &mut self.tts_lm.new_cache(),
                )
                .map(drop),
            Component::Connector => self.connector.forward(&zeros(&[1, latent])?).map(drop),
            Component::EosClassifier => self.eos.logit(&zeros(&[1, h])?).map(drop),
            Component::DiffusionHead => self
                .head
                .forward(&zeros(&[1, latent])?, &[999.0], &zeros(&[1, h])?)
                .map(drop),
            Component::AcousticDecoder => self
                .decoder
                .decode_step(&zeros(&[1, latent, 1])?, &mut self.decoder.new_state()?)
                .map(drop),
        }
    }

    /// Rebuilds component `c` on the CPU in f32 (dense weights, like the rest of a GPU model).
    fn rebuild_on_cpu(&mut self, c: Component, cpu: CpuWeights) -> Result<()> {
        let vb = cpu(DType::F32)?;
        let m = vb.pp("model");
        let cfg = &self.cfg;
        let dense = Packing::NONE;
        match c {
            Component::TextLm => self.text_lm = TextLm::new(cfg, m, dense)?,
            Component::TtsLm => self.tts_lm = TtsLm::new(cfg, m, dense)?,
            Component::Connector => {
                self.connector = AcousticConnector::new(cfg, m.pp("acoustic_connector"), dense)?
            }
            Component::EosClassifier => {
                self.eos = EosClassifier::new(cfg, vb.pp("tts_eos_classifier"), dense)?
            }
            Component::DiffusionHead => {
                let vb = m.pp("prediction_head");
                self.head = DiffusionHead::new(&cfg.diffusion_head_config, vb, dense)?
            }
            Component::AcousticDecoder => {
                self.decoder = AcousticDecoder::new(
                    &cfg.acoustic_tokenizer_config,
                    m.pp("acoustic_tokenizer").pp("decoder"),
                    dense,
                )?
            }
        }
        self.places[Self::index(c)] = Place {
            device: Device::Cpu,
            dtype: DType::F32,
        };
        self.fallbacks.push(c);
        Ok(())
    }

    fn index(c: Component) -> usize {
        Component::ALL.iter().position(|x| *x == c).unwrap_or(0)
    }

    /// Device and dtype of a component.
    pub fn place(&self, c: Component) -> &Place {
        &self.places[Self::index(c)]
    }

    /// Components that fell back to the CPU because their backend lacks an operation.
    pub fn cpu_fallbacks(&self) -> &[Component] {
        &self.fallbacks
    }

    /// The checkpoint's configuration.
    pub fn config(&self) -> &VibeVoiceConfig {
        &self.cfg
    }

    /// The device chosen for the model (components that fell back run on the CPU instead).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Compute dtype of the LMs, connector, classifier and decoder.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Which weights are packed, and in which format (see `crate::quantize`).
    pub fn packing(&self) -> Packing {
        self.packing
    }

    /// Output sample rate (24 kHz).
    pub fn sample_rate(&self) -> u32 {
        24_000
    }

    /// Audio samples per latent frame.
    pub fn frame_samples(&self) -> usize {
        self.cfg.acoustic_tokenizer_config.hop_length()
    }

    /// `z / speech_scaling_factor - speech_bias_factor`: the decoder's input.
    pub(crate) fn denormalize(&self, z: &Tensor) -> Result<Tensor> {
        Ok(((z / self.speech_scaling as f64)? - self.speech_bias as f64)?)
    }

    /// Whether text windows and each frame's sampling loop, decoder step and speech feedback
    /// replay CUDA graphs
    /// (on by default; off runs them kernel by kernel, e.g. to rule graphs out when debugging).
    /// Only CUDA builds capture graphs: elsewhere this has no effect.
    pub fn set_cuda_graphs(&self, enabled: bool) {
        #[cfg(feature = "cuda")]
        {
            self.head.graphs().set_enabled(enabled);
            self.decoder.graphs().set_enabled(enabled);
            self.feedback_graphs.set_enabled(enabled);
            self.text_window_graphs.set_enabled(enabled);
        }
        #[cfg(not(feature = "cuda"))]
        let _ = enabled;
    }

    /// Called when the caller is about to wait for work: the CPU kernels' workers sleep now
    /// instead of staying ready for a next operation that is not coming (on the CPU they would
    /// keep a core looking busy to the scheduler). Harmless on other devices.
    pub fn rest(&self) {
        vv_kernels::cpu::rest_workers();
    }

    /// Runs the text windows of several utterances in one pass of each LM (their caches at
    /// different positions), committing each window's tokens to its caches; returns each
    /// window's last positive hidden row, `[W, hidden]`. On CUDA the batch replays the graph
    /// of its bucket.
    pub fn text_windows(&self, windows: &mut [TextWindow]) -> Result<Tensor> {
        if windows.is_empty() || windows.iter().any(|w| w.ids.is_empty()) {
            return Err(ModelError::InvalidInput("an empty text window".into()));
        }
        #[cfg(feature = "cuda")]
        if let Some(h) = crate::graphs::text_window::forward(self, windows)? {
            return Ok(h);
        }
        let rows: Vec<usize> = windows.iter().map(|w| w.ids.len()).collect();
        let ids: Vec<u32> = windows.iter().flat_map(|w| w.ids.iter().copied()).collect();
        let (mut lm, mut pos): (Vec<&mut KvCache>, Vec<&mut KvCache>) = windows
            .iter_mut()
            .map(|w| (&mut *w.kv_lm, &mut *w.kv_pos))
            .unzip();
        let h_text =
            self.text_lm
                .stack()
                .forward_packed(&self.text_lm.embed(&ids)?, &rows, &mut lm)?;
        let h_text = self.place(Component::TtsLm).put(&h_text)?;
        let x = self.tts_lm.input_embeds(&TtsInput::text(&h_text))?;
        let h = self.tts_lm.stack().forward_packed(&x, &rows, &mut pos)?;
        let last: Vec<u32> = rows
            .iter()
            .scan(0, |end, n| {
                *end += n;
                Some(*end as u32 - 1)
            })
            .collect();
        let last = Tensor::new(last.as_slice(), h.device())?;
        Ok(h.index_select(&last, 0)?)
    }

    /// Feeds the latents of a batch of frames (`z` `[B, latent]`, row `b` for the caches
    /// `kv_pos[b]`, `kv_neg[b]`) back through the connector into both CFG streams of each (one
    /// speech row each, `2B` streams in one TTS-LM pass), committing one position to each cache,
    /// and runs the EOS classifier on the positive rows. On CUDA the batch replays the graph of
    /// its bucket.
    pub fn feed_speech_batch(
        &self,
        z: &Tensor,
        kv_pos: &mut [&mut KvCache],
        kv_neg: &mut [&mut KvCache],
    ) -> Result<Feedback> {
        let batch = z.dim(0)?;
        if batch == 0 || kv_pos.len() != batch || kv_neg.len() != batch {
            return Err(ModelError::InvalidInput(format!(
                "{batch} latents for {} positive and {} negative caches",
                kv_pos.len(),
                kv_neg.len()
            )));
        }
        #[cfg(feature = "cuda")]
        if let Some(out) = crate::graphs::feedback::feed(self, z, kv_pos, kv_neg)? {
            return Ok(out);
        }
        let e = self
            .connector
            .forward(&self.place(Component::Connector).put(z)?)?;
        let e = self.place(Component::TtsLm).put(&e)?;
        let x = self.tts_lm.input_embeds(&TtsInput::speech(&e))?;
        let mut caches: Vec<&mut KvCache> = kv_pos
            .iter_mut()
            .map(|c| &mut **c)
            .chain(kv_neg.iter_mut().map(|c| &mut **c))
            .collect();
        let rows = vec![1; 2 * batch];
        let h =
            self.tts_lm
                .stack()
                .forward_packed(&Tensor::cat(&[&x, &x], 0)?, &rows, &mut caches)?;
        let h_pos = h.narrow(0, 0, batch)?;
        let eos_logits = self
            .eos
            .logit(&self.place(Component::EosClassifier).put(&h_pos)?)?
            .to_dtype(DType::F32)?;
        Ok(Feedback {
            h_neg: h.narrow(0, batch, batch)?,
            h_pos,
            eos_logits,
        })
    }

    /// The diffusion sampler for `steps` solver steps of `kind` (built once, then cloned: the
    /// weights and the schedule's timestep embeddings are shared).
    pub fn sampler(&self, steps: usize, kind: SolverKind) -> Result<DiffusionSampler> {
        let mut samplers = self.samplers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sampler) = samplers.get(&(steps, kind)) {
            return Ok(sampler.clone());
        }
        let solver = DpmSolver::new(&self.cfg.diffusion_head_config, steps, kind)?;
        let sampler = DiffusionSampler::new(&self.head, solver)?;
        samplers.insert((steps, kind), sampler.clone());
        Ok(sampler)
    }

    /// The text LM (lower layers).
    pub fn text_lm(&self) -> &TextLm {
        &self.text_lm
    }

    /// The TTS LM (upper layers, final norm, type embeddings).
    pub fn tts_lm(&self) -> &TtsLm {
        &self.tts_lm
    }

    /// The acoustic connector.
    pub fn connector(&self) -> &AcousticConnector {
        &self.connector
    }

    /// The end-of-speech classifier.
    pub fn eos(&self) -> &EosClassifier {
        &self.eos
    }

    /// The diffusion head (f32).
    pub fn head(&self) -> &DiffusionHead {
        &self.head
    }

    /// The acoustic decoder.
    pub fn decoder(&self) -> &AcousticDecoder {
        &self.decoder
    }
}
