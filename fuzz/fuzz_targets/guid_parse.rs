//! Fuzzes `Guid::parse_bytes` (the undecoded URL path segment) and `Guid::parse`.
//!
//! Checks, beyond "no panic": a parsed GUID is exactly the input, 32 bytes of `0-9A-F`, and
//! round-trips through `Display`/`FromStr`; `parse` on text agrees with `parse_bytes`.
#![no_main]

use guidstore::{GUID_LEN, Guid};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = Guid::parse_bytes(data);
    let well_formed = data.len() == GUID_LEN && data.iter().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'));
    assert_eq!(parsed.is_ok(), well_formed, "{data:?}");
    if let Ok(guid) = &parsed {
        assert_eq!(guid.as_str().as_bytes(), data);
        assert_eq!(guid.to_string().parse::<Guid>().as_ref(), Ok(guid));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(Guid::parse(text), parsed);
    }
});
