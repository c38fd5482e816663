//! The diffusion prediction head (`model.prediction_head`): adaLN SwiGLU blocks that predict
//! the velocity `v` of a noisy 64-d acoustic latent, conditioned on a TTS-LM hidden state and
//! the diffusion timestep (spec section 3.6).
//!
//! **Precision.** The head always runs in f32, whatever dtype the rest of the model uses: its
//! weights are converted to f32 at load time and its inputs are cast to f32. The reference's
//! CUDA path runs it in bf16 and re-quantises the latent after every solver step, and ports
//! report audible "gritty artifacts" from that; f32 costs little here (42 M parameters) and
//! is what the spec recommends (section 8, item 10).
//!
//! **Timestep features.** The reference forms the 128 frequencies `exp(-ln(10000)·k/128)` and
//! the products `t·f_k` in f32; at `t ≈ 1000` one f32 ulp of the product is 6e-5, so an f64
//! implementation misses the goldens by ~5e-5. We reproduce the reference's f32 table
//! ([`timestep_frequencies`]) and its f32 products exactly.
//!
//! The forward pass is split for the sampler: [`DiffusionHead::condition`] (`cond_proj`, once
//! per frame), [`DiffusionHead::timestep_embedding`] (once per schedule) and
//! [`DiffusionHead::forward_with`] (every solver step).

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{RmsNorm, VarBuilder};

use crate::config::DiffusionHeadConfig;
use crate::error::{ModelError, Result};
use crate::linear::{Linear, Packing};
use crate::qwen2::linear;

mod modulation;

pub use modulation::Modulation;
use modulation::{AdaLn, LayerParams};

/// Width of the sinusoidal timestep features (`frequency_embedding_size`), fixed by the
/// reference whatever the head's hidden size is.
pub const TIMESTEP_FEATURES: usize = 256;

/// `max_period` of the sinusoidal timestep features.
const MAX_PERIOD: f64 = 10_000.0;

/// Entries of the reference's f32 frequency table that differ from the correctly rounded
/// `exp` (index, ulps to add). The reference's vectorised CPU `exp` rounds these the other
/// way; found by fitting the golden `debug.t_freq` of the tiny fixture (entry 12 is the only
/// one of k < 80 that differs; beyond that a 1-ulp change moves the features by < 1e-7).
const TORCH_EXP_ROUNDING: &[(usize, i32)] = &[(12, 1)];

/// The reference's f32 frequency table `f_k = exp(-ln(10000)·k/128)`, k = 0..127: the
/// argument is formed in f32 exactly like torch, the exponential is rounded correctly (via
/// f64, so the result is the same on every platform) and then adjusted where torch's kernel
/// rounds differently.
pub fn timestep_frequencies() -> Vec<f32> {
    let half = TIMESTEP_FEATURES / 2;
    let neg_log_period = -(MAX_PERIOD.ln()) as f32;
    let mut freqs: Vec<f32> = (0..half)
        .map(|k| {
            let arg = neg_log_period * k as f32 / half as f32;
            f64::from(arg).exp() as f32
        })
        .collect();
    for &(k, ulps) in TORCH_EXP_ROUNDING {
        if let Some(f) = freqs.get_mut(k) {
            *f = f32::from_bits(f.to_bits().wrapping_add_signed(ulps));
        }
    }
    freqs
}

/// Sinusoidal timestep features `[cos(t·f_0..f_127), sin(t·f_0..f_127)]` (cos first), one
/// row of [`TIMESTEP_FEATURES`] values per timestep, row-major. `t·f_k` is an f32 product as
/// in the reference; cos and sin are evaluated in f64 and rounded.
pub fn timestep_features(timesteps: &[f32]) -> Vec<f32> {
    let freqs = timestep_frequencies();
    let mut out = Vec::with_capacity(timesteps.len() * TIMESTEP_FEATURES);
    for &t in timesteps {
        let args: Vec<f64> = freqs.iter().map(|&f| f64::from(t * f)).collect();
        out.extend(args.iter().map(|a| a.cos() as f32));
        out.extend(args.iter().map(|a| a.sin() as f32));
    }
    out
}

