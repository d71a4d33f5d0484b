//! The record routes of API.md: create, read, HEAD, merge-patch, delete, ETag / If-Match, expiry.

use serde_json::json;

use crate::helpers::{AppOptions, GUID, NOW, spawn_app, spawn_app_with};

#[tokio::test]
async fn post_guid_creates_a_random_guid_with_location_etag_and_default_expiry() {
    let app = spawn_app().await;
    let response = app.post_guid(r#"{"user": "Jay Patel"}"#).await;
    assert_eq!(response.status, 201);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json();
    let guid = body["guid"].as_str().unwrap();
    assert_eq!(guid.len(), 32);
    assert!(guid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')));
    assert_eq!(body["expire"], (NOW + 2_592_000).to_string());
    assert_eq!(body["user"], "Jay Patel");
    assert_eq!(response.header("location"), Some(format!("/guid/{guid}").as_str()));
    let etag = response.header("etag").unwrap();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2, "{etag}");
}

#[tokio::test]
async fn post_guid_with_a_body_guid_uses_it() {
    let app = spawn_app().await;
    let response = app.post_guid(&format!(r#"{{"guid": "{GUID}", "expire": {}}}"#, NOW + 10)).await;
    assert_eq!(response.status, 201);
    assert_eq!(response.json(), json!({"guid": GUID, "expire": (NOW + 10).to_string()}));
    assert_eq!(response.header("location"), Some(format!("/guid/{GUID}").as_str()));
}

#[tokio::test]
async fn post_guid_with_an_empty_body_creates_an_empty_record() {
    let app = spawn_app().await;
    let response = app.post_guid("").await;
    assert_eq!(response.status, 201);
    assert_eq!(response.json().as_object().unwrap().len(), 2);
}

#[tokio::test]
async fn post_guid_at_path_creates_that_guid_and_keeps_key_order() {
    let app = spawn_app().await;
    let response = app.post_guid_at(GUID, r#"{"zeta": 1, "user": "Jay", "expire": "1800000000", "alpha": [1]}"#).await;
    assert_eq!(response.status, 201);
    assert_eq!(
        std::str::from_utf8(&response.body).unwrap(),
        format!(r#"{{"guid":"{GUID}","expire":"1800000000","zeta":1,"user":"Jay","alpha":[1]}}"#)
    );
}

#[tokio::test]
async fn post_of_a_live_guid_returns_409_and_changes_nothing() {
    let app = spawn_app().await;
    let created = app.create_at(GUID, r#"{"user": "first"}"#).await;
    app.post_guid_at(GUID, r#"{"user": "second"}"#).await.assert_error(409, "already_exists");
    app.post_guid(&format!(r#"{{"guid": "{GUID}"}}"#)).await.assert_error(409, "already_exists");
    let current = app.get_guid(GUID).await;
    assert_eq!(current.json()["user"], "first");
    assert_eq!(current.header("etag"), created.header("etag"));
}

#[tokio::test]
async fn get_returns_the_record_with_the_etag_of_its_creation() {
    let app = spawn_app().await;
    let created = app.create_at(GUID, r#"{"expire": 1800000000, "user": "Jay Patel"}"#).await;
    let response = app.get_guid(GUID).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.json(), json!({"guid": GUID, "expire": "1800000000", "user": "Jay Patel"}));
    assert_eq!(response.header("etag"), created.header("etag"));
}

#[tokio::test]
async fn get_returns_404_for_a_guid_never_created() {
    let app = spawn_app().await;
    app.get_guid(GUID).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn an_expired_record_is_gone_for_every_request_and_can_be_created_again() {
    let app = spawn_app().await;
    app.create_at(GUID, &format!(r#"{{"expire": {}, "user": "old"}}"#, NOW + 60)).await;
    assert_eq!(app.get_guid(GUID).await.status, 200);
    app.clock.advance(60);
    app.get_guid(GUID).await.assert_error(404, "not_found");
    let head = app.request("HEAD", &format!("/guid/{GUID}"), &[], "").await;
    assert_eq!((head.status, head.body.len()), (404, 0));
    app.patch_guid(GUID, r#"{"user": "x"}"#).await.assert_error(404, "not_found");
    let if_match = app.request("DELETE", &format!("/guid/{GUID}"), &[("if-match", "*")], "").await;
    if_match.assert_error(404, "not_found");
    app.delete_guid(GUID).await.assert_error(404, "not_found");
    let recreated = app.post_guid_at(GUID, r#"{"user": "new"}"#).await;
    assert_eq!(recreated.status, 201);
    assert_eq!(recreated.json()["user"], "new");
    assert_eq!(recreated.json()["expire"], (NOW + 60 + 2_592_000).to_string());
}

#[tokio::test]
async fn head_sends_the_headers_of_get_without_a_body() {
    let app = spawn_app().await;
    app.create_at(GUID, r#"{"user": "Jay Patel"}"#).await;
    let get = app.get_guid(GUID).await;
    let head = app.request("HEAD", &format!("/guid/{GUID}"), &[], "").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some(get.body.len().to_string().as_str()));
    assert_eq!(head.header("etag"), get.header("etag"));
    assert_eq!(head.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn patch_merges_metadata_sets_removes_and_keeps_absent_keys() {
    let app = spawn_app().await;
    let created = app.create_at(GUID, r#"{"user": "Jay", "team": "ops", "tags": {"a": 1, "b": 2}}"#).await;
    let response = app.patch_guid(GUID, r#"{"team": null, "tags": {"a": null, "c": 3}, "site": "x"}"#).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        json!({"guid": GUID, "expire": (NOW + 2_592_000).to_string(), "user": "Jay", "tags": {"b": 2, "c": 3}, "site": "x"})
    );
    assert_ne!(response.header("etag"), created.header("etag"));
    let read = app.get_guid(GUID).await;
    assert_eq!(read.json(), response.json());
    assert_eq!(read.header("etag"), response.header("etag"));
}

#[tokio::test]
async fn patch_with_an_empty_object_changes_nothing_and_keeps_the_etag() {
    let app = spawn_app().await;
    let created = app.create_at(GUID, r#"{"user": "Jay"}"#).await;
    let response = app.patch_guid(GUID, "{}").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), created.json());
    assert_eq!(response.header("etag"), created.header("etag"));
}

#[tokio::test]
async fn patch_replaces_the_expiry_and_accepts_its_own_guid() {
    let app = spawn_app().await;
    app.create_at(GUID, "").await;
    let response = app.patch_guid(GUID, &format!(r#"{{"guid": "{GUID}", "expire": "{}"}}"#, NOW + 5)).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["expire"], (NOW + 5).to_string());
    app.clock.advance(5);
    app.get_guid(GUID).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn patch_rejects_another_guid_a_null_expire_and_a_bad_user() {
    let app = spawn_app().await;
    app.create_at(GUID, r#"{"user": "Jay"}"#).await;
    app.patch_guid(GUID, r#"{"guid": "0000E4C980C74043A4B586B420E69DDF"}"#).await.assert_error(400, "guid_immutable");
    app.patch_guid(GUID, r#"{"guid": 5}"#).await.assert_error(400, "guid_immutable");
    app.patch_guid(GUID, r#"{"expire": null}"#).await.assert_error(400, "invalid_expire");
    app.patch_guid(GUID, &format!(r#"{{"expire": {NOW}}}"#)).await.assert_error(400, "invalid_expire");
    app.patch_guid(GUID, r#"{"user": ""}"#).await.assert_error(400, "invalid_metadata");
    app.patch_guid(GUID, r#"{"user": null}"#).await;
    app.patch_guid(GUID, "").await.assert_error(400, "invalid_json");
    assert_eq!(app.get_guid(GUID).await.json().get("user"), None);
}

#[tokio::test]
async fn a_patch_that_would_grow_the_record_past_the_body_limit_returns_413_and_changes_nothing() {
    let app = spawn_app().await;
    let pad = "x".repeat(60 * 1024);
    let created = app.create_at(GUID, &format!(r#"{{"p0":"{pad}"}}"#)).await;
    // Each body is under the 64 KiB limit; the second key would make the record about 120 KiB.
    let refused = app.patch_guid(GUID, &format!(r#"{{"p1":"{pad}"}}"#)).await;
    refused.assert_error(413, "payload_too_large");
    assert!(!refused.closes_connection(), "the body was read whole: the connection stays usable");
    let read = app.get_guid(GUID).await;
    assert_eq!((read.json(), read.header("etag")), (created.json(), created.header("etag")));
    // Replacing the big value with a small one is fine.
    assert_eq!(app.patch_guid(GUID, r#"{"p0":"small"}"#).await.status, 200);
}

#[tokio::test]
async fn the_record_limit_follows_max_body() {
    let app = spawn_app_with(AppOptions::with(|config| config.max_body = 1000)).await;
    let pad = "x".repeat(600);
    app.create_at(GUID, &format!(r#"{{"a":"{pad}"}}"#)).await;
    app.patch_guid(GUID, &format!(r#"{{"b":"{pad}"}}"#)).await.assert_error(413, "payload_too_large");
    assert!(app.get_guid(GUID).await.json().get("b").is_none());
    let roomy = spawn_app_with(AppOptions::with(|config| config.max_body = 4000)).await;
    roomy.create_at(GUID, &format!(r#"{{"a":"{pad}"}}"#)).await;
    assert_eq!(roomy.patch_guid(GUID, &format!(r#"{{"b":"{pad}"}}"#)).await.status, 200);
}

#[tokio::test]
async fn delete_returns_204_with_an_empty_body_then_the_record_is_gone() {
    let app = spawn_app().await;
    app.create_at(GUID, "").await;
    let response = app.delete_guid(GUID).await;
    assert_eq!(response.status, 204);
    assert!(response.body.is_empty());
    assert_eq!(response.header("content-type"), None);
    app.get_guid(GUID).await.assert_error(404, "not_found");
    app.delete_guid(GUID).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn if_match_that_matches_no_tag_returns_412_and_changes_nothing() {
    let app = spawn_app().await;
    let created = app.create_at(GUID, r#"{"user": "Jay"}"#).await;
    let etag = created.header("etag").unwrap().to_owned();
    let path = format!("/guid/{GUID}");
    for stale in ["\"0000000000000000\"", "W/\"0000000000000000\"", "garbage", ""] {
        let response = app.request("PATCH", &path, &[("if-match", stale)], r#"{"user": "x"}"#).await;
        response.assert_error(412, "precondition_failed");
        app.request("DELETE", &path, &[("if-match", stale)], "").await.assert_error(412, "precondition_failed");
    }
    let weak = format!("W/{etag}");
    app.request("PATCH", &path, &[("if-match", &weak)], "{}").await.assert_error(412, "precondition_failed");
    assert_eq!(app.get_guid(GUID).await.json()["user"], "Jay");

    let list = format!("\"1111111111111111\", {etag}");
    let patched = app.request("PATCH", &path, &[("if-match", &list)], r#"{"user": "Kim"}"#).await;
    assert_eq!(patched.status, 200);
    app.request("DELETE", &path, &[("if-match", &etag)], "").await.assert_error(412, "precondition_failed");
    let new_etag = patched.header("etag").unwrap();
    assert_eq!(app.request("DELETE", &path, &[("if-match", new_etag)], "").await.status, 204);
}

#[tokio::test]
async fn if_match_that_is_not_list_syntax_matches_nothing_even_with_the_records_tag() {
    let app = spawn_app().await;
    let created = app.create_at(GUID, r#"{"user": "Jay"}"#).await;
    let etag = created.header("etag").unwrap().to_owned();
    let path = format!("/guid/{GUID}");
    for invalid in [format!("{etag}{etag}"), format!("{etag} junk"), format!("*, {etag}")] {
        let response = app.request("PATCH", &path, &[("if-match", &invalid)], r#"{"user": "x"}"#).await;
        response.assert_error(412, "precondition_failed");
        app.request("DELETE", &path, &[("if-match", &invalid)], "").await.assert_error(412, "precondition_failed");
    }
    assert_eq!(app.get_guid(GUID).await.header("etag"), Some(etag.as_str()));
    // Valid list syntax with empty elements and whitespace still matches.
    let list = format!(" , \"1111111111111111\" ,, {etag} ,");
    assert_eq!(app.request("PATCH", &path, &[("if-match", &list)], "{}").await.status, 200);
}

#[tokio::test]
async fn if_match_star_matches_any_live_record() {
    let app = spawn_app().await;
    let path = format!("/guid/{GUID}");
    app.request("PATCH", &path, &[("if-match", "*")], "{}").await.assert_error(404, "not_found");
    app.create_at(GUID, "").await;
    assert_eq!(app.request("PATCH", &path, &[("if-match", "*")], r#"{"a": 1}"#).await.status, 200);
    assert_eq!(app.request("DELETE", &path, &[("if-match", "*")], "").await.status, 204);
}

#[tokio::test]
async fn a_trailing_slash_is_tolerated() {
    let app = spawn_app().await;
    let created = app.request("POST", "/guid/", &[], "").await;
    assert_eq!(created.status, 201);
    let guid = created.json()["guid"].as_str().unwrap().to_owned();
    assert_eq!(app.request("GET", &format!("/guid/{guid}/"), &[], "").await.status, 200);
    assert_eq!(app.request("POST", &format!("/guid/{GUID}/"), &[], "").await.status, 201);
    assert_eq!(app.request("DELETE", &format!("/guid/{GUID}/"), &[], "").await.status, 204);
}

#[tokio::test]
async fn concurrent_creates_of_one_guid_give_exactly_one_201() {
    let app = std::sync::Arc::new(spawn_app().await);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..32 {
        let app = std::sync::Arc::clone(&app);
        tasks.spawn(async move { app.post_guid_at(GUID, &format!(r#"{{"n": {n}}}"#)).await.status });
    }
    let statuses = tasks.join_all().await;
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 31, "{statuses:?}");
}

#[tokio::test]
async fn records_are_read_from_storage_when_the_cache_is_off() {
    let app = spawn_app_with(AppOptions::with(|config| config.cache_capacity = 0)).await;
    let created = app.create_at(GUID, r#"{"user": "Jay"}"#).await;
    let response = app.get_guid(GUID).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), created.json());
    assert!(app.metrics().await.contains("guidstore_cache_misses_total 1\n"));
}

#[tokio::test]
async fn numbers_keep_their_digits_through_create_get_and_patch() {
    for cache_capacity in [1000, 0] {
        let app = spawn_app_with(AppOptions::with(|config| config.cache_capacity = cache_capacity)).await;
        let body = r#"{"n":12345678901234567890123,"u":18446744073709551616,"f":0.1000000000000000055511151231257827}"#;
        let created = app.post_guid(body).await;
        assert_eq!(created.status, 201);
        let members =
            r#""n":12345678901234567890123,"u":18446744073709551616,"f":0.1000000000000000055511151231257827"#;
        assert!(created.text().ends_with(&format!("{members}}}")), "{}", created.text());
        let location = created.header("location").unwrap().to_owned();
        let read = app.request("GET", &location, &[], "").await;
        assert!(read.text().ends_with(&format!("{members}}}")), "{}", read.text());
        let patched = app.request("PATCH", &location, &[], r#"{"n":-98765432109876543210987654321}"#).await;
        assert!(patched.text().contains(r#""n":-98765432109876543210987654321,"#), "{}", patched.text());
    }
}
