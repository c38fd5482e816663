//! A weight source that invents every tensor the model asks for: random values of the asked
//! shape, scaled like a trained network (norm weights near one, linear weights ~ 1/sqrt(fan_in)),
//! so the real 0.5B architecture can be built and timed without downloading the checkpoint.

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// Random weights of whatever shape is asked for: from the thread's generator by default, or,
/// [`RandomInit::seeded`], the same values for the same seed and tensor name on every run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomInit {
    seed: Option<u64>,
}

/// How one tensor is filled.
enum Fill {
    Constant(f32),
    Normal(f32),
}

impl RandomInit {
    /// Values that depend only on `seed` and each tensor's name and shape (comparisons of
    /// models built twice, e.g. with and without packed weights).
    pub fn seeded(seed: u64) -> Self {
        Self { seed: Some(seed) }
    }

    fn normal(&self, std: f32, s: Shape, name: &str, dev: &Device) -> Result<Tensor> {
        let Some(seed) = self.seed else {
            return Tensor::randn(0f32, std, s, dev);
        };
        // FNV-1a of the name: stable across platforms and releases.
        let name_hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let mut rng = StdRng::seed_from_u64(seed ^ name_hash);
        let normal = Normal::new(0f32, std).map_err(candle_core::Error::wrap)?;
        let values: Vec<f32> = (0..s.elem_count())
            .map(|_| normal.sample(&mut rng))
            .collect();
        Tensor::from_vec(values, s, dev)
    }

    fn fill_for(name: &str, shape: &Shape) -> Fill {
        if name.ends_with("speech_scaling_factor") {
            return Fill::Constant(0.2334);
        }
        if name.ends_with("speech_bias_factor") {
            return Fill::Constant(-0.0703);
        }
        if name.ends_with("gamma") {
            return Fill::Constant(0.01);
        }
        if name.contains("norm") {
            return Fill::Constant(1.0);
        }
        let dims = shape.dims();
        let fan_in = match dims {
            [_, fan_in] => *fan_in,
            [_, c, k] => c * k,
            _ => dims.last().copied().unwrap_or(1),
        };
        Fill::Normal(1.0 / (fan_in.max(1) as f32).sqrt())
    }
}

impl SimpleBackend for RandomInit {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let t = match Self::fill_for(name, &s) {
            Fill::Constant(v) => Tensor::full(v, s, dev)?,
            Fill::Normal(std) => self.normal(std, s, name, dev)?,
        };
        t.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.get(
            Shape::from(()),
            name,
            candle_nn::Init::Const(0.),
            dtype,
            dev,
        )
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(init: RandomInit, name: &str) -> Vec<f32> {
        let t = init
            .get(
                (8, 16).into(),
                name,
                candle_nn::Init::Const(0.),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn seeded_values_depend_only_on_the_seed_and_the_name() {
        let a = draw(RandomInit::seeded(3), "layers.0.w");
        assert_eq!(a, draw(RandomInit::seeded(3), "layers.0.w"));
        assert_ne!(a, draw(RandomInit::seeded(4), "layers.0.w"));
        assert_ne!(a, draw(RandomInit::seeded(3), "layers.1.w"));
        // Scaled like a trained layer: std 1/sqrt(fan_in) = 0.25.
        let var = a.iter().map(|v| v * v).sum::<f32>() / a.len() as f32;
        assert!((0.03..0.1).contains(&var), "variance {var}");
    }
}
