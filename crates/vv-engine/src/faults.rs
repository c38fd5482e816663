//! The fault seam of the model thread: hooks called before each command and each step.
//! Engines serve with [`NoFaults`]; tests pass their own [`Faults`] (through
//! `start_engine_with_faults`) to make the thread panic, hang or fail like a broken device.

/// Where the model thread lets a test inject a fault. Both hooks run inside the thread's
/// panic guards.
pub trait Faults: Send + Sync {
    /// Called before a command is handled (may panic or block).
    fn command(&self) {}
    /// Called before each step of the utterances; an error fails the step as the model's
    /// own error would (may also panic or block).
    fn step(&self) -> vv_model::Result<()> {
        Ok(())
    }
}

/// No faults: what a serving engine uses.
pub struct NoFaults;

impl Faults for NoFaults {}