/// A named point of the forward pass, reported to a trace observer (names follow the
/// `debug.*` tensors of the golden file without the prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TracePoint {
    /// `noisy_images_proj(x_t)`.
    XProj,
    /// `adaLN_modulation(c)` of layer i (shift, scale, gate concatenated).
    LayerAdaln(usize),
    /// Output of layer i.
    LayerOut(usize),
    /// `final_layer.adaLN_modulation(c)` (shift, scale concatenated).
    FinalAdaln,
}

impl TracePoint {
    /// The golden file's name for this point, without the `debug.` prefix.
    pub fn name(&self) -> String {
        match self {
            TracePoint::XProj => "x_proj".into(),
            TracePoint::LayerAdaln(i) => format!("layer{i}.adaln"),
            TracePoint::LayerOut(i) => format!("layer{i}.out"),
            TracePoint::FinalAdaln => "final.adaln".into(),
        }
    }
}

/// `x·(1 + scale) + shift`.
fn modulate(x: &Tensor, p: &LayerParams) -> Result<Tensor> {
    Ok(x.broadcast_mul(&p.scale_plus_one)?
        .broadcast_add(&p.shift)?)
}

/// Receives each [`TracePoint`] of a traced forward pass.
type Observer<'a> = Option<&'a mut dyn FnMut(TracePoint, &Tensor)>;

/// One adaLN block: RMSNorm, modulation, SwiGLU FFN, gated residual.
#[derive(Debug, Clone)]
struct HeadLayer {
    norm: RmsNorm,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl HeadLayer {
    fn new(cfg: &DiffusionHeadConfig, vb: VarBuilder, packing: Packing) -> Result<Self> {
        let (h, f) = (cfg.hidden_size, cfg.ffn_dim());
        Ok(Self {
            norm: candle_nn::rms_norm(h, cfg.rms_norm_eps, vb.pp("norm"))?,
            gate_proj: linear(&vb.pp("ffn.gate_proj"), h, f, false, packing)?,
            up_proj: linear(&vb.pp("ffn.up_proj"), h, f, false, packing)?,
            down_proj: linear(&vb.pp("ffn.down_proj"), f, h, false, packing)?,
        })
    }

    /// The layer's output under its adaLN parameters `p`.
    fn forward(&self, x: &Tensor, p: &LayerParams) -> Result<Tensor> {
        let Some(gate) = p.gate.as_ref() else {
            return Err(ModelError::InvalidConfig(
                "a head block needs an adaLN gate".into(),
            ));
        };
        let u = modulate(&self.norm.forward(x)?, p)?;
        let ffn = self.down_proj.forward(
            &(candle_nn::ops::silu(&self.gate_proj.forward(&u)?)? * self.up_proj.forward(&u)?)?,
        )?;
        Ok((x + gate.broadcast_mul(&ffn)?)?)
    }
}

/// Final layer: non-affine RMSNorm, modulation, projection to the latent size.
#[derive(Debug, Clone)]
struct FinalLayer {
    linear: Linear,
    /// All-ones weight: the reference's final norm has no weight; the fused kernel needs one.
    unit_norm: RmsNorm,
}

impl FinalLayer {
    fn new(cfg: &DiffusionHeadConfig, vb: VarBuilder, packing: Packing) -> Result<Self> {
        let h = cfg.hidden_size;
        let ones = Tensor::ones(h, DType::F32, vb.device())?;
        Ok(Self {
            linear: linear(&vb.pp("linear"), h, cfg.latent_size, false, packing)?,
            unit_norm: RmsNorm::new(ones, cfg.rms_norm_eps),
        })
    }

