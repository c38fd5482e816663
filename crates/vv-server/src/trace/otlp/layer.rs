//! The collecting layer: an `utterance` span's start (its `start_unix_nano` field when set,
//! else its creation), end, fields and events (named by their `stage` field, timed by their
//! `at_unix_nano` field when set) become one [`SpanRecord`], queued when the span closes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::Sender;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::trace::UTTERANCE_SPAN;

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// One event of a span.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub name: String,
    pub time_unix_nano: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub name: &'static str,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    pub events: Vec<EventRecord>,
}

impl SpanRecord {
    /// The string value of attribute `key`.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find_map(|(k, v)| match v {
            AttrValue::Str(s) if *k == key => Some(s.as_str()),
            _ => None,
        })
    }
}

fn now_unix_nano() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

/// Collects fields; `time_field` (when recorded as an integer) sets `time` instead.
struct Fields<'a> {
    attributes: &'a mut Vec<(&'static str, AttrValue)>,
    time_field: &'static str,
    time: Option<u64>,
}

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: AttrValue) {
        match self.attributes.iter_mut().find(|(k, _)| *k == field.name()) {
            Some((_, v)) => *v = value,
            None => self.attributes.push((field.name(), value)),
        }
    }
}

impl Visit for Fields<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == self.time_field {
            self.time = Some(value);
        } else {
            self.put(
                field,
                AttrValue::Int(i64::try_from(value).unwrap_or(i64::MAX)),
            );
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, AttrValue::Int(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, AttrValue::Float(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, AttrValue::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, AttrValue::Str(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, AttrValue::Str(format!("{value:?}")));
    }
}

/// The layer (see the module documentation).
pub struct OtlpLayer {
    queue: Sender<SpanRecord>,
    dropped: Arc<AtomicU64>,
}

impl OtlpLayer {
    /// Queues finished spans on `queue`, counting those it had no room for in `dropped`.
    pub fn new(queue: Sender<SpanRecord>, dropped: Arc<AtomicU64>) -> Self {
        Self { queue, dropped }
    }
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != UTTERANCE_SPAN {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut attributes = Vec::new();
        let mut fields = Fields {
            attributes: &mut attributes,
            time_field: "start_unix_nano",
            time: None,
        };
        attrs.record(&mut fields);
        let start_unix_nano = fields.time.unwrap_or_else(now_unix_nano);
        span.extensions_mut().insert(SpanRecord {
            name: UTTERANCE_SPAN,
            start_unix_nano,
            end_unix_nano: 0,
            attributes,
            events: Vec::new(),
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(record) = extensions.get_mut::<SpanRecord>() {
            values.record(&mut Fields {
                attributes: &mut record.attributes,
                time_field: "start_unix_nano",
                time: None,
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        let Some(record) = extensions.get_mut::<SpanRecord>() else {
            return;
        };
        let mut attributes = Vec::new();
        let mut fields = Fields {
            attributes: &mut attributes,
            time_field: "at_unix_nano",
            time: None,
        };
        event.record(&mut fields);
        let time_unix_nano = fields.time.unwrap_or_else(now_unix_nano);
        let name = ["stage", "message"]
            .iter()
            .find_map(|key| {
                attributes.iter().find_map(|(k, v)| match v {
                    AttrValue::Str(s) if k == key => Some(s.clone()),
                    _ => None,
                })
            })
            .unwrap_or_else(|| event.metadata().name().to_string());
        record.events.push(EventRecord {
            name,
            time_unix_nano,
            attributes,
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(mut record) = span.extensions_mut().remove::<SpanRecord>() else {
            return;
        };
        record.end_unix_nano = now_unix_nano().max(record.start_unix_nano);
        if self.queue.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::{debug, info_span};
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn utterance_spans_are_collected_with_their_events_and_a_full_queue_drops() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let dropped = Arc::new(AtomicU64::new(0));
        let subscriber =
            tracing_subscriber::registry().with(OtlpLayer::new(tx, Arc::clone(&dropped)));
        tracing::subscriber::with_default(subscriber, || {
            for n in 0..2u64 {
                let span = info_span!(
                    "utterance",
                    request_id = "r-1",
                    outcome = tracing::field::Empty,
                    start_unix_nano = 5u64
                );
                span.record("outcome", "done");
                debug!(parent: &span, stage = "admitted", at_unix_nano = 7u64 + n, "stage");
                let _ = info_span!("other");
            }
        });
        let record = rx.try_recv().unwrap();
        assert_eq!(dropped.load(Ordering::Relaxed), 1);
        assert_eq!(record.attribute("request_id"), Some("r-1"));
        assert_eq!(record.attribute("outcome"), Some("done"));
        assert_eq!(record.start_unix_nano, 5);
        assert!(record.end_unix_nano > 5);
        assert_eq!(record.events.len(), 1);
        assert_eq!(record.events[0].name, "admitted");
        assert_eq!(record.events[0].time_unix_nano, 7);
        assert!(rx.try_recv().is_err());
    }
}
