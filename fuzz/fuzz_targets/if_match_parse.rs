//! Fuzzes `IfMatch::parse`, the `If-Match` request-header parser.
//!
//! Checks, beyond "no panic": `*` (trimmed) is `Any`; otherwise every tag is a quoted entity-tag
//! (`"…"` or `W/"…"`) with no quote inside, taken from the header text in order.
#![no_main]

use guidstore::IfMatch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else { return };
    match IfMatch::parse(header) {
        IfMatch::Any => assert_eq!(header.trim(), "*"),
        IfMatch::Tags(tags) => {
            let mut rest = header;
            for tag in &tags {
                let opaque = tag.strip_prefix("W/").unwrap_or(tag);
                let inner = opaque.strip_prefix('"').and_then(|t| t.strip_suffix('"'));
                let inner = inner.unwrap_or_else(|| panic!("tag {tag:?} is not quoted"));
                assert!(!inner.contains('"'), "tag {tag:?} has a quote inside");
                let at = rest.find(tag.as_str()).unwrap_or_else(|| panic!("tag {tag:?} not in {header:?}"));
                rest = &rest[at + tag.len()..];
            }
        }
    }
});
