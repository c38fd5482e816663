//! A weight source that invents every tensor the model asks for: random values of the asked
//! shape, scaled like a trained network (norm weights near one, linear weights ~ 1/sqrt(fan_in)),
//! so the real 0.5B architecture can be built and timed without downloading the checkpoint.

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

/// Random weights of whatever shape is asked for.
pub struct RandomInit;

impl RandomInit {
    fn std_for(name: &str, shape: &Shape) -> Option<f64> {
        let dims = shape.dims();
        if name.ends_with("speech_scaling_factor") || name.ends_with("speech_bias_factor") {
            return None;
        }
        if name.contains("norm") || name.ends_with("gamma") {
            return Some(0.0);
        }
        let fan_in = match dims {
            [_, fan_in] => *fan_in,
            [_, c, k] => c * k,
            _ => dims.last().copied().unwrap_or(1),
        };
        Some(1.0 / (fan_in.max(1) as f64).sqrt())
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
        let t = match Self::std_for(name, &s) {
            None if name.ends_with("speech_scaling_factor") => Tensor::full(0.2334f32, s, dev)?,
            None => Tensor::full(-0.0703f32, s, dev)?,
            Some(std) if std == 0.0 && name.ends_with("gamma") => Tensor::full(0.01f32, s, dev)?,
            Some(std) if std == 0.0 => Tensor::ones(s, DType::F32, dev)?,
            Some(std) => Tensor::randn(0f32, std as f32, s, dev)?,
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