    fn forward(&self, x: &Tensor, p: &LayerParams) -> Result<Tensor> {
        let u = modulate(&self.unit_norm.forward(x)?, p)?;
        Ok(self.linear.forward(&u)?)
    }
}

/// The diffusion prediction head (v-prediction), always in f32.
#[derive(Debug, Clone)]
pub struct DiffusionHead {
    noisy_images_proj: Linear,
    cond_proj: Linear,
    t_mlp_in: Linear,
    t_mlp_out: Linear,
    layers: Vec<HeadLayer>,
    final_layer: FinalLayer,
    /// `layers.{i}.adaLN_modulation.1`.
    layer_ada_ln: Vec<AdaLn>,
    /// `final_layer.adaLN_modulation.1`.
    final_ada_ln: AdaLn,
    hidden: usize,
    latent: usize,
    device: Device,
    /// Sampling loops captured as CUDA graphs (see `crate::graphs::sampler`).
    #[cfg(feature = "cuda")]
    graphs: crate::graphs::sampler::GraphCache,
}

impl DiffusionHead {
    /// Loads the head from `vb = root.pp("model.prediction_head")`; weights are converted to
    /// f32 whatever the dtype of `vb`, then the projections stored as `packing` says.
    pub fn new(cfg: &DiffusionHeadConfig, vb: VarBuilder, packing: Packing) -> Result<Self> {
        if cfg.hidden_size == 0 || cfg.latent_size == 0 || cfg.head_layers == 0 {
            return Err(ModelError::InvalidConfig(format!(
                "diffusion head needs positive sizes (hidden {}, latent {}, layers {})",
                cfg.hidden_size, cfg.latent_size, cfg.head_layers
            )));
        }
        let vb = vb.set_dtype(DType::F32);
        let h = cfg.hidden_size;
        let layers = (0..cfg.head_layers)
            .map(|i| HeadLayer::new(cfg, vb.pp(format!("layers.{i}")), packing))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            noisy_images_proj: linear(
                &vb.pp("noisy_images_proj"),
                cfg.latent_size,
                h,
                false,
                packing,
            )?,
            cond_proj: linear(&vb.pp("cond_proj"), h, h, false, packing)?,
            t_mlp_in: linear(
                &vb.pp("t_embedder.mlp.0"),
                TIMESTEP_FEATURES,
                h,
                false,
                packing,
            )?,
            t_mlp_out: linear(&vb.pp("t_embedder.mlp.2"), h, h, false, packing)?,
            layers,
            final_layer: FinalLayer::new(cfg, vb.pp("final_layer"), packing)?,
            layer_ada_ln: (0..cfg.head_layers)
                .map(|i| {
                    let vb = vb.pp(format!("layers.{i}.adaLN_modulation.1"));
                    AdaLn::new(&vb, h, 3, packing)
                })
                .collect::<Result<Vec<_>>>()?,
            final_ada_ln: AdaLn::new(&vb.pp("final_layer.adaLN_modulation.1"), h, 2, packing)?,
            hidden: h,
            latent: cfg.latent_size,
            device: vb.device().clone(),
            #[cfg(feature = "cuda")]
            graphs: crate::graphs::sampler::GraphCache::new("diffusion sampling loop"),
        })
    }

    /// The CUDA graphs captured for this head (shared by its clones).
    #[cfg(feature = "cuda")]
    pub(crate) fn graphs(&self) -> &crate::graphs::sampler::GraphCache {
        &self.graphs
    }

    /// Width of the head and of its condition input.
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Size of the latent it denoises.
    pub fn latent_size(&self) -> usize {
        self.latent
    }

    /// Device holding the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Casts an input to f32 on the head's device.
    fn prepare(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.to_device(&self.device)?.to_dtype(DType::F32)?)
    }

    /// `cond_proj(c_in)` for conditions `[B, H]` (any dtype); constant over the steps of a frame.
    pub fn condition(&self, c_in: &Tensor) -> Result<Tensor> {
        Ok(self.cond_proj.forward(&self.prepare(c_in)?)?)
    }

    /// The sinusoidal features of `t` as a `[B, 256]` f32 tensor on the head's device.
    pub fn timestep_feature_tensor(&self, t: &[f32]) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            timestep_features(t),
            (t.len(), TIMESTEP_FEATURES),
            &self.device,
        )?)
    }

    /// `temb = mlp.2(SiLU(mlp.0(features(t))))`, `[B, H]`; depends only on t, so a sampler
    /// computes it once per schedule.
    pub fn timestep_embedding(&self, t: &[f32]) -> Result<Tensor> {
        self.embed_features(&self.timestep_feature_tensor(t)?)
    }

    fn embed_features(&self, features: &Tensor) -> Result<Tensor> {
        let hidden = candle_nn::ops::silu(&self.t_mlp_in.forward(features)?)?;
        Ok(self.t_mlp_out.forward(&hidden)?)
    }

    /// The adaLN parameters of every layer for combined conditions `c = cond_proj + temb`,
    /// `[N, H]` (for a sampler: every solver step's rows of a frame at once).
    pub fn modulation(&self, c: &Tensor) -> Result<Modulation> {
        Modulation::new(&self.layer_ada_ln, &self.final_ada_ln, c)
    }

    /// The v prediction for noisy latents `x_t [B, latent]` under the adaLN parameters of
    /// their rows ([`Self::modulation`], then [`Modulation::rows`]).
    pub fn forward_modulated(&self, x_t: &Tensor, m: &Modulation) -> Result<Tensor> {
        self.run(&self.prepare(x_t)?, m, None)
    }

    /// The v prediction for `x_t [B, latent]`, timesteps `t` (B values, raw scheduler
    /// timesteps such as 999) and conditions `c_in [B, H]`.
    pub fn forward(&self, x_t: &Tensor, t: &[f32], c_in: &Tensor) -> Result<Tensor> {
        let c = (self.condition(c_in)? + self.timestep_embedding(t)?)?;
        self.forward_modulated(x_t, &self.modulation(&c)?)
    }

    /// Like [`Self::forward`], also returning every intermediate under its golden `debug.*`
    /// name (without the prefix): `t_freq`, `t_emb`, `cond_proj`, `c`, then the
    /// [`TracePoint`]s in execution order.
    pub fn forward_traced(
        &self,
        x_t: &Tensor,
        t: &[f32],
        c_in: &Tensor,
    ) -> Result<(Tensor, Vec<(String, Tensor)>)> {
        let t_freq = self.timestep_feature_tensor(t)?;
        let t_emb = self.embed_features(&t_freq)?;
        let cond = self.condition(c_in)?;
        let c = (&cond + &t_emb)?;
        let mut trace = vec![
            ("t_freq".to_string(), t_freq),
            ("t_emb".to_string(), t_emb),
            ("cond_proj".to_string(), cond),
            ("c".to_string(), c.clone()),
        ];
        let mut record =
            |point: TracePoint, value: &Tensor| trace.push((point.name(), value.clone()));
        let m = self.modulation(&c)?;
        let out = self.run(&self.prepare(x_t)?, &m, Some(&mut record))?;
        Ok((out, trace))
    }

    /// Everything from the combined condition `c` on; `observe` sees each [`TracePoint`].
    fn run(&self, x_t: &Tensor, m: &Modulation, mut observe: Observer) -> Result<Tensor> {
        if m.blocks.len() != self.layers.len() {
            return Err(ModelError::InvalidInput(format!(
                "modulation for {} layers, the head has {}",
                m.blocks.len(),
                self.layers.len()
            )));
        }
        let mut x = self.noisy_images_proj.forward(x_t)?;
        if let Some(observe) = observe.as_mut() {
            observe(TracePoint::XProj, &x);
        }
        for (i, (layer, p)) in self.layers.iter().zip(&m.blocks).enumerate() {
            if let Some(observe) = observe.as_mut() {
                observe(TracePoint::LayerAdaln(i), &p.concatenated()?);
            }
            x = layer.forward(&x, p)?;
            if let Some(observe) = observe.as_mut() {
                observe(TracePoint::LayerOut(i), &x);
            }
        }
        if let Some(observe) = observe.as_mut() {
            observe(TracePoint::FinalAdaln, &m.last.concatenated()?);
        }
        self.final_layer.forward(&x, &m.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequency_table_starts_at_one_and_decays_to_max_period() {
        let f = timestep_frequencies();
        assert_eq!(f.len(), 128);
        assert_eq!(f[0], 1.0);
        // f_127 = 10000^(-127/128) ~ 1.0746e-4
        assert!((f64::from(f[127]) - 10_000f64.powf(-127.0 / 128.0)).abs() < 1e-9);
        assert!(f.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn features_are_cos_then_sin() {
        let v = timestep_features(&[0.0, 1.0]);
        assert_eq!(v.len(), 512);
        assert!(v[..128].iter().all(|&c| c == 1.0));
        assert!(v[128..256].iter().all(|&s| s == 0.0));
        assert!((v[256] - 1f32.cos()).abs() < 1e-7);
        assert!((v[384] - 1f32.sin()).abs() < 1e-7);
    }
}
