//! Strict JSON parsing of request bodies: like `serde_json::from_slice`, but a duplicate key in any
//! object is an error, and nesting deeper than serde_json's recursion limit (128) is an error rather
//! than a stack overflow.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `bytes` as one JSON value, rejecting duplicate object keys.
pub(crate) fn parse_strict(bytes: &[u8]) -> Result<Value, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize(&mut deserializer).map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    Ok(value.0)
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<StrictValue, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // serde_json never produces a non-finite float from JSON text.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_json_and_keeps_key_order() {
        let value = parse_strict(br#" {"b": 1, "a": [1, {"x": null}], "c": "\u00e9"} "#).unwrap();
        let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["b", "a", "c"]);
    }

    #[test]
    fn rejects_duplicate_keys_at_any_depth() {
        assert!(parse_strict(br#"{"a":1,"a":2}"#).unwrap_err().contains("duplicate key"));
        assert!(parse_strict(br#"{"a":{"b":1,"b":1}}"#).is_err());
        assert!(parse_strict(br#"[{"b":1,"b":1}]"#).is_err());
        assert!(parse_strict(br#"{"a":1,"\u0061":2}"#).is_err());
    }

    #[test]
    fn rejects_deep_nesting_without_overflowing_the_stack() {
        let deep = vec![b'['; 100_000];
        assert!(parse_strict(&deep).is_err());
        let mut nested = "{\"a\":".repeat(50_000);
        nested.push('1');
        nested.push_str(&"}".repeat(50_000));
        assert!(parse_strict(nested.as_bytes()).is_err());
    }

    #[test]
    fn rejects_invalid_utf8_and_trailing_garbage() {
        assert!(parse_strict(b"{\"a\":\"\xff\"}").is_err());
        assert!(parse_strict(b"{} x").is_err());
        assert!(parse_strict(b"").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_strict(&bytes);
        }

        #[test]
        fn agrees_with_serde_json_without_duplicates(text in r#"\{("[a-d]":[0-9],){0,3}"e":\[1,"x",null\]\}"#) {
            let strict = parse_strict(text.as_bytes());
            let plain: Result<Value, _> = serde_json::from_str(&text);
            if let (Ok(a), Ok(b)) = (&strict, &plain) {
                prop_assert_eq!(a, b);
            }
        }
    }
}
