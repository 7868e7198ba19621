//! The `/ws` wire format: `{"value": <number>}` in, `{"average","count"}` out.
//!
//! Parsing uses serde_json with a hand-written visitor rather than a derived
//! struct, for two reasons: a derived struct would also accept a JSON array
//! (`[42]`), and the visitor lets unknown fields be skipped without building
//! anything. For an ordinary message nothing is allocated: keys without
//! escapes are borrowed from the input, numbers are parsed in place. (Only
//! malformed input allocates, for serde_json's error value.)

use std::fmt;
use std::io::Write;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::metrics::Ignored;

/// Largest accepted |value|, matching the window's limit so averages stay
/// finite and exact.
pub const VALUE_ABS_MAX: f64 = super::window::SAMPLE_ABS_MAX;

/// Why a client message gives no sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unused {
    /// `{"value": 0}` (or -0): the front end sends one as each chant starts, and the
    /// spec ignores it.
    Zero,
    /// Not JSON, not an object, no `"value"` (or two of them), a value that is not a
    /// number, or a magnitude over [`VALUE_ABS_MAX`].
    NotAValue,
}

impl From<Unused> for Ignored {
    fn from(why: Unused) -> Ignored {
        match why {
            Unused::Zero => Ignored::Zero,
            Unused::NotAValue => Ignored::NotAValue,
        }
    }
}

/// The numeric `"value"` of a client message, or why it is to be ignored. Other
/// fields are ignored.
pub fn parse_value(text: &[u8]) -> Result<f64, Unused> {
    let ValueMessage(value) = serde_json::from_slice(text).map_err(|_| Unused::NotAValue)?;
    if value == 0.0 {
        return Err(Unused::Zero);
    }
    // `abs() <= max` is false for NaN and the infinities as well.
    if value.abs() <= VALUE_ABS_MAX {
        Ok(value)
    } else {
        Err(Unused::NotAValue)
    }
}

/// Appends `{"average":<number>,"count":<n>}`. The average is written with
/// Rust's shortest round-trip formatting, never in exponent form, so it is
/// always a JSON number; anything non-finite is written as 0, and -0 as 0.
pub fn write_reading(average: f64, count: u64, out: &mut Vec<u8>) {
    let average = if average.is_finite() && average != 0.0 {
        average
    } else {
        0.0
    };
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{{\"average\":{average},\"count\":{count}}}");
}

/// The one field we keep from a client message.
struct ValueMessage(f64);

impl<'de> Deserialize<'de> for ValueMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ValueMessageVisitor)
    }
}

struct ValueMessageVisitor;

impl<'de> Visitor<'de> for ValueMessageVisitor {
    type Value = ValueMessage;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object with a numeric \"value\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ValueMessage, A::Error> {
        let mut value = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Value if value.is_some() => return Err(de::Error::duplicate_field("value")),
                Key::Value => value = Some(map.next_value::<f64>()?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        value
            .map(ValueMessage)
            .ok_or_else(|| de::Error::missing_field("value"))
    }
}

