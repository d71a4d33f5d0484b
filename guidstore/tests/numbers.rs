//! Numbers in metadata keep their exact value through every path a record takes: create, GET
//! (from the cache and from storage), a reopened database, PATCH, and export/import. The canonical
//! form differs from the input text only in how an exponent is written (`E5` → `e+5`): the same
//! value.

use guidstore::{Guid, ManualClock, NewRecord, OnConflict, Options, Patch, Store};
use proptest::prelude::*;
use serde_json::Value;

const NOW: u64 = 1_700_000_000;

/// A store on a fresh SQLite file; `cache_capacity` 0 makes every GET read storage.
fn open(dir: &tempfile::TempDir, name: &str, cache_capacity: usize) -> Store {
    let options = Options::default().clock(ManualClock::new(NOW)).cache_capacity(cache_capacity);
    Store::open_with(dir.path().join(name), options).unwrap()
}

/// JSON number text: an integer part of up to 60 digits, an optional fraction and exponent.
fn number_text() -> impl Strategy<Value = String> {
    ("-?(0|[1-9][0-9]{0,59})", proptest::option::of("[0-9]{1,30}"), proptest::option::of("[eE][+-]?[0-9]{1,4}"))
        .prop_map(|(integer, fraction, exponent)| {
            format!(
                "{integer}{}{}",
                fraction.map(|f| format!(".{f}")).unwrap_or_default(),
                exponent.unwrap_or_default()
            )
        })
}

/// A number's text as stored: the exponent as `e` and a sign, everything else as given.
fn canonical(number: &str) -> String {
    match number.find(['e', 'E']) {
        None => number.to_owned(),
        Some(at) => {
            let (mantissa, exponent) = number.split_at(at);
            let exponent = &exponent[1..];
            let signed = if exponent.starts_with(['+', '-']) { exponent.to_owned() } else { format!("+{exponent}") };
            format!("{mantissa}e{signed}")
        }
    }
}

/// The text of `key` in a record's JSON, which must be exactly `"key":NUMBER` somewhere.
fn assert_keeps(json: &str, key: &str, number: &str) {
    let member = format!(r#""{key}":{number}"#);
    assert!(json.contains(&format!("{member},")) || json.contains(&format!("{member}}}")), "{member} not in {json}");
}

#[test]
fn the_examples_of_the_issue_keep_their_digits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, "a.db", 0);
    for number in ["12345678901234567890123", "18446744073709551616", "-9223372036854775809", "0.30000000000000000001"]
    {
        let body = format!(r#"{{"n":{number}}}"#);
        let record = store.create(NewRecord::parse(body.as_bytes(), None, store.now()).unwrap()).unwrap();
        assert_keeps(record.to_json(), "n", number);
        assert_keeps(store.get(record.guid()).unwrap().to_json(), "n", number);
        let value: Value = serde_json::from_str(store.get(record.guid()).unwrap().to_json()).unwrap();
        assert_eq!(value["n"].to_string(), number);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn numbers_round_trip_through_create_get_patch_reopen_and_export_import(
        numbers in proptest::collection::vec(number_text(), 1..4),
        patched in number_text(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let members: Vec<String> = numbers.iter().enumerate().map(|(i, n)| format!(r#""k{i}":{n}"#)).collect();
        let body = format!(r#"{{{},"list":[{}],"deep":{{"x":{}}}}}"#, members.join(","), numbers.join(","), numbers[0]);
        let stored: Vec<String> = numbers.iter().map(|n| canonical(n)).collect();
        let patched_stored = canonical(&patched);
        let check = |json: &str| {
            for (i, number) in stored.iter().enumerate() {
                assert_keeps(json, &format!("k{i}"), number);
            }
            assert!(json.contains(&format!(r#""list":[{}]"#, stored.join(","))), "{json}");
            assert_keeps(json, "x", &stored[0]);
        };
        let guid = {
            let store = open(&dir, "a.db", 0);
            let record = store.create(NewRecord::parse(body.as_bytes(), None, store.now()).unwrap()).unwrap();
            check(record.to_json());
            check(store.get(record.guid()).unwrap().to_json());
            let patch = Patch::parse(format!(r#"{{"p":{patched}}}"#).as_bytes(), record.guid(), store.now()).unwrap();
            let updated = store.update(record.guid(), patch, None).unwrap();
            check(updated.to_json());
            assert_keeps(updated.to_json(), "p", &patched_stored);
            let guid: Guid = *record.guid();
            store.close().unwrap();
            guid
        };
        let store = open(&dir, "a.db", 1000);
        let read = store.get(&guid).unwrap();
        check(read.to_json());
        assert_keeps(read.to_json(), "p", &patched_stored);
        let mut exported = Vec::new();
        store.export(&mut exported).unwrap();
        let target = open(&dir, "b.db", 0);
        let stats = target.import(exported.as_slice(), OnConflict::Fail, |_| {}).unwrap();
        prop_assert_eq!(stats.created, 1);
        let imported = target.get(&guid).unwrap();
        prop_assert_eq!(imported.to_json(), read.to_json());
        // Importing the same lines again finds the same content: nothing changes.
        let again = target.import(exported.as_slice(), OnConflict::Fail, |_| {}).unwrap();
        prop_assert_eq!((again.created, again.unchanged), (0, 1));
        // A PATCH with the same numbers is no change: the version stays.
        let same = Patch::parse(body.as_bytes(), &guid, target.now()).unwrap();
        let before = target.get(&guid).unwrap();
        let after = target.update(&guid, same, None).unwrap();
        prop_assert_eq!(after.etag(), before.etag());
    }
}
