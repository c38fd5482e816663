//! Engine events of a context: audio frames (after the timestamps of the words they end),
//! warnings, the end of a segment, failures.

use std::fmt::Display;

use futures::Sink;
use vv_engine::UtteranceEvent;

use super::{Flow, Session};
use crate::ws::context::SegmentEnd;
use crate::ws::error::WsError;
use crate::ws::events::ServerEvent;
use crate::ws::transport::Outgoing;

impl<Tx> Session<Tx>
where
    Tx: Sink<Outgoing> + Unpin,
    Tx::Error: Display,
{
    pub(super) async fn on_engine(&mut self, id: &str, event: Option<UtteranceEvent>) -> Flow {
        let Some(context) = self.contexts.get_mut(id) else {
            return Ok(());
        };
        match event {
            Some(UtteranceEvent::Audio {
                samples,
                text_tokens,
                ..
            }) => match context.audio_frame(&samples) {
                Ok(frame) => {
                    if let Some(words) = context.frame_words(text_tokens, samples.len()) {
                        self.event(words).await?;
                    }
                    self.send(Outgoing::Binary(frame)).await?;
                    if let Some(context) = self.contexts.get_mut(id) {
                        context.audio_written();
                    }
                    Ok(())
                }
                Err(e) => self.abort(id, e).await,
            },
            Some(UtteranceEvent::Warning { code, message }) => {
                self.event(ServerEvent::warning(Some(id), code, message))
                    .await
            }
            Some(UtteranceEvent::Finished { .. }) => match context.segment_finished(&self.engine) {
                Ok(SegmentEnd { words, tail, emits }) => {
                    if let Some(words) = words {
                        self.event(words).await?;
                    }
                    if let Some(frame) = tail {
                        self.send(Outgoing::Binary(frame)).await?;
                    }
                    self.apply(id, emits).await
                }
                Err(e) => self.abort(id, e).await,
            },
            Some(UtteranceEvent::Cancelled { .. }) => {
                self.abort(id, WsError::SynthesisCancelled).await
            }
            Some(UtteranceEvent::Failed(e)) => self.abort(id, e.into()).await,
            None => self.abort(id, WsError::EngineUnavailable).await,
        }
    }
}
