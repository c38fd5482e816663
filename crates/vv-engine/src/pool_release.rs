//! Device memory given back while the engine serves: on CUDA, at most once per
//! [`RELEASE_EVERY`], the stream-ordered pool's free memory beyond [`POOL_SLACK`] over what is
//! in use goes back to the driver. Caches grow and are freed as utterances come and go, and
//! the pool otherwise keeps its high-water mark for good (1.4 GiB above its use after 20 s of
//! 128 streams on an H100, docs/benchmarks.md "Session 10"); the slack it keeps serves the
//! next allocations without new mappings, and graphs are not touched (their memory stays
//! mapped, so no round pays for mapping it again).

use std::time::{Duration, Instant};

use candle_core::Device;
use tracing::debug;

/// How often the pool's free memory is looked at.
pub(crate) const RELEASE_EVERY: Duration = Duration::from_secs(1);
/// Free memory the pool keeps beyond what is in use.
pub(crate) const POOL_SLACK: u64 = 512 << 20;

/// When the pool was last looked at.
pub(crate) struct PoolRelease {
    last: Instant,
}

impl PoolRelease {
    pub(crate) fn new() -> Self {
        Self {
            last: Instant::now(),
        }
    }

    /// Gives back the pool's free memory beyond the slack, when [`RELEASE_EVERY`] has passed
    /// (CUDA only; nothing on other devices).
    pub(crate) fn tick(&mut self, device: &Device) {
        if !device.is_cuda() || self.last.elapsed() < RELEASE_EVERY {
            return;
        }
        self.last = Instant::now();
        if let Some((before, after)) = vv_device::ops::release_pool_slack(device, POOL_SLACK) {
            debug!(
                before_mib = before >> 20,
                after_mib = after >> 20,
                "gave back the CUDA pool's free memory"
            );
        }
    }
}
