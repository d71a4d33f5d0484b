//! Fuzzes the create-body parser `NewRecord::parse`, both for `POST /guid` (no path GUID) and for
//! `POST /guid/{guid}`.
//!
//! Checks, beyond "no panic": an accepted body yields metadata without `guid`/`expire`, a `user`
//! that is a non-empty string when present, the path GUID when one is given, an expiry in the
//! future; an accepted body is valid JSON for serde_json too; and the path form never accepts what
//! the path-less form rejects for any reason but the GUID.
#![no_main]

use guidstore::{Guid, MAX_EXPIRE, NewRecord};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const NOW: u64 = 1_700_000_000;
const PATH: &str = "9094E4C980C74043A4B586B420E69DDF";

fuzz_target!(|data: &[u8]| {
    let path = Guid::parse(PATH).expect("a valid constant GUID");
    let plain = NewRecord::parse(data, None, NOW);
    let with_path = NewRecord::parse(data, Some(&path), NOW);
    for (result, path_guid) in [(&plain, None), (&with_path, Some(&path))] {
        let Ok(record) = result else { continue };
        let metadata = record.metadata();
        assert!(!metadata.contains_key("guid") && !metadata.contains_key("expire"));
        match metadata.get("user") {
            None => {}
            Some(Value::String(user)) => assert!(!user.is_empty()),
            Some(other) => panic!("accepted user {other}"),
        }
        if let Some(expire) = record.expire() {
            assert!(expire.as_secs() > NOW && expire.as_secs() <= MAX_EXPIRE);
        }
        if let Some(path_guid) = path_guid {
            assert_eq!(record.guid(), Some(path_guid));
        }
        if !data.is_empty() {
            let value: Value = serde_json::from_slice(data).expect("accepted body is JSON");
            assert!(value.is_object());
        }
        // Re-validating the parts must accept them again.
        NewRecord::new(record.guid().copied(), record.expire(), metadata.clone()).expect("parts revalidate");
    }
    if let (Err(plain), Ok(_)) = (&plain, &with_path) {
        assert_eq!(plain.code(), "invalid_guid", "path form accepted what the plain form rejected: {plain}");
    }
    if let Err(error) = &plain {
        let code = error.code().as_str();
        assert!(
            ["invalid_json", "invalid_guid", "invalid_expire", "invalid_metadata"].contains(&code),
            "unexpected code {code} for a create body"
        );
    }
});
