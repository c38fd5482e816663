//! Proptest strategies shared by the parsers' fuzz-style property tests (test builds only).

use proptest::prelude::*;
use serde_json::Value;

/// Cases per fuzz-style property: the floor for structured fuzzing.
pub const FUZZ_CASES: u32 = 10_000;

/// Any JSON value, up to three levels deep.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object with some of `fields` (any values) and, when `kind` gives one, a `type`.
pub fn object_with(
    kind: impl Strategy<Value = Option<Value>>,
    fields: &'static [&'static str],
) -> impl Strategy<Value = Value> {
    let names = prop::sample::select(fields);
    (kind, prop::collection::btree_map(names, json_value(), 0..6)).prop_map(|(kind, fields)| {
        let mut obj: serde_json::Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        if let Some(kind) = kind {
            obj.insert("type".into(), kind);
        }
        Value::Object(obj)
    })
}
