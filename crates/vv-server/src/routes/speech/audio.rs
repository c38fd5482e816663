//! One utterance as a stream of encoded audio chunks: every decoded frame is encoded and
//! handed to the response as soon as it arrives. Dropping the stream (the client went away)
//! drops the utterance handle, which cancels the utterance and frees its slot.

use std::sync::Arc;

use axum::body::Bytes;
use futures::Stream;
use tracing::debug;
use vv_audio::AudioEncoder;
use vv_engine::{UtteranceEvent, UtteranceHandle};

use crate::error::ApiError;
use crate::metrics::{ContextRecorder, Metrics, Outcome};

/// Encoded audio of one utterance, read chunk by chunk.
pub struct AudioChunks {
    utterance: UtteranceHandle,
    encoder: Box<dyn AudioEncoder>,
    recorder: Option<ContextRecorder>,
    metrics: Arc<Metrics>,
    first: Option<Bytes>,
    ended: bool,
}

impl AudioChunks {
    /// Waits for the first chunk (or the end), so that a failure before any audio becomes an
    /// ordinary error response instead of a broken stream.
    pub async fn start(
        utterance: UtteranceHandle,
        encoder: Box<dyn AudioEncoder>,
        recorder: ContextRecorder,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ApiError> {
        let mut chunks = Self {
            utterance,
            encoder,
            recorder: Some(recorder),
            metrics,
            first: None,
            ended: false,
        };
        chunks.first = chunks.next_chunk().await.transpose()?;
        Ok(chunks)
    }

    /// The next non-empty chunk; `None` after the last one.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, ApiError>> {
        while !self.ended {
            let event = self.utterance.next_event().await;
            let result = match event {
                Some(UtteranceEvent::Audio { samples, .. }) => {
                    if let Some(r) = self.recorder.as_mut() {
                        r.audio(samples.len());
                    }
                    self.encoder.push(&samples).map_err(ApiError::from)
                }
                Some(UtteranceEvent::Warning { code, message }) => {
                    debug!(code, "utterance warning: {message}");
                    continue;
                }
                Some(UtteranceEvent::Finished { reason, frames }) => {
                    debug!(?reason, frames, "utterance finished");
                    // Done once the last bytes are taken (the next poll, below).
                    self.ended = true;
                    self.encoder.finish().map_err(ApiError::from)
                }
                Some(UtteranceEvent::Cancelled { .. }) => Err(ApiError::Cancelled),
                Some(UtteranceEvent::Failed(e)) => Err(ApiError::from(e)),
                None => Err(ApiError::EngineUnavailable),
            };
            match result {
                Ok(bytes) if bytes.is_empty() => {}
                Ok(bytes) => return Some(Ok(Bytes::from(bytes))),
                Err(e) => {
                    let outcome = if e == ApiError::Cancelled {
                        Outcome::Cancelled
                    } else {
                        Outcome::Failed
                    };
                    self.end(outcome);
                    return Some(Err(e));
                }
            }
        }
        self.end(Outcome::Done);
        None
    }

    fn end(&mut self, outcome: Outcome) {
        self.ended = true;
        if let Some(r) = self.recorder.take() {
            r.finish(outcome);
        }
    }

    /// The chunks as a stream. Errors after the first chunk are counted in `errors_total`
    /// here (the response status was already sent).
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, ApiError>> + Send + 'static {
        futures::stream::unfold(self, |mut s| async move {
            let item = match s.first.take() {
                Some(first) => Ok(first),
                None => s.next_chunk().await?,
            };
            match &item {
                Ok(_) => {
                    if let Some(r) = s.recorder.as_mut() {
                        r.audio_written();
                    }
                }
                Err(e) => s.metrics.record_error(e.code()),
            }
            Some((item, s))
        })
    }
}
