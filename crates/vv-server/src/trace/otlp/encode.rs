//! The OTLP JSON encoding of an `ExportTraceServiceRequest`: one resource (the service), one
//! scope, the spans with hex ids, times as decimal strings and typed attribute values. A span
//! whose `request_id` is 32 hex digits (the generated form) uses it as its trace id, so a
//! trace is found by the id a client saw; other spans get a random trace id.

use serde_json::{json, Value};

use super::layer::{AttrValue, SpanRecord};

/// `service.name` of the exported resource.
pub const SERVICE_NAME: &str = "vibevoice-rt";
/// `SPAN_KIND_INTERNAL`.
const KIND_INTERNAL: u8 = 1;

fn value(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => json!({ "stringValue": s }),
        AttrValue::Int(i) => json!({ "intValue": i.to_string() }),
        AttrValue::Float(f) => json!({ "doubleValue": f }),
        AttrValue::Bool(b) => json!({ "boolValue": b }),
    }
}

fn attributes(list: &[(&'static str, AttrValue)]) -> Value {
    list.iter()
        .map(|(k, v)| json!({ "key": k, "value": value(v) }))
        .collect()
}

fn trace_id(span: &SpanRecord) -> String {
    match span.attribute("request_id") {
        Some(id) if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
            id.to_ascii_lowercase()
        }
        _ => format!("{:032x}", rand::random::<u128>().max(1)),
    }
}

fn span(span: &SpanRecord) -> Value {
    let events: Vec<Value> = span
        .events
        .iter()
        .map(|e| {
            json!({
                "timeUnixNano": e.time_unix_nano.to_string(),
                "name": e.name,
                "attributes": attributes(&e.attributes),
            })
        })
        .collect();
    json!({
        "traceId": trace_id(span),
        "spanId": format!("{:016x}", rand::random::<u64>().max(1)),
        "name": span.name,
        "kind": KIND_INTERNAL,
        "startTimeUnixNano": span.start_unix_nano.to_string(),
        "endTimeUnixNano": span.end_unix_nano.to_string(),
        "attributes": attributes(&span.attributes),
        "events": events,
    })
}

/// The request body for `spans`.
pub fn export_request(spans: &[SpanRecord]) -> Value {
    json!({
        "resourceSpans": [{
            "resource": {
                "attributes": [
                    { "key": "service.name", "value": { "stringValue": SERVICE_NAME } },
                    { "key": "service.version", "value": { "stringValue": env!("CARGO_PKG_VERSION") } },
                ]
            },
            "scopeSpans": [{
                "scope": { "name": SERVICE_NAME, "version": env!("CARGO_PKG_VERSION") },
                "spans": spans.iter().map(span).collect::<Vec<_>>(),
            }]
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::otlp::layer::EventRecord;

    #[test]
    fn the_request_has_the_otlp_json_shape() {
        let id = "0123456789abcdef0123456789abcdef";
        let record = SpanRecord {
            name: "utterance",
            start_unix_nano: 10,
            end_unix_nano: 20,
            attributes: vec![
                ("request_id", AttrValue::Str(id.into())),
                ("utterance_id", AttrValue::Int(3)),
            ],
            events: vec![EventRecord {
                name: "admitted".into(),
                time_unix_nano: 12,
                attributes: vec![("since_arrival_ms", AttrValue::Float(0.5))],
            }],
        };
        let body = export_request(&[record]);
        let span = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], id);
        assert_eq!(span["spanId"].as_str().unwrap().len(), 16);
        assert_eq!(span["startTimeUnixNano"], "10");
        assert_eq!(span["endTimeUnixNano"], "20");
        assert_eq!(span["attributes"][1]["value"]["intValue"], "3");
        assert_eq!(span["events"][0]["name"], "admitted");
        assert_eq!(span["events"][0]["timeUnixNano"], "12");
        assert_eq!(
            body["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            SERVICE_NAME
        );
    }
}
