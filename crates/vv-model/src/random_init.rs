//! A weight source that invents every tensor the model asks for: random values of the asked
//! shape, scaled like a trained network (norm weights near one, linear weights ~ 1/sqrt(fan_in)),
//! so the real 0.5B architecture can be built and timed without downloading the checkpoint.

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

/// Random weights of whatever shape is asked for.
pub struct RandomInit;

/// How one tensor is filled.
enum Fill {
    Constant(f32),
    Normal(f32),
}

impl RandomInit {
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
            Fill::Normal(std) => Tensor::randn(0f32, std, s, dev)?,
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
