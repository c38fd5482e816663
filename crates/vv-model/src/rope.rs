//! Rotary position embedding in the half-split ("rotate_half") convention, at absolute positions.
//!
//! As in transformers 4.51.3 Qwen2: `inv_freq[j] = θ^(−2j/d_h)` and the angles `p·inv_freq[j]`
//! are computed in f32, then cos/sin are cast to the activation dtype. Dimension `j` pairs with
//! `j + d_h/2` (not interleaved pairs).

use candle_core::{DType, Device, Tensor};

use crate::config::Qwen2Config;
use crate::error::Result;

/// Precomputed cos/sin tables of one head width, shared by every layer of a stack.
#[derive(Debug, Clone)]
pub struct Rope {
    /// `[max_positions, head_dim / 2]` in the activation dtype.
    cos: Tensor,
    /// Same shape as `cos`.
    sin: Tensor,
    inv_freq: Vec<f32>,
}

impl Rope {
    /// Tables for positions `0..max_positions`; later positions are computed on demand.
    pub fn new(
        head_dim: usize,
        theta: f64,
        max_positions: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let theta = theta as f32;
        let inv_freq: Vec<f32> = (0..head_dim / 2)
            .map(|j| 1.0 / theta.powf((2 * j) as f32 / head_dim as f32))
            .collect();
        let (cos, sin) = tables(&inv_freq, 0, max_positions, dtype, device)?;
        Ok(Self { cos, sin, inv_freq })
    }

    /// Tables for a Qwen2 config (`head_dim`, `rope_theta`, `max_position_embeddings`).
    pub fn from_config(cfg: &Qwen2Config, dtype: DType, device: &Device) -> Result<Self> {
        Self::new(
            cfg.head_dim(),
            cfg.rope_theta,
            cfg.max_position_embeddings,
            dtype,
            device,
        )
    }

    /// cos and sin for positions `start..start + n`, each `[n, head_dim / 2]`, contiguous.
    pub fn cos_sin(&self, start: usize, n: usize) -> Result<(Tensor, Tensor)> {
        if start + n <= self.cos.dim(0)? {
            Ok((self.cos.narrow(0, start, n)?, self.sin.narrow(0, start, n)?))
        } else {
            tables(
                &self.inv_freq,
                start,
                n,
                self.cos.dtype(),
                self.cos.device(),
            )
        }
    }

    /// The whole cos and sin tables `[max_positions, head_dim / 2]` (fused kernels index them
    /// by position; later positions are not in them).
    #[cfg(feature = "cuda")]
    pub(crate) fn tables(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
    }

    /// Rotates `x` (`[n, heads, head_dim]`, row `i` at the position of `cos`/`sin` row `i`).
    pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let (n, heads, head_dim) = x.dims3()?;
        let x = x.contiguous()?.reshape((1, n, heads, head_dim))?;
        Ok(candle_nn::rotary_emb::rope_thd(&x, cos, sin)?.reshape((n, heads, head_dim))?)
    }
}

/// cos/sin of `p·inv_freq[j]` for `p` in `start..start + n`, computed in f32 then cast.
fn tables(
    inv_freq: &[f32],
    start: usize,
    n: usize,
    dtype: DType,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = inv_freq.len();
    let angles: Vec<f32> = (start..start + n)
        .flat_map(|p| inv_freq.iter().map(move |f| p as f32 * f))
        .collect();
    let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
    let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
    let cos = Tensor::from_vec(cos, (n, half), device)?.to_dtype(dtype)?;
    let sin = Tensor::from_vec(sin, (n, half), device)?.to_dtype(dtype)?;
    Ok((cos, sin))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct formula of the spec: rot(u) = u ⊙ cos + rh(u) ⊙ sin, rh(u) = [−u_hi, u_lo].
    fn reference(u: &[f32], p: usize, theta: f32) -> Vec<f32> {
        let d = u.len();
        let h = d / 2;
        (0..d)
            .map(|i| {
                let j = i % h;
                let a = p as f32 * theta.powf(-((2 * j) as f32) / d as f32);
                let rh = if i < h { -u[i + h] } else { u[i - h] };
                u[i] * a.cos() + rh * a.sin()
            })
            .collect()
    }

    #[test]
    fn matches_the_half_split_formula_at_any_position() {
        let (d, heads, theta) = (8, 3, 1e4f32);
        let rope = Rope::new(d, theta as f64, 16, DType::F32, &Device::Cpu).unwrap();
        let data: Vec<f32> = (0..2 * heads * d)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let x = Tensor::from_vec(data.clone(), (2, heads, d), &Device::Cpu).unwrap();
        // Positions 14, 15 come from the table, 20, 21 are computed on demand.
        for start in [14usize, 20] {
            let (cos, sin) = rope.cos_sin(start, 2).unwrap();
            let got = Rope::apply(&x, &cos, &sin).unwrap();
            let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
            for (row, chunk) in data.chunks(d).enumerate() {
                let want = reference(chunk, start + row / heads, theta);
                for (g, w) in got[row * d..(row + 1) * d].iter().zip(&want) {
                    assert!((g - w).abs() < 1e-5, "pos {start}: {g} vs {w}");
                }
            }
        }
    }
}
