//! When an utterance reached the stages its client cannot see: admitted (a slot taken), its
//! first text window run and its first frame decoded. The model thread stamps the later two
//! before it queues the first audio event, so a client that read that event sees them set.

use std::sync::OnceLock;
use std::time::Instant;

/// The stage instants of one utterance, shared by its handle and the model thread.
#[derive(Debug)]
pub struct StageTimes {
    admitted: Instant,
    first_window: OnceLock<Instant>,
    first_frame: OnceLock<Instant>,
}

impl StageTimes {
    /// Stages of an utterance admitted at `admitted`.
    pub fn new(admitted: Instant) -> Self {
        Self {
            admitted,
            first_window: OnceLock::new(),
            first_frame: OnceLock::new(),
        }
    }

    /// When its slot was taken.
    pub fn admitted(&self) -> Instant {
        self.admitted
    }

    /// When the round that ran its first text window (and produced its first frame) began.
    pub fn first_window(&self) -> Option<Instant> {
        self.first_window.get().copied()
    }

    /// When its first frame was decoded.
    pub fn first_frame(&self) -> Option<Instant> {
        self.first_frame.get().copied()
    }

    /// Stamps a decoded frame of a round begun at `round_started` (only the first counts).
    pub fn frame(&self, round_started: Instant) {
        self.first_window.get_or_init(|| round_started);
        self.first_frame.get_or_init(Instant::now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_frame_is_kept() {
        let admitted = Instant::now();
        let stages = StageTimes::new(admitted);
        assert_eq!(stages.first_window(), None);
        assert_eq!(stages.first_frame(), None);
        let round = Instant::now();
        stages.frame(round);
        let (window, frame) = (stages.first_window(), stages.first_frame());
        stages.frame(Instant::now());
        assert_eq!(stages.first_window(), Some(round));
        assert_eq!(stages.first_frame(), frame);
        assert!(window.unwrap() <= frame.unwrap() && admitted <= round);
    }
}
