//! `kakigori::meter::value::parse_value`, the `/ws` chant-meter message parser.
//!
//! Invariants:
//! * on any bytes it returns an error or a finite, non-zero value with |v| <= 1e9,
//!   and when serde_json's own `Value` can read the message too, the two agree;
//! * `Unused::Zero` exactly when the value is a number equal to 0;
//! * on `{"value": <finite number>}` — the number written from the input's
//!   bytes in several textual forms, or the input itself when it is a JSON
//!   number — it agrees exactly with serde_json: `Ok(v)` iff serde_json reads
//!   a non-zero v with |v| <= 1e9.
#![no_main]

use kakigori::meter::value::{parse_value, Unused, VALUE_ABS_MAX};
use libfuzzer_sys::fuzz_target;

/// What serde_json says `{"value": …}` means, under the contract's rules.
fn reference(text: &[u8]) -> Option<f64> {
    let parsed: serde_json::Value = serde_json::from_slice(text).ok()?;
    let value = parsed.as_object()?.get("value")?.as_f64()?;
    (value != 0.0 && value.abs() <= 1e9).then_some(value)
}

fn check_any(text: &[u8]) -> Option<f64> {
    let result = parse_value(text);
    if result == Err(Unused::Zero) {
        // Zero is only ever a well-formed value message; serde_json agrees where it can.
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(text) {
            assert_eq!(
                map.get("value").and_then(|v| v.as_f64()),
                Some(0.0),
                "{text:?}"
            );
        }
    }
    let got = result.ok();
    if let Some(v) = got {
        assert!(v.is_finite(), "non-finite {v} from {text:?}");
        assert!(v != 0.0, "zero from {text:?}");
        assert!(
            v.abs() <= VALUE_ABS_MAX && v.abs() <= 1e9,
            "{v} out of range from {text:?}"
        );
        // serde_json::Value refuses some messages parse_value rightly accepts
        // (an ignored field holding 1e999); when it does read it, it agrees.
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(text) {
            assert_eq!(
                map.get("value").and_then(|v| v.as_f64()),
                Some(v),
                "{text:?}"
            );
        }
    }
    got
}

fn check_number(number_text: &str) {
    for template in [
        format!("{{\"value\": {number_text}}}"),
        format!("{{\"value\":{number_text},\"name\":\"x\"}}"),
        format!(" {{ \"other\" : [1, {{\"value\": 3}}], \"value\" :\t{number_text} }} "),
    ] {
        let got = check_any(template.as_bytes());
        let want = reference(template.as_bytes());
        // Compare bit patterns so -x and x, and NaNs, cannot be confused.
        assert_eq!(
            got.map(f64::to_bits),
            want.map(f64::to_bits),
            "{template}: parse_value {got:?}, serde_json {want:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    check_any(data);

    // The input itself, when serde_json reads it as a single finite number.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(number) = serde_json::from_str::<serde_json::Number>(text) {
            if number.as_f64().is_some_and(f64::is_finite) {
                check_number(text.trim());
            }
        }
    }

    // A number made from the input's first 8 bytes, in several spellings.
    for chunk in data.chunks_exact(8).take(1) {
        let v = f64::from_le_bytes(chunk.try_into().unwrap());
        if !v.is_finite() {
            continue;
        }
        check_number(&format!("{v}"));
        check_number(&format!("{v:e}"));
        check_number(&format!("{v:E}"));
        check_number(&format!("{v:?}"));
        // Integers, and values near the ±1e9 edge.
        let scaled = (v % 4.0) * 1e9;
        check_number(&format!("{scaled}"));
        check_number(&format!("{}", v as i64));
    }
});
