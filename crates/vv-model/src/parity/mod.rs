//! Parity checks against golden fixture directories produced by the reference implementation.
//!
//! Each component has a `check` function that runs our implementation on a golden file's
//! inputs and reports the error of every output tensor. Tests assert on the reports and
//! `vibevoice-rt check-fixture` prints them, so both use exactly the same comparison.

pub mod acoustic_decoder;
mod all;
pub mod batching;
mod compare;
pub mod connector_eos;
pub mod diffusion_head;
pub mod end_to_end;
mod fixture_dir;
mod golden;
pub mod lm;
pub mod scheduler;

pub use all::check_all;
pub use compare::{max_abs_diff, relative_error, TensorReport};
pub use fixture_dir::FixtureDir;
pub use golden::GoldenFile;
