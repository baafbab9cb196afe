//! `GET /openapi.json` and `GET /docs` in-process, without a token: the document served is the
//! committed one, the page loads nothing from elsewhere, and other methods are refused.

use std::sync::Arc;

use lambda_http::http::{header, Method, StatusCode};
use lambda_http::Body;
use mecapy_testkit::{assert_problem, request, TestContext};

async fn get(
    ctx: &TestContext,
    method: Method,
    path: &str,
    accept: Option<&str>,
) -> lambda_http::Response<Body> {
    let mut req = request(method, path, None, Body::Empty);
    if let Some(accept) = accept {
        req.headers_mut()
            .insert(header::ACCEPT, accept.parse().unwrap());
    }
    api_docs::handle(
        Arc::new(ctx.edge.clone()),
        Arc::new(api_docs::Docs::new()),
        req,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn the_document_is_served_without_a_token_and_is_the_committed_one() {
    let ctx = TestContext::new().await;
    let r = get(&ctx, Method::GET, "/dev/openapi.json", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    let served: serde_json::Value = serde_json::from_slice(r.body().as_ref()).unwrap();
    let committed: serde_json::Value =
        serde_json::to_value(mecapy_shared::api::openapi::document()).unwrap();
    assert_eq!(served, committed);
    assert_eq!(served["openapi"], "3.1.0");
    assert!(r.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn the_page_is_html_with_its_own_policy_whatever_the_accept_header() {
    let ctx = TestContext::new().await;
    for accept in [
        None,
        Some("text/html"),
        Some("application/vnd.mecapy.v1+json"),
    ] {
        let r = get(&ctx, Method::GET, "/docs", accept).await;
        assert_eq!(r.status(), StatusCode::OK, "{accept:?}");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        let html = std::str::from_utf8(r.body().as_ref()).unwrap();
        assert!(html.contains("id=\"op-submitJob\""));
        assert!(!html.contains("<script"));
    }
}

#[tokio::test]
async fn other_methods_and_paths_are_refused_as_problems() {
    let ctx = TestContext::new().await;
    let r = get(&ctx, Method::POST, "/docs", None).await;
    assert_problem(&r, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()[header::ALLOW], "GET, OPTIONS");
    let r = get(&ctx, Method::DELETE, "/openapi.json", None).await;
    assert_problem(&r, StatusCode::METHOD_NOT_ALLOWED);
    let r = get(&ctx, Method::GET, "/elsewhere", None).await;
    assert_problem(&r, StatusCode::NOT_FOUND);
}
