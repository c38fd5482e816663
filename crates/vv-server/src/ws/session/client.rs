//! Client messages: configure, text, flush, close, cancel, keepalive, and what the transport
//! reports (binary messages, oversized or invalid frames).

use std::fmt::Display;
use std::time::Instant;

use futures::Sink;
use tracing::debug;

use super::{Ended, Flow, Session};
use crate::ws::close_code::CloseCode;
use crate::ws::context::Context;
use crate::ws::error::WsError;
use crate::ws::events::ServerEvent;
use crate::ws::messages::{parse, CancelTarget, ClientMessage, Configure};
use crate::ws::session_config::{SessionConfig, CLAMPED};
use crate::ws::transport::{Incoming, Outgoing, TransportFailure};

impl<Tx> Session<Tx>
where
    Tx: Sink<Outgoing> + Unpin,
    Tx::Error: Display,
{
    pub(super) async fn on_client(&mut self, item: Option<Incoming>) -> Flow {
        self.last_activity = Instant::now();
        match item {
            None | Some(Incoming::Close) | Some(Incoming::Failed(TransportFailure::Broken)) => {
                Err(Ended::ClientLeft)
            }
            Some(Incoming::Ping) => Ok(()),
            Some(Incoming::Binary { len }) => {
                debug!(len, "binary message from the client");
                let error = WsError::ProtocolViolation(
                    "binary messages are not part of the protocol; send JSON text messages",
                );
                self.report(None, error).await
            }
            Some(Incoming::Rejected { context_id, error }) => {
                self.report(context_id.as_deref(), error).await
            }
            Some(Incoming::End) => {
                self.close(CloseCode::Normal).await;
                Err(Ended::Closed)
            }
            Some(Incoming::Failed(failure)) => {
                let error = match failure {
                    TransportFailure::TooBig => WsError::MessageTooBig {
                        limit: self.limits.max_message_bytes,
                    },
                    TransportFailure::InvalidUtf8 => WsError::InvalidUtf8,
                    _ => WsError::ProtocolViolation("invalid WebSocket framing"),
                };
                self.report(None, error).await
            }
            Some(Incoming::Text(text)) if text.len() > self.limits.max_message_bytes => {
                let limit = self.limits.max_message_bytes;
                self.report(None, WsError::MessageTooBig { limit }).await
            }
            Some(Incoming::Text(text)) => match parse(&text) {
                Ok(message) => self.on_message(message).await,
                Err(e) => self.report(None, e).await,
            },
        }
    }

    pub(super) async fn on_message(&mut self, message: ClientMessage) -> Flow {
        match message {
            ClientMessage::Configure(request) => self.on_configure(&request).await,
            ClientMessage::Text {
                context_id,
                text,
                flush,
                settings,
            } => self.on_text(&context_id, &text, flush, &settings).await,
            ClientMessage::Flush { context_id } => self.on_flush(&context_id).await,
            ClientMessage::Close { context_id } => self.on_close(&context_id).await,
            ClientMessage::Cancel(target) => self.on_cancel(target).await,
            ClientMessage::Keepalive => Ok(()),
        }
    }

    /// Pushes the text queued during a batch (see `Session::on_arrived`), context by context.
    pub(super) async fn push_batched(&mut self) -> Flow {
        let queued: Vec<String> = (self.contexts.iter())
            .filter(|(_, c)| c.has_queued())
            .map(|(id, _)| id.clone())
            .collect();
        for id in queued {
            if let Some(context) = self.contexts.get_mut(&id) {
                let emits = context.push_queued(&self.engine);
                self.apply(&id, emits).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn on_configure(&mut self, request: &Configure) -> Flow {
        match self.config.configure(request, self.engine.info()) {
            Ok((next, clamped)) => {
                for c in clamped {
                    self.event(ServerEvent::warning(None, CLAMPED, c.message))
                        .await?;
                }
                self.config = next;
                self.event(ServerEvent::SessionConfigured(self.config.clone()))
                    .await
            }
            Err(e) => self.report(None, e).await,
        }
    }

    /// Appends `text` to context `id`; its first text creates it, with `settings` applied
    /// over the session's (clamps are reported as warnings about the context).
    pub(super) async fn on_text(
        &mut self,
        id: &str,
        text: &str,
        flush: bool,
        settings: &Configure,
    ) -> Flow {
        if text.is_empty() {
            return match (flush, self.contexts.contains_key(id)) {
                (true, true) => self.on_flush(id).await,
                _ => self.report(Some(id), WsError::EmptyText).await,
            };
        }
        let created = if self.contexts.contains_key(id) {
            None
        } else {
            let (config, clamped) = match self.config.configure(settings, self.engine.info()) {
                Ok(configured) => configured,
                Err(e) => return self.report(Some(id), e).await,
            };
            match self.open_context(id, text, &config, Instant::now()) {
                Ok(created) => {
                    for c in clamped {
                        self.event(ServerEvent::warning(Some(id), CLAMPED, c.message))
                            .await?;
                    }
                    Some(created)
                }
                Err(e) => return self.report(Some(id), e).await,
            }
        };
        let max = self.limits.max_text_chars;
        // In a batch of arrived messages, later text waits for the batch's end (not a new
        // context's first: first audio starts from it).
        let push = created.is_some() || !self.batching;
        let result = match self.contexts.get_mut(id) {
            Some(context) => context.text(&self.engine, text, max, push),
            None => return Ok(()),
        };
        // The text is with the engine before `context.created` is written.
        if let Some(created) = created {
            self.event(created).await?;
        }
        match result {
            Ok(emits) => self.apply(id, emits).await?,
            Err(e) => self.report(Some(id), e).await?,
        }
        if flush {
            self.on_flush(id).await
        } else {
            Ok(())
        }
    }

    /// Creates context `id` with `config` for its first text; returns its `context.created`
    /// event.
    pub(super) fn open_context(
        &mut self,
        id: &str,
        text: &str,
        config: &SessionConfig,
        now: Instant,
    ) -> Result<ServerEvent, WsError> {
        let max = self.limits.max_text_chars;
        if self.draining {
            return Err(WsError::ShuttingDown);
        }
        if text.chars().count() > max {
            return Err(WsError::TextTooLong { max });
        }
        let max_contexts = self.limits.max_contexts_per_session;
        if self.contexts.len() >= max_contexts {
            return Err(WsError::TooManyContexts { max: max_contexts });
        }
        let context = Context::open(
            id.to_string(),
            self.next_num,
            config,
            &self.engine,
            &self.slots,
            self.state.metrics(),
            now,
        )?;
        self.next_num = self.next_num.wrapping_add(1).max(1);
        let created = context.created_event();
        self.contexts.insert(id.to_string(), context);
        Ok(created)
    }

    pub(super) async fn on_flush(&mut self, id: &str) -> Flow {
        let result = match self.contexts.get_mut(id) {
            Some(context) => context.flush(&self.engine),
            None => Err(WsError::UnknownContext(id.to_string())),
        };
        match result {
            Ok(emits) => self.apply(id, emits).await,
            Err(e) => self.report(Some(id), e).await,
        }
    }

    pub(super) async fn on_close(&mut self, id: &str) -> Flow {
        match self.contexts.get_mut(id) {
            Some(context) => {
                let emits = context.close(&self.engine);
                self.apply(id, emits).await
            }
            None => {
                let error = WsError::UnknownContext(id.to_string());
                self.report(Some(id), error).await
            }
        }
    }

    pub(super) async fn on_cancel(&mut self, target: CancelTarget) -> Flow {
        let ids: Vec<String> = match target {
            CancelTarget::All => self.contexts.keys().cloned().collect(),
            CancelTarget::One(id) if self.contexts.contains_key(&id) => vec![id],
            CancelTarget::One(id) => {
                let error = WsError::UnknownContext(id.clone());
                return self.report(Some(&id), error).await;
            }
        };
        for id in ids {
            if let Some(context) = self.contexts.remove(&id) {
                self.event(context.cancelled()).await?;
            }
        }
        Ok(())
    }
}
