//! Strict JSON parsing of request bodies: like `serde_json::from_slice`, but a duplicate key in any
//! object is an error, and nesting deeper than serde_json's recursion limit (128) is an error rather
//! than a stack overflow.
//!
//! Numbers keep their exact text (serde_json's `arbitrary_precision`, on for the whole workspace):
//! `12345678901234567890123` stays those digits, `1.50` stays `1.50`; only an exponent is
//! written in one form, `e` with a sign (`1E5` becomes `1e+5`, `2e-3` stays), the same value. serde_json hands such a
//! number to a visitor as a one-entry map whose key is its private marker
//! `$serde_json::private::Number`; the visitor here tells that marker from a body's own key of the
//! same text by where the key's text lives (the marker is a constant, a body's key is inside the
//! body), and refuses a body's key of that text: stored, it would be read back as a number.

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// serde_json's marker key of a number kept as text (`arbitrary_precision`).
const NUMBER_MARKER: &str = "$serde_json::private::Number";

/// Parses `bytes` as one JSON value, rejecting duplicate object keys.
pub(crate) fn parse_strict(bytes: &[u8]) -> Result<Value, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let input = bytes.as_ptr_range();
    let input = input.start as usize..input.end as usize;
    let value = StrictSeed { input }.deserialize(&mut deserializer).map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// One JSON value; `input` is the address range of the text being parsed.
#[derive(Clone)]
struct StrictSeed {
    input: Range<usize>,
}

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSeed {
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
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
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
        while let Some(item) = seq.next_element_seed(self.clone())? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        let mut first = true;
        while let Some(key) = map.next_key_seed(KeySeed { input: self.input.clone() })? {
            let key = match key {
                Key::NumberMarker if first => {
                    // A number kept as text: the map's one value is its text.
                    let text: String = map.next_value()?;
                    let number = text.parse::<Number>().map_err(de::Error::custom)?;
                    return Ok(Value::Number(number));
                }
                Key::NumberMarker => return Err(de::Error::custom("a number inside an object")),
                Key::Text(key) if key == NUMBER_MARKER => {
                    return Err(de::Error::custom(format_args!("the key {key:?} is reserved")));
                }
                Key::Text(key) => key,
            };
            first = false;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let value = map.next_value_seed(self.clone())?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// An object key: a body's own text, or serde_json's marker of a number kept as text.
enum Key {
    Text(String),
    NumberMarker,
}

/// Reads an object key; `input` tells the body's own text from serde_json's constant marker.
struct KeySeed {
    input: Range<usize>,
}

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key, E> {
        // serde_json's marker is a constant; a key borrowed from the body lies inside the body.
        if v == NUMBER_MARKER && !self.input.contains(&(v.as_ptr() as usize)) {
            return Ok(Key::NumberMarker);
        }
        Ok(Key::Text(v.to_owned()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(Key::Text(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Key, E> {
        Ok(Key::Text(v))
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

    /// A number's text as stored: the exponent as `e` and a sign, everything else as given.
    fn canonical(number: &str) -> String {
        match number.find(['e', 'E']) {
            None => number.to_owned(),
            Some(at) => {
                let (mantissa, exponent) = number.split_at(at);
                let exponent = &exponent[1..];
                let signed =
                    if exponent.starts_with(['+', '-']) { exponent.to_owned() } else { format!("+{exponent}") };
                format!("{mantissa}e{signed}")
            }
        }
    }

    #[test]
    fn canonical_exponents_are_lowercase_and_signed() {
        assert_eq!(canonical("1E5"), "1e+5");
        assert_eq!(canonical("1e-5"), "1e-5");
        assert_eq!(canonical("2.5E+10"), "2.5e+10");
        assert_eq!(canonical("12"), "12");
        let parsed = parse_strict(br#"[1E5,1e-5,2.5E+10,12]"#).unwrap();
        assert_eq!(parsed.to_string(), "[1e+5,1e-5,2.5e+10,12]");
    }

    #[test]
    fn large_and_precise_numbers_keep_their_digits() {
        for number in [
            "12345678901234567890123",
            "18446744073709551616",
            "-18446744073709551617",
            "0.1000000000000000055511151231257827",
            "1E400",
            "1e2",
            "5.0",
            "-0",
            "123456789012345678901234567890.5e-3",
        ] {
            let body = format!(r#"{{"n":{number}}}"#);
            let value = parse_strict(body.as_bytes()).unwrap();
            assert_eq!(value.to_string(), format!(r#"{{"n":{}}}"#, canonical(number)));
            assert!(value["n"].is_number(), "{number}");
        }
    }

    #[test]
    fn serde_jsons_number_marker_is_a_reserved_key_not_a_number() {
        for body in [
            r#"{"$serde_json::private::Number":"12"}"#,
            r#"{"a":{"$serde_json::private::Number":"12"}}"#,
            r#"{"b":1,"$serde_json::private::Number":"12"}"#,
            r#"{"\u0024serde_json::private::Number":"12"}"#,
            r#"[{"$serde_json::private::Number":"x"}]"#,
        ] {
            let error = parse_strict(body.as_bytes()).unwrap_err();
            assert!(error.contains("reserved"), "{body}: {error}");
        }
        // The same text as a value, or a longer key, is ordinary.
        assert!(parse_strict(br#"{"a":"$serde_json::private::Number"}"#).is_ok());
        assert!(parse_strict(br#"{"$serde_json::private::Number2":1}"#).is_ok());
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
        fn numbers_keep_their_exact_text(
            integer in "-?(0|[1-9][0-9]{0,40})",
            fraction in proptest::option::of("[0-9]{1,20}"),
            exponent in proptest::option::of("[eE][+-]?[0-9]{1,3}"),
        ) {
            let number = format!("{integer}{}{}", fraction.map(|f| format!(".{f}")).unwrap_or_default(), exponent.unwrap_or_default());
            let body = format!(r#"{{"n":{number},"a":[{number}],"o":{{"m":{number}}}}}"#);
            let value = parse_strict(body.as_bytes()).unwrap();
            let number = canonical(&number);
            prop_assert_eq!(value.to_string(), format!(r#"{{"n":{number},"a":[{number}],"o":{{"m":{number}}}}}"#));
            let reparsed: Value = serde_json::from_str(&value.to_string()).unwrap();
            prop_assert_eq!(reparsed, value);
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
