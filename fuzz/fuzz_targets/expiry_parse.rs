//! Fuzzes `Expiry::parse` (command-line text) and `Expiry::from_json` (a JSON value from the bytes).
//!
//! Input layout: the first 8 bytes are `now` (little-endian, capped), the rest is the text / JSON.
//! Checks, beyond "no panic": an accepted expiry lies in `(now, MAX_EXPIRE]`, is exactly the digits
//! given, and a JSON string is judged exactly as the same text given to `Expiry::parse`.
#![no_main]

use guidstore::{Expiry, MAX_EXPIRE};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (now, rest) = match data.split_first_chunk::<8>() {
        Some((head, rest)) => (u64::from_le_bytes(*head) % (MAX_EXPIRE + 10), rest),
        None => (1_700_000_000, data),
    };
    if let Ok(text) = std::str::from_utf8(rest) {
        let parsed = Expiry::parse(text, now);
        if let Ok(expiry) = parsed {
            check(expiry, now);
            assert!(text.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
            assert_eq!(text.trim_start_matches('0').parse::<u64>().unwrap_or(0), expiry.as_secs());
        }
        let as_json_string = Expiry::from_json(&Value::String(text.to_owned()), now);
        assert_eq!(as_json_string, parsed, "{text:?}");
    }
    if let Ok(value) = serde_json::from_slice::<Value>(rest) {
        let parsed = Expiry::from_json(&value, now);
        if let Ok(expiry) = parsed {
            check(expiry, now);
            match &value {
                Value::Number(number) => assert_eq!(number.as_u64(), Some(expiry.as_secs())),
                Value::String(_) => {}
                other => panic!("accepted a non-number, non-string expire: {other}"),
            }
        }
    }
});

fn check(expiry: Expiry, now: u64) {
    assert!(expiry.as_secs() > now && expiry.as_secs() <= MAX_EXPIRE, "{expiry:?} at {now}");
    assert!(!expiry.is_expired_at(now));
    assert_eq!(Expiry::parse(&expiry.to_string(), now), Ok(expiry));
    assert_eq!(serde_json::to_string(&expiry).unwrap(), format!("\"{}\"", expiry.as_secs()));
}
