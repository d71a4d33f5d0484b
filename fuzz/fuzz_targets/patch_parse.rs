//! Fuzzes the merge-patch parser `Patch::parse` and `Patch::apply`.
//!
//! Checks, beyond "no panic": an accepted patch has no `guid`/`expire` among its changes, an
//! expiry in the future; applying it twice gives the same result as once (RFC 7396 merge patch is
//! idempotent); no key the patch sets to `null` survives; `{}`-like patches change nothing.
#![no_main]

use guidstore::{Expiry, Guid, Metadata, Patch};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const NOW: u64 = 1_700_000_000;
const GUID: &str = "9094E4C980C74043A4B586B420E69DDF";

fuzz_target!(|data: &[u8]| {
    let guid = Guid::parse(GUID).expect("a valid constant GUID");
    let Ok(patch) = Patch::parse(data, &guid, NOW) else { return };
    assert!(!patch.changes().contains_key("guid") && !patch.changes().contains_key("expire"));
    if let Some(expire) = patch.expire() {
        assert!(expire.as_secs() > NOW);
    }
    let expire = Expiry::new_after(NOW + 100, NOW).expect("a future expiry");
    let mut metadata = Metadata::new();
    metadata.insert("user".into(), json!("Jay Patel"));
    metadata.insert("team".into(), json!({"name": "ops", "size": 3}));
    metadata.insert("tags".into(), json!([1, 2]));
    let Ok((once_expire, once)) = patch.apply(expire, &metadata) else { return };
    assert_eq!(once_expire, patch.expire().unwrap_or(expire));
    let (_, twice) = patch.apply(once_expire, &once).expect("a patch that applied once applies again");
    assert_eq!(once, twice, "merge patch is not idempotent");
    for (key, value) in patch.changes() {
        if value.is_null() {
            assert!(!once.contains_key(key));
        } else if !value.is_object() {
            assert_eq!(once.get(key), Some(value));
        }
    }
    if patch.is_empty() {
        assert_eq!(once, metadata);
    }
    let _ = Value::Object(once).to_string();
});
