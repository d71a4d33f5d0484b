//! Optional bearer-token authentication: every route but `/healthz` needs a listed token.

use crate::helpers::{AppOptions, GUID, TOKEN, spawn_app_with};

async fn spawn_authenticated() -> crate::helpers::TestApp {
    spawn_app_with(AppOptions { tokens: Some(vec!["other-token", TOKEN]), ..AppOptions::default() }).await
}

#[tokio::test]
async fn requests_without_a_valid_bearer_token_get_401_with_www_authenticate() {
    let app = spawn_authenticated().await;
    let wrong = [
        vec![],
        vec![("authorization", "Bearer wrong")],
        vec![("authorization", "Bearer test-token-7f3")],
        vec![("authorization", "Basic dGVzdC10b2tlbi03ZjNh")],
        vec![("authorization", TOKEN)],
    ];
    for headers in &wrong {
        for (method, path) in [
            ("GET", format!("/guid/{GUID}")),
            ("POST", "/guid".to_owned()),
            ("DELETE", format!("/guid/{GUID}")),
            ("GET", "/metrics".to_owned()),
            ("GET", "/unknown".to_owned()),
            ("PUT", "/guid".to_owned()),
        ] {
            let response = app.request(method, &path, headers, "{}").await;
            response.assert_error(401, "unauthorized");
            assert_eq!(response.header("www-authenticate"), Some("Bearer realm=\"guidstore\""));
        }
    }
    assert_eq!(app.state.store.counters().writes, 0);
}

#[tokio::test]
async fn a_listed_token_opens_every_route() {
    let app = spawn_authenticated().await;
    let bearer = format!("Bearer {TOKEN}");
    let headers = [("authorization", bearer.as_str())];
    assert_eq!(app.request("POST", &format!("/guid/{GUID}"), &headers, "").await.status, 201);
    assert_eq!(app.request("GET", &format!("/guid/{GUID}"), &headers, "").await.status, 200);
    let lower = [("authorization", "bearer other-token")];
    assert_eq!(app.request("PATCH", &format!("/guid/{GUID}"), &lower, "{}").await.status, 200);
    app.request("GET", "/unknown", &headers, "").await.assert_error(404, "not_found");
}

#[tokio::test]
async fn healthz_needs_no_token() {
    let app = spawn_authenticated().await;
    let response = app.request("GET", "/healthz", &[], "").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), serde_json::json!({"status": "ok"}));
}
