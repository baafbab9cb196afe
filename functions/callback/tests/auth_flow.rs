//! The whole login as a browser does it, against the REAL local OIDC provider, PostgreSQL and
//! LocalStack: login → provider's form → code → callback → authenticated upload.

use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{Body, Response};
use mecapy_testkit::{
    self, body_json, browser_login, json_request, multipart_request, request, TestContext,
};
use serde_json::{json, Value};

/// `login`'s own state, from the same settings as the test's.
fn login_state(ctx: &TestContext) -> login::LoginState {
    login::LoginState::new(ctx.edge.clone(), ctx.login.clone(), ctx.state.oidc.clone())
}

async fn start_login(ctx: &TestContext) -> Value {
    let r = login::handle(
        login_state(ctx),
        json_request(Method::POST, "/auth/login", None, &json!({})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
    body_json(&r)
}

async fn callback(ctx: &TestContext, body: Value) -> Response<Body> {
    callback::handle(
        ctx.state.clone(),
        json_request(Method::POST, "/auth/callback", None, &body),
    )
    .await
    .unwrap()
}

/// Starts a login and completes the provider's form as `user`; returns (login, code).
async fn code_for(ctx: &TestContext, user: &str, password: &str) -> (Value, String) {
    let login = start_login(ctx).await;
    let browser = browser_login(
        login["authorization_url"].as_str().unwrap(),
        login["redirect_uri"].as_str().unwrap(),
        user,
        password,
    )
    .await
    .expect("browser login");
    assert_eq!(
        browser.state.as_deref(),
        login["state"].as_str(),
        "state comes back unchanged"
    );
    (login, browser.code.expect("code in redirect"))
}

fn assert_problem(r: &Response<Body>, status: StatusCode, field: Option<&str>) -> Value {
    let body = mecapy_testkit::assert_problem(r, status);
    if let Some(field) = field {
        assert_eq!(body["field"], field, "{body}");
    }
    body
}

#[tokio::test]
async fn browser_login_then_authenticated_upload() {
    let ctx = TestContext::new().await;
    let login = start_login(&ctx).await;
    let url = url::Url::parse(login["authorization_url"].as_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert!(url.path().ends_with("/protocol/openid-connect/auth"));
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["client_id"], "mecapy-api");
    assert_eq!(
        q["code_challenge"],
        mecapy_shared::auth::pkce::challenge_s256(login["code_verifier"].as_str().unwrap())
    );

    let browser = browser_login(
        url.as_str(),
        login["redirect_uri"].as_str().unwrap(),
        "alice",
        "alice-password",
    )
    .await
    .unwrap();
    let r = callback(
        &ctx,
        json!({
            "code": browser.code.unwrap(),
            "code_verifier": login["code_verifier"],
            "state": browser.state.unwrap(),
        }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
    let session = body_json(&r);
    assert_eq!(session["token_type"], "Bearer");
    assert!(session["expires_in"].as_u64().unwrap() > 0);
    assert_eq!(session["user"]["email"], "alice@mecapy.dev");
    assert_eq!(session["user"]["name"], "Alice Martin");
    let user_id = session["user"]["id"].as_str().unwrap().to_string();

    let db = ctx.db().await;
    let row = db
        .query_one(
            "SELECT email, last_login_at IS NOT NULL FROM users WHERE id::text = $1",
            &[&user_id],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("alice@mecapy.dev")
    );
    assert!(row.get::<_, bool>(1));

    let token = session["access_token"].as_str().unwrap();
    let r = upload::handle(
        ctx.state.clone(),
        multipart_request(
            "/files",
            Some(token),
            "measures.csv",
            "text/csv",
            b"t,x\n0,1\n",
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.body());
    assert_eq!(ctx.object_keys().await, [format!("{user_id}/measures.csv")]);

    // A second login of the same person updates the same row.
    let (login, code) = code_for(&ctx, "alice", "alice-password").await;
    let r = callback(
        &ctx,
        json!({"code": code, "code_verifier": login["code_verifier"], "state": login["state"]}),
    )
    .await;
    assert_eq!(body_json(&r)["user"]["id"], user_id.as_str());
    let count: i64 = db
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

#[tokio::test]
async fn wrong_password_gives_no_code() {
    let ctx = TestContext::new().await;
    let login = start_login(&ctx).await;
    let err = browser_login(
        login["authorization_url"].as_str().unwrap(),
        login["redirect_uri"].as_str().unwrap(),
        "alice",
        "not-her-password",
    )
    .await
    .unwrap_err();
    assert!(err.contains("did not redirect"), "{err}");
}

#[tokio::test]
async fn reused_code_is_refused_without_server_error() {
    let ctx = TestContext::new().await;
    let (login, code) = code_for(&ctx, "bob", "bob-password").await;
    let body =
        json!({"code": code, "code_verifier": login["code_verifier"], "state": login["state"]});
    assert_eq!(callback(&ctx, body.clone()).await.status(), StatusCode::OK);
    assert_problem(
        &callback(&ctx, body).await,
        StatusCode::BAD_REQUEST,
        Some("code"),
    );
}

#[tokio::test]
async fn bad_code_is_refused() {
    let ctx = TestContext::new().await;
    let login = start_login(&ctx).await;
    let r = callback(
        &ctx,
        json!({"code": "made-up-code", "code_verifier": login["code_verifier"], "state": login["state"]}),
    )
    .await;
    let body = assert_problem(&r, StatusCode::BAD_REQUEST, Some("code"));
    assert!(
        body["detail"].as_str().unwrap().contains("invalid_grant"),
        "{body}"
    );
}

#[tokio::test]
async fn wrong_verifier_is_refused_before_the_provider() {
    let ctx = TestContext::new().await;
    let (login, code) = code_for(&ctx, "alice", "alice-password").await;
    let other = mecapy_shared::auth::pkce::new_verifier();
    let r = callback(
        &ctx,
        json!({"code": code, "code_verifier": other, "state": login["state"]}),
    )
    .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, Some("code_verifier"));
}

#[tokio::test]
async fn state_mismatch_is_refused() {
    let ctx = TestContext::new().await;
    let (login, code) = code_for(&ctx, "alice", "alice-password").await;
    let other_login = start_login(&ctx).await;
    // The state of another login: its challenge is not this verifier's.
    let r = callback(
        &ctx,
        json!({"code": code, "code_verifier": login["code_verifier"], "state": other_login["state"]}),
    )
    .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, Some("code_verifier"));
    // A tampered or foreign state.
    for state in ["garbage", "eyJyIjoiaHR0cDovL2V2aWwifQ.c2ln"] {
        let r = callback(
            &ctx,
            json!({"code": code, "code_verifier": login["code_verifier"], "state": state}),
        )
        .await;
        assert_problem(&r, StatusCode::BAD_REQUEST, Some("state"));
    }
}

#[tokio::test]
async fn malformed_bodies_name_the_field() {
    let ctx = TestContext::new().await;
    let r = callback(
        &ctx,
        json!({"code": 12, "code_verifier": "x", "state": "y"}),
    )
    .await;
    let body = assert_problem(&r, StatusCode::BAD_REQUEST, Some("code"));
    assert!(body["detail"].as_str().unwrap().contains("code"));
    let r = callback(&ctx, json!({"code": "c", "state": "y"})).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, Some("code_verifier"));
    let r = callback(
        &ctx,
        json!({"code": "c", "code_verifier": "short", "state": "y"}),
    )
    .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, Some("code_verifier"));

    let mut raw = request(
        Method::POST,
        "/auth/callback",
        None,
        Body::from("{\"code\": "),
    );
    raw.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    let r = callback::handle(ctx.state.clone(), raw).await.unwrap();
    let body = assert_problem(&r, StatusCode::BAD_REQUEST, None);
    assert!(body["detail"].as_str().unwrap().contains("malformed JSON"));

    let mut form = request(Method::POST, "/auth/callback", None, Body::from("code=x"));
    form.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    let r = callback::handle(ctx.state.clone(), form).await.unwrap();
    assert_problem(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, None);

    let big = json!({"code": "x".repeat(300_000), "code_verifier": "v", "state": "s"});
    assert_problem(
        &callback(&ctx, big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        None,
    );
}

#[tokio::test]
async fn login_refuses_redirect_uri_outside_allow_list() {
    let ctx = TestContext::new().await;
    let r = login::handle(
        login_state(&ctx),
        json_request(
            Method::POST,
            "/auth/login",
            None,
            &json!({"redirect_uri": "http://evil.example/cb"}),
        ),
    )
    .await
    .unwrap();
    assert_problem(&r, StatusCode::BAD_REQUEST, Some("redirect_uri"));
    let r = login::handle(
        login_state(&ctx),
        json_request(Method::POST, "/auth/login", None, &json!({"unexpected": 1})),
    )
    .await
    .unwrap();
    assert_problem(&r, StatusCode::BAD_REQUEST, None);
    let r = login::handle(
        login_state(&ctx),
        request(Method::GET, "/auth/login", None, Body::Empty),
    )
    .await
    .unwrap();
    assert_problem(&r, StatusCode::METHOD_NOT_ALLOWED, None);
    assert_eq!(r.headers()[header::ALLOW], "POST, OPTIONS");
}

#[tokio::test]
async fn versioned_accept_header_is_honoured() {
    let ctx = TestContext::new().await;
    let mut req = json_request(Method::POST, "/auth/login", None, &json!({}));
    req.headers_mut().insert(
        header::ACCEPT,
        "application/vnd.mecapy.v1+json".parse().unwrap(),
    );
    let r = login::handle(login_state(&ctx), req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()[header::CONTENT_TYPE],
        "application/vnd.mecapy.v1+json"
    );

    let mut req = json_request(Method::POST, "/auth/login", None, &json!({}));
    req.headers_mut().insert(
        header::ACCEPT,
        "application/vnd.mecapy.v2+json".parse().unwrap(),
    );
    let r = login::handle(login_state(&ctx), req).await.unwrap();
    assert_problem(&r, StatusCode::NOT_ACCEPTABLE, None);
}

#[tokio::test]
async fn cors_is_restricted_to_configured_origins_and_security_headers_are_set() {
    let ctx = TestContext::new().await;
    let allowed = &ctx.edge.allowed_origins[0];
    let mut req = json_request(Method::POST, "/auth/login", None, &json!({}));
    req.headers_mut()
        .insert(header::ORIGIN, allowed.parse().unwrap());
    let r = login::handle(login_state(&ctx), req).await.unwrap();
    assert_eq!(
        r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        allowed.as_str()
    );
    for name in [
        "strict-transport-security",
        "x-content-type-options",
        "x-frame-options",
        "content-security-policy",
        "x-request-id",
    ] {
        assert!(r.headers().contains_key(name), "missing {name}");
    }
    assert_eq!(r.headers()["x-frame-options"], "DENY");

    let mut req = json_request(Method::POST, "/auth/login", None, &json!({}));
    req.headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    let r = login::handle(login_state(&ctx), req).await.unwrap();
    assert!(!r
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));

    let mut preflight = request(Method::OPTIONS, "/files", None, Body::Empty);
    preflight
        .headers_mut()
        .insert(header::ORIGIN, allowed.parse().unwrap());
    let r = upload::handle(ctx.state.clone(), preflight).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .contains("Authorization"));
    let mut preflight = request(Method::OPTIONS, "/files", None, Body::Empty);
    preflight
        .headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    let r = upload::handle(ctx.state.clone(), preflight).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn provider_down_is_503_not_500() {
    let ctx = TestContext::with_oidc(|c| {
        c.issuer = "http://127.0.0.1:9/realms/mecapy".into();
    })
    .await;
    let r = login::handle(
        login_state(&ctx),
        json_request(Method::POST, "/auth/login", None, &json!({})),
    )
    .await
    .unwrap();
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE, None);
}
