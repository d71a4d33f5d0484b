//! Operations endpoints and background work: `/healthz`, `/metrics`, the purge task.

use std::time::Duration;

use guidstore_server::Application;
use guidstore_server::config::Config;

use crate::helpers::{AppOptions, GUID, NOW, TestTls, client_for, spawn_app, spawn_app_with};

#[tokio::test]
async fn healthz_answers_ok_when_the_store_answers() {
    let app = spawn_app().await;
    let response = app.request("GET", "/healthz", &[], "").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.json(), serde_json::json!({"status": "ok"}));
    let post = app.request("POST", "/healthz", &[], "").await;
    post.assert_error(405, "method_not_allowed");
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn metrics_count_requests_by_route_method_and_status_in_prometheus_format() {
    let app = spawn_app().await;
    app.create_at(GUID, "").await;
    app.get_guid(GUID).await;
    app.get_guid(GUID).await;
    app.get_guid("bad").await;
    app.request("GET", "/nowhere", &[], "").await;
    let response = app.request("GET", "/metrics", &[], "").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = String::from_utf8(response.body.clone()).unwrap();
    for line in [
        "guidstore_http_requests_total{route=\"/guid/{guid}\",method=\"POST\",status=\"201\"} 1\n",
        "guidstore_http_requests_total{route=\"/guid/{guid}\",method=\"GET\",status=\"200\"} 2\n",
        "guidstore_http_requests_total{route=\"/guid/{guid}\",method=\"GET\",status=\"400\"} 1\n",
        "guidstore_http_requests_total{route=\"other\",method=\"GET\",status=\"404\"} 1\n",
        "# TYPE guidstore_http_request_duration_seconds histogram\n",
        "guidstore_http_request_duration_seconds_count{route=\"/guid/{guid}\"} 4\n",
        "guidstore_cache_hits_total 2\n",
        "guidstore_cache_misses_total 0\n",
        "guidstore_records_purged_total 0\n",
        "guidstore_store_errors_total 0\n",
        "guidstore_store_writes_total 1\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[tokio::test]
async fn the_purge_task_removes_expired_records_in_batches() {
    let app = spawn_app_with(AppOptions::with(|config| {
        config.purge_interval = Duration::from_millis(20);
        config.purge_batch = 2;
    }))
    .await;
    for n in 0..5 {
        app.post_guid(&format!(r#"{{"expire": {}, "n": {n}}}"#, NOW + 10)).await;
    }
    app.create_at(GUID, &format!(r#"{{"expire": {}}}"#, NOW + 1000)).await;
    app.clock.advance(10);
    tokio::time::timeout(Duration::from_secs(10), async {
        while !app.metrics().await.contains("guidstore_records_purged_total 5\n") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("expired records were not purged");
    assert_eq!(app.get_guid(GUID).await.status, 200);
    assert_eq!(app.state.store.stats().unwrap().records, 1);
    app.stop().await;
}

#[tokio::test]
async fn purge_expired_reports_how_many_records_it_removed() {
    let app = spawn_app().await;
    for _ in 0..7 {
        app.post_guid(&format!(r#"{{"expire": {}}}"#, NOW + 1)).await;
    }
    app.clock.advance(1);
    assert_eq!(guidstore_server::purge_expired(&app.state.store, 3).await.unwrap(), 7);
    assert_eq!(guidstore_server::purge_expired(&app.state.store, 3).await.unwrap(), 0);
}

#[tokio::test]
async fn records_survive_a_restart_on_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let options = AppOptions::default();
    // Under GUIDSTORE_TEST_TLS=1 over HTTPS too: the same certificates for both runs.
    let tls = options.tls.as_ref().map(|tls_options| TestTls::new(dir.path(), tls_options));
    let mut config = Config { db: dir.path().join("guids.db").to_string_lossy().into_owned(), ..options.config };
    if let Some(tls) = &tls {
        config = tls.configure(config);
    }
    for round in 0..2 {
        let app = Application::build(config.clone()).await.unwrap();
        let client = client_for(app.url(), tls.as_ref());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let path = format!("/guid/{GUID}");
        let response = if round == 0 {
            client.request("POST", &path, &[], "").await.unwrap()
        } else {
            client.request("GET", &path, &[], "").await.unwrap()
        };
        assert_eq!(response.status, if round == 0 { 201 } else { 200 });
        drop(client);
        let _ = stop.send(());
        let stopped = server.await.unwrap();
        tokio::task::spawn_blocking(move || stopped.close()).await.unwrap().unwrap();
    }
}
