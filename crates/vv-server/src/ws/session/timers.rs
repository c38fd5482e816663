//! Idle timeouts (session: fatal 4408; context: closed with a warning) and draining.

use std::fmt::Display;
use std::time::Instant;

use futures::Sink;

use super::{Flow, Session, CONTEXT_IDLE, SHUTTING_DOWN};
use crate::ws::error::WsError;
use crate::ws::events::ServerEvent;
use crate::ws::transport::Outgoing;

impl<Tx> Session<Tx>
where
    Tx: Sink<Outgoing> + Unpin,
    Tx::Error: Display,
{
    pub(super) async fn on_timer(&mut self) -> Flow {
        let now = Instant::now();
        if now >= self.last_activity + self.session_idle() {
            let secs = self.limits.session_idle_timeout_secs;
            return self.report(None, WsError::IdleTimeout { secs }).await;
        }
        let context_idle = self.context_idle();
        let expired: Vec<String> = self
            .contexts
            .iter()
            .filter(|(_, c)| c.idle_deadline(context_idle).is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let message = format!(
                "no speech synthesised for {} s: the context was closed",
                context_idle.as_secs()
            );
            self.event(ServerEvent::warning(Some(&id), CONTEXT_IDLE, message))
                .await?;
            self.close_context(&id).await?;
        }
        Ok(())
    }

    pub(super) async fn close_context(&mut self, id: &str) -> Flow {
        let emits = match self.contexts.get_mut(id) {
            Some(context) => context.close(&self.engine),
            None => return Ok(()),
        };
        self.apply(id, emits).await
    }

    /// Stops taking new contexts and closes the open ones; once they are done the session
    /// closes with 1001.
    pub(super) async fn start_draining(&mut self) -> Flow {
        self.draining = true;
        if self.contexts.is_empty() {
            return Ok(());
        }
        let message =
            "the server is shutting down: open contexts are closed and finish their audio";
        self.event(ServerEvent::warning(None, SHUTTING_DOWN, message))
            .await?;
        let ids: Vec<String> = self.contexts.keys().cloned().collect();
        for id in ids {
            self.close_context(&id).await?;
        }
        Ok(())
    }
}