/// An object key: `"value"` or anything else, decided without keeping it.
enum Key {
    Value,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(if key == "value" {
            Key::Value
        } else {
            Key::Other
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Option<f64> {
        parse_value(text.as_bytes()).ok()
    }

    #[test]
    fn accepts_numbers_in_objects() {
        assert_eq!(parse(r#"{"value": 42.5}"#), Some(42.5));
        assert_eq!(parse(r#"{"value":-3}"#), Some(-3.0));
        assert_eq!(parse(r#"{"value":1e2}"#), Some(100.0));
        assert_eq!(
            parse(" \n{ \"name\": \"x\", \"value\" : 7 , \"extra\": [1, {\"a\": null}] }\t"),
            Some(7.0)
        );
        assert_eq!(parse(r#"{"val\u0075e": 5}"#), Some(5.0));
        assert_eq!(parse(r#"{"value": 1e9}"#), Some(1e9));
        assert_eq!(parse(r#"{"value": -1e9}"#), Some(-1e9));
        assert_eq!(parse(r#"{"value": 1e-300}"#), Some(1e-300));
        // Ignored fields are skipped, not judged: serde_json::Value would
        // refuse this out-of-range number, we do not look at it.
        assert_eq!(parse(r#"{"value": 5, "other": 1e999}"#), Some(5.0));
    }

    #[test]
    fn refuses_everything_else() {
        for text in [
            "",
            "42",
            "[42]",
            "null",
            "not json",
            r#"{"value": "5"}"#,
            r#"{"value": null}"#,
            r#"{"value": true}"#,
            r#"{"value": [1]}"#,
            r#"{"value": 1e400}"#,
            r#"{"value": 1000000001}"#,
            r#"{"value": NaN}"#,
            r#"{"Value": 5}"#,
            r#"{"other": 5}"#,
            r#"{"value": 5, "value": 6}"#,
            r#"{"value": 5} trailing"#,
            r#"{"value": 5"#,
        ] {
            assert_eq!(
                parse_value(text.as_bytes()),
                Err(Unused::NotAValue),
                "{text}"
            );
        }
    }

    #[test]
    fn zero_is_a_reason_of_its_own() {
        for text in [
            r#"{"value": 0}"#,
            r#"{"value": -0}"#,
            r#"{"value": 0.0e5}"#,
            r#"{"value": -0.0, "name": "start"}"#,
        ] {
            assert_eq!(parse_value(text.as_bytes()), Err(Unused::Zero), "{text}");
        }
        assert_eq!(Ignored::from(Unused::Zero), Ignored::Zero);
    }

    #[test]
    fn writes_readings_as_json() {
        let mut out = Vec::new();
        write_reading(42.5, 3, &mut out);
        assert_eq!(out, br#"{"average":42.5,"count":3}"#);
        for (average, expected) in [
            (0.0, r#"{"average":0,"count":0}"#),
            (-0.0, r#"{"average":0,"count":0}"#),
            (f64::NAN, r#"{"average":0,"count":0}"#),
            (f64::INFINITY, r#"{"average":0,"count":0}"#),
            (1e9, r#"{"average":1000000000,"count":0}"#),
            (-2.25, r#"{"average":-2.25,"count":0}"#),
        ] {
            let mut out = Vec::new();
            write_reading(average, 0, &mut out);
            assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
        }
    }

    /// What serde_json's own `Value` says the message means.
    fn reference(text: &[u8], duplicate_value_keys: bool) -> Option<f64> {
        let parsed: serde_json::Value = serde_json::from_slice(text).ok()?;
        let value = parsed.as_object()?.get("value")?.as_f64()?;
        (!duplicate_value_keys && value != 0.0 && value.abs() <= 1e9).then_some(value)
    }

    fn json_value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<f64>()
                .prop_filter("finite", |v| v.is_finite())
                .prop_map(|v| format!("{v:e}")),
            (-2_000_000_000i64..2_000_000_000).prop_map(|v| v.to_string()),
            (-1e10..1e10f64).prop_map(|v| v.to_string()),
            Just("0".to_owned()),
            Just("-0.0".to_owned()),
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("\"5\"".to_owned()),
            Just("[1, 2]".to_owned()),
            Just("{\"value\": 3}".to_owned()),
        ]
    }

    fn json_key() -> impl Strategy<Value = (&'static str, bool)> {
        prop_oneof![
            Just(("\"value\"", true)),
            Just(("\"val\\u0075e\"", true)),
            Just(("\"Value\"", false)),
            Just(("\"name\"", false)),
            Just(("\"\"", false)),
        ]
    }

    proptest! {
        #[test]
        fn agrees_with_serde_json_value(
            fields in proptest::collection::vec((json_key(), json_value()), 0..4),
            space in "[ \t\r\n]{0,2}",
        ) {
            let body: Vec<String> = fields
                .iter()
                .map(|((key, _), value)| format!("{key}{space}:{space}{value}"))
                .collect();
            let text = format!("{space}{{{}}}{space}", body.join(","));
            let value_keys = fields.iter().filter(|((_, is_value), _)| *is_value).count();
            prop_assert_eq!(
                parse_value(text.as_bytes()).ok(),
                reference(text.as_bytes(), value_keys > 1),
                "{}", text
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic(text in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(value) = parse_value(&text) {
                prop_assert_eq!(reference(&text, false), Some(value));
            }
        }

        #[test]
        fn readings_round_trip_through_json(average in -1e9..1e9f64, count in any::<u64>()) {
            let mut out = Vec::new();
            write_reading(average, count, &mut out);
            let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
            prop_assert!(parsed["average"].is_number());
            prop_assert_eq!(parsed["count"].as_u64(), Some(count));
            // serde_json's default float parsing may be 1 ulp off; the
            // exact round trip is checked with Rust's own parser.
            let text = std::str::from_utf8(&out).unwrap();
            let number = text
                .strip_prefix("{\"average\":")
                .and_then(|rest| rest.split(',').next())
                .unwrap();
            prop_assert_eq!(number.parse::<f64>().unwrap(), average);
        }
    }
}
