//! `/healthz`, `/livez` and `/readyz`.

use super::*;

#[tokio::test]
async fn healthz_is_up_while_the_store_answers() {
    let app = test_app!();

    let response = app.send(request(Method::GET, "/healthz", &[])).await;

    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.json()["status"], "ok");
}

#[tokio::test]
async fn healthz_is_unavailable_when_the_store_is_closed() {
    let app = test_app!();
    app.store.close().await;

    let response = app.send(request(Method::GET, "/healthz", &[])).await;

    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.error_code(), "unavailable");
}


#[tokio::test]
async fn readyz_turns_unavailable_when_draining_begins_while_the_rest_serves() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();
    for path in ["/livez", "/readyz"] {
        let response = app.send(request(Method::GET, path, &[])).await;
        assert_eq!(response.status, StatusCode::OK, "{path}");
        assert_eq!(response.json()["status"], "ok");
    }

    app.auth.begin_draining();

    let ready = app.send(request(Method::GET, "/readyz", &[])).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.error_code(), "shutting_down");
    ready.assert_no_store();
    for path in ["/livez", "/healthz"] {
        let response = app.send(request(Method::GET, path, &[])).await;
        assert_eq!(response.status, StatusCode::OK, "{path}");
    }
    let protected = app.get_with_bearer("/protected", &access).await;
    assert_eq!(protected.status, StatusCode::OK, "still serving");
}

#[tokio::test]
async fn readyz_is_unavailable_and_livez_up_when_the_store_is_closed() {
    let app = test_app!();
    app.store.close().await;

    let ready = app.send(request(Method::GET, "/readyz", &[])).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.error_code(), "unavailable");
    let live = app.send(request(Method::GET, "/livez", &[])).await;
    assert_eq!(live.status, StatusCode::OK, "the process still serves");
}
