//! Sending: events, audio frames and close frames, each bounded by the idle timeout; error
//! reporting (fatal errors close the session); what context operations ask to emit.

use std::fmt::Display;
use std::time::Instant;

use futures::{Sink, SinkExt};
use tracing::{debug, warn};

use super::{Ended, Flow, Session};
use crate::metrics::Outcome;
use crate::ws::close_code::CloseCode;
use crate::ws::context::Emit;
use crate::ws::error::WsError;
use crate::ws::events::ServerEvent;
use crate::ws::transport::Outgoing;

impl<Tx> Session<Tx>
where
    Tx: Sink<Outgoing> + Unpin,
    Tx::Error: Display,
{
    pub(super) async fn send(&mut self, message: Outgoing) -> Flow {
        match tokio::time::timeout(self.session_idle(), self.out.send(message)).await {
            Ok(Ok(())) => {
                self.last_activity = Instant::now();
                Ok(())
            }
            Ok(Err(e)) => {
                debug!("client gone while sending: {e}");
                Err(Ended::ClientLeft)
            }
            Err(_) => {
                warn!("the client stopped reading; ending the session");
                Err(Ended::ClientLeft)
            }
        }
    }

    pub(super) async fn event(&mut self, event: ServerEvent) -> Flow {
        self.send(Outgoing::Text(event.to_json())).await
    }

    /// Sends an `error` event (counted in `errors_total`); a fatal error closes the session.
    pub(super) async fn report(&mut self, context_id: Option<&str>, error: WsError) -> Flow {
        self.state.metrics().record_error(error.code());
        debug!(code = error.code(), context_id, "protocol error: {error}");
        self.event(ServerEvent::error(context_id, &error)).await?;
        match error.close_code() {
            Some(code) => {
                self.close(code).await;
                Err(Ended::Closed)
            }
            None => Ok(()),
        }
    }

    pub(super) async fn close(&mut self, code: CloseCode) {
        let frame = Outgoing::Close {
            code: code.code(),
            reason: code.reason().to_string(),
        };
        let _ = self.send(frame).await;
    }

    /// Sends what an operation on context `id` asks for.
    pub(super) async fn apply(&mut self, id: &str, emits: Vec<Emit>) -> Flow {
        for emit in emits {
            match emit {
                Emit::Flushed => {
                    let context_id = id.to_string();
                    self.event(ServerEvent::Flushed { context_id }).await?;
                }
                Emit::Done => {
                    if let Some(context) = self.contexts.remove(id) {
                        self.event(context.done()).await?;
                    }
                }
                Emit::Error(e) => self.report(Some(id), e).await?,
            }
        }
        Ok(())
    }

    /// Forgets context `id` after `error` and reports it.
    pub(super) async fn abort(&mut self, id: &str, error: WsError) -> Flow {
        if let Some(context) = self.contexts.remove(id) {
            let outcome = match error {
                WsError::SynthesisCancelled => Outcome::Cancelled,
                _ => Outcome::Failed,
            };
            context.abort(outcome);
        }
        self.report(Some(id), error).await
    }
}
