//! Bad input: every 4xx of API.md, with its code and a JSON body, and no crash.

use crate::helpers::{GUID, NOW, spawn_app};

#[tokio::test]
async fn malformed_guids_in_the_path_are_400_invalid_guid_for_every_method() {
    let app = spawn_app().await;
    let bad = [
        "9094e4c980c74043a4b586b420e69ddf",
        "9094E4C9-80C7-4043-A4B5-86B420E69DDF",
        "{9094E4C980C74043A4B586B420E69DDF}",
        "9094E4C980C74043A4B586B420E69DD",
        "9094E4C980C74043A4B586B420E69DDF0",
        "9094E4C980C74043A4B586B420E69DDG",
        "%4194E4C980C74043A4B586B420E69DDF",
        "%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41%41",
        "%2F",
        "%FF",
        "%C3%A9",
        "9094E4C980C74043A4B586B420E69DD%46",
        "x",
    ];
    for guid in bad {
        for method in ["GET", "HEAD", "POST", "PATCH", "DELETE"] {
            let response = app.request(method, &format!("/guid/{guid}"), &[], "{}").await;
            if method == "HEAD" {
                assert_eq!(response.status, 400, "HEAD {guid}");
                assert!(response.body.is_empty());
            } else {
                response.assert_error(400, "invalid_guid");
            }
        }
    }
}

#[tokio::test]
async fn body_guids_must_be_valid_and_equal_to_the_path() {
    let app = spawn_app().await;
    app.post_guid(r#"{"guid": "9094e4c980c74043a4b586b420e69ddf"}"#).await.assert_error(400, "invalid_guid");
    app.post_guid(r#"{"guid": 42}"#).await.assert_error(400, "invalid_guid");
    app.post_guid(r#"{"guid": null}"#).await.assert_error(400, "invalid_guid");
    let other = "0000E4C980C74043A4B586B420E69DDF";
    app.post_guid_at(GUID, &format!(r#"{{"guid": "{other}"}}"#)).await.assert_error(400, "guid_mismatch");
    app.post_guid_at(GUID, r#"{"guid": 42}"#).await.assert_error(400, "guid_mismatch");
    let same = app.post_guid_at(GUID, &format!(r#"{{"guid": "{GUID}"}}"#)).await;
    assert_eq!(same.status, 201);
    app.get_guid(other).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn expire_must_be_a_future_decimal_integer_or_digit_string() {
    let app = spawn_app().await;
    let bad = [
        format!("{NOW}"),
        format!("{}", NOW - 1),
        "0".to_owned(),
        "-5".to_owned(),
        "1e10".to_owned(),
        "5.0".to_owned(),
        format!("{}.0", NOW + 100),
        format!("\"{}\"", NOW),
        format!("\" {}\"", NOW + 100),
        format!("\"+{}\"", NOW + 100),
        format!("\"{}.5\"", NOW + 100),
        "\"\"".to_owned(),
        "\"１８００００００００\"".to_owned(),
        "253402300800".to_owned(),
        "99999999999999999999999".to_owned(),
        "null".to_owned(),
        "true".to_owned(),
        "[1800000000]".to_owned(),
    ];
    for expire in &bad {
        let response = app.post_guid(&format!(r#"{{"expire": {expire}}}"#)).await;
        response.assert_error(400, "invalid_expire");
    }
    for good in ["253402300799", "\"253402300799\"", &format!("{}", NOW + 1)] {
        assert_eq!(app.post_guid(&format!(r#"{{"expire": {good}}}"#)).await.status, 201, "{good}");
    }
}

#[tokio::test]
async fn user_must_be_a_non_empty_string() {
    let app = spawn_app().await;
    for user in ["\"\"", "null", "5", "[\"a\"]", "{}"] {
        app.post_guid(&format!(r#"{{"user": {user}}}"#)).await.assert_error(400, "invalid_metadata");
    }
    assert_eq!(app.post_guid(r#"{"user": "é"}"#).await.status, 201);
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_are_400_invalid_json() {
    let app = spawn_app().await;
    let deep = "[".repeat(60_000);
    let deep_object = format!("{{\"a\": {}", "{\"a\": ".repeat(10_000));
    let bad: Vec<&[u8]> = vec![
        b"[]",
        b"\"text\"",
        b"null",
        b"42",
        b"{",
        b"{\"a\": 1,}",
        b"{\"a\": 1} trailing",
        b"{\"user\": \"a\", \"user\": \"b\"}",
        b"{\"a\": {\"b\": 1, \"b\": 2}}",
        b"{\"a\": \"\xff\xfe\"}",
        b"\xef\xbb\xbf{}",
        deep.as_bytes(),
        deep_object.as_bytes(),
        b"   ",
    ];
    for body in bad {
        let response = app.request_bytes("POST", "/guid", &[], body.to_vec()).await;
        response.assert_error(400, "invalid_json");
    }
    app.create_at(GUID, "").await;
    let response = app.request_bytes("PATCH", &format!("/guid/{GUID}"), &[], deep.into()).await;
    response.assert_error(400, "invalid_json");
}

#[tokio::test]
async fn bodies_are_parsed_as_json_whatever_the_content_type() {
    let app = spawn_app().await;
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    let response = app.request("POST", "/guid", &headers, r#"{"user": "curl"}"#).await;
    assert_eq!(response.status, 201);
    assert_eq!(response.json()["user"], "curl");
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let app = spawn_app().await;
    for method in ["PUT", "OPTIONS", "TRACE", "BREW"] {
        let item = app.request(method, &format!("/guid/{GUID}"), &[], "").await;
        item.assert_error(405, "method_not_allowed");
        assert_eq!(item.header("allow"), Some("GET, HEAD, POST, PATCH, DELETE"));
    }
    for method in ["GET", "PUT", "PATCH", "DELETE"] {
        let collection = app.request(method, "/guid", &[], "").await;
        collection.assert_error(405, "method_not_allowed");
        assert_eq!(collection.header("allow"), Some("POST"));
    }
    // The method is checked before the GUID.
    app.request("PUT", "/guid/not-a-guid", &[], "").await.assert_error(405, "method_not_allowed");
    let head = app.request("HEAD", "/guid", &[], "").await;
    assert_eq!((head.status, head.header("allow")), (405, Some("POST")));
}

#[tokio::test]
async fn unknown_paths_are_404_with_a_json_body() {
    let app = spawn_app().await;
    for path in ["/", "/guids", "/GUID", "/guid/a/b", &format!("/guid/{GUID}/extra"), "/healthz/x", "/%2e%2e/"] {
        for method in ["GET", "POST", "DELETE"] {
            app.request(method, path, &[], "").await.assert_error(404, "not_found");
        }
    }
}

#[tokio::test]
async fn a_query_string_does_not_change_the_route() {
    let app = spawn_app().await;
    app.create_at(GUID, "").await;
    assert_eq!(app.request("GET", &format!("/guid/{GUID}?x=1"), &[], "").await.status, 200);
}

#[tokio::test]
async fn a_hundred_thousand_nested_brackets_are_400_when_the_limit_allows_them() {
    let options = crate::helpers::AppOptions::with(|config| config.max_body = 1 << 20);
    let app = crate::helpers::spawn_app_with(options).await;
    for body in ["[".repeat(100_000), "{\"a\":".repeat(100_000)] {
        app.post_guid(&body).await.assert_error(400, "invalid_json");
    }
    assert_eq!(app.request("GET", "/healthz", &[], "").await.status, 200);
}
