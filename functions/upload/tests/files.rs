//! `/files` against the REAL PostgreSQL and LocalStack S3, with tokens signed by the REAL local
//! OIDC provider: uploads, presigned uploads, listing, and every bad input. After each refusal
//! nothing is written: no object without its row, no row without its object.

use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{Body, Response};
use mecapy_shared::testing::{
    assert_problem, body_json, json_request, multipart_request, request, TestContext,
};
use mecapy_shared::AppState;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

async fn call(state: &AppState, req: lambda_http::Request) -> Response<Body> {
    upload::handle(state.clone(), req).await.unwrap()
}

fn problem(r: &Response<Body>, status: StatusCode) -> Value {
    assert_problem(r, status)
}

/// What the test's database and bucket hold: (available rows, all rows, objects).
async fn written(ctx: &TestContext) -> (i64, i64, usize) {
    let db = ctx.db().await;
    let available: i64 = db
        .query_one("SELECT count(*) FROM files WHERE status = 'available'", &[])
        .await
        .unwrap()
        .get(0);
    let all: i64 = db
        .query_one("SELECT count(*) FROM files", &[])
        .await
        .unwrap()
        .get(0);
    (available, all, ctx.object_keys().await.len())
}

#[tokio::test]
async fn upload_stores_object_and_row_then_serves_it() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("uploader").await;
    let data = b"time,force\n0,0.0\n1,9.81\n".to_vec();
    let r = call(
        &ctx.state,
        multipart_request("/files", Some(&token), "forces.csv", "text/csv", &data),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.body());
    let file = body_json(&r);
    assert_eq!(file["filename"], "forces.csv");
    assert_eq!(file["size_bytes"], data.len());
    assert_eq!(file["content_type"], "text/csv");
    assert_eq!(file["status"], "available");
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(&data)));
    assert!(file["etag"].is_string());

    let user_id: uuid::Uuid = ctx
        .db()
        .await
        .query_one("SELECT id FROM users WHERE keycloak_sub = 'uploader'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ctx.object_keys().await, [format!("{user_id}/forces.csv")]);

    let id = file["id"].as_str().unwrap();
    let r = call(
        &ctx.state,
        request(
            Method::GET,
            &format!("/files/{id}"),
            Some(&token),
            Body::Empty,
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let meta = body_json(&r);
    let download = reqwest::get(meta["download_url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.bytes().await.unwrap().as_ref(), data.as_slice());

    let r = call(
        &ctx.state,
        request(Method::GET, "/files", Some(&token), Body::Empty),
    )
    .await;
    let list = body_json(&r);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], id);
}

#[tokio::test]
async fn missing_or_invalid_token_is_401_with_www_authenticate() {
    let ctx = TestContext::new().await;
    for token in [None, Some("garbage"), Some("a.b.c")] {
        let r = call(
            &ctx.state,
            multipart_request("/files", token, "a.csv", "text/csv", b"1"),
        )
        .await;
        problem(&r, StatusCode::UNAUTHORIZED);
        assert!(r.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        let r = call(
            &ctx.state,
            request(Method::GET, "/files", token, Body::Empty),
        )
        .await;
        problem(&r, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(written(&ctx).await, (0, 0, 0));
}

#[tokio::test]
async fn bad_filenames_are_400_and_never_written() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("careless").await;
    let long = "x".repeat(300);
    for name in [
        "",
        "../etc/passwd",
        "a/b.csv",
        "a\\\\b.csv",
        "..",
        "bad\u{1}name",
        "nul\u{0}.csv",
        long.as_str(),
    ] {
        let r = call(
            &ctx.state,
            multipart_request("/files", Some(&token), name, "text/csv", b"1"),
        )
        .await;
        let body = problem(&r, StatusCode::BAD_REQUEST);
        // Raw control characters make the part header itself malformed: refused before the
        // name is even read. Either way it is a 400 and nothing is written.
        let malformed = body["detail"]
            .as_str()
            .unwrap()
            .contains("malformed multipart");
        assert!(body["field"] == "filename" || malformed, "{name:?}: {body}");
        let r = call(
            &ctx.state,
            json_request(
                Method::POST,
                "/files/presign",
                Some(&token),
                &json!({"filename": name}),
            ),
        )
        .await;
        let body = problem(&r, StatusCode::BAD_REQUEST);
        assert_eq!(body["field"], "filename", "{name:?}: {body}");
    }
    assert_eq!(written(&ctx).await, (0, 0, 0));
}

#[tokio::test]
async fn oversized_file_is_413_and_wrong_content_type_415() {
    let ctx = TestContext::with(|c| c.max_upload_bytes = 1024).await;
    let token = ctx.token_for("big").await;
    let r = call(
        &ctx.state,
        multipart_request(
            "/files",
            Some(&token),
            "big.bin",
            "application/octet-stream",
            &vec![7u8; 2048],
        ),
    )
    .await;
    problem(&r, StatusCode::PAYLOAD_TOO_LARGE);
    let r = call(
        &ctx.state,
        multipart_request(
            "/files",
            Some(&token),
            "ok.bin",
            "application/octet-stream",
            &vec![7u8; 1024],
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let r = call(
        &ctx.state,
        json_request(Method::POST, "/files", Some(&token), &json!({"file": "x"})),
    )
    .await;
    problem(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = call(
        &ctx.state,
        json_request(
            Method::POST,
            "/files/presign",
            Some(&token),
            &json!({"filename": "huge.bin", "size": 1u64 << 50}),
        ),
    )
    .await;
    problem(&r, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(written(&ctx).await, (1, 1, 1));
}

#[tokio::test]
async fn form_without_file_field_is_400() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("formless").await;
    let mut req = multipart_request("/files", Some(&token), "a.csv", "text/csv", b"1");
    let body =
        String::from_utf8_lossy(req.body().as_ref()).replace("name=\"file\"", "name=\"other\"");
    *req.body_mut() = Body::from(body);
    let r = call(&ctx.state, req).await;
    assert_eq!(problem(&r, StatusCode::BAD_REQUEST)["field"], "file");
    assert_eq!(written(&ctx).await, (0, 0, 0));
}

#[tokio::test]
async fn another_users_file_is_404() {
    let ctx = TestContext::new().await;
    let alice = ctx.token_for("alice-sub").await;
    let mallory = ctx.token_for("mallory-sub").await;
    let r = call(
        &ctx.state,
        multipart_request("/files", Some(&alice), "secret.csv", "text/csv", b"42"),
    )
    .await;
    let id = body_json(&r)["id"].as_str().unwrap().to_string();
    for (method, path) in [
        (Method::GET, format!("/files/{id}")),
        (Method::POST, format!("/files/{id}/complete")),
        (Method::GET, "/files/not-a-uuid".to_string()),
    ] {
        let r = call(
            &ctx.state,
            request(method, &path, Some(&mallory), Body::Empty),
        )
        .await;
        problem(&r, StatusCode::NOT_FOUND);
    }
    let r = call(
        &ctx.state,
        request(Method::GET, "/files", Some(&mallory), Body::Empty),
    )
    .await;
    assert_eq!(body_json(&r)["items"], json!([]));
}

#[tokio::test]
async fn same_name_twice_is_409_and_keeps_the_first() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("twice").await;
    let r = call(
        &ctx.state,
        multipart_request("/files", Some(&token), "a.csv", "text/csv", b"first"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = call(
        &ctx.state,
        multipart_request("/files", Some(&token), "a.csv", "text/csv", b"second"),
    )
    .await;
    problem(&r, StatusCode::CONFLICT);
    let object = ctx
        .state
        .storage
        .client()
        .get_object()
        .bucket(&ctx.bucket)
        .key(ctx.object_keys().await[0].clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        object.body.collect().await.unwrap().into_bytes().as_ref(),
        b"first"
    );
}

#[tokio::test]
async fn presigned_upload_is_recorded_after_the_object_exists() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("presigner").await;
    let r = call(
        &ctx.state,
        json_request(
            Method::POST,
            "/files/presign",
            Some(&token),
            &json!({"filename": "mesh.vtk", "content_type": "application/octet-stream"}),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.body());
    let grant = body_json(&r);
    let id = grant["file"]["id"].as_str().unwrap().to_string();
    assert_eq!(grant["file"]["status"], "pending");

    // Completing before the PUT is refused, and the pending file is not listed.
    let complete = format!("/files/{id}/complete");
    let r = call(
        &ctx.state,
        request(Method::POST, &complete, Some(&token), Body::Empty),
    )
    .await;
    problem(&r, StatusCode::CONFLICT);
    let r = call(
        &ctx.state,
        request(Method::GET, "/files", Some(&token), Body::Empty),
    )
    .await;
    assert_eq!(body_json(&r)["items"], json!([]));

    let data = vec![42u8; 300_000];
    let put = reqwest::Client::new()
        .put(grant["upload"]["url"].as_str().unwrap())
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "presigned PUT: {}", put.status());

    let r = call(
        &ctx.state,
        request(Method::POST, &complete, Some(&token), Body::Empty),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
    let file = body_json(&r);
    assert_eq!(file["status"], "available");
    assert_eq!(file["size_bytes"], data.len());
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(&data)));
    assert!(file["download_url"].is_string());
    // Completing again is idempotent.
    let r = call(
        &ctx.state,
        request(Method::POST, &complete, Some(&token), Body::Empty),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(written(&ctx).await, (1, 1, 1));
}

#[tokio::test]
async fn listing_is_newest_first_and_paginated() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("lister").await;
    for i in 0..5 {
        let r = call(
            &ctx.state,
            multipart_request(
                "/files",
                Some(&token),
                &format!("f{i}.txt"),
                "text/plain",
                b"x",
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = call(
        &ctx.state,
        request(Method::GET, "/files?limit=2", Some(&token), Body::Empty),
    )
    .await;
    let page = body_json(&r);
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["f4.txt", "f3.txt"]);
    assert_eq!(page["next"], "/files?limit=2&offset=2");
    let r = call(
        &ctx.state,
        request(
            Method::GET,
            "/files?limit=2&offset=4",
            Some(&token),
            Body::Empty,
        ),
    )
    .await;
    let last = body_json(&r);
    assert_eq!(last["items"].as_array().unwrap().len(), 1);
    assert_eq!(last["next"], Value::Null);
    let r = call(
        &ctx.state,
        request(Method::GET, "/files?limit=0", Some(&token), Body::Empty),
    )
    .await;
    assert_eq!(problem(&r, StatusCode::BAD_REQUEST)["field"], "limit");
}

#[tokio::test]
async fn database_down_is_503_and_leaves_no_object() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("no-db").await;
    let state = ctx.state_without_database();
    let r = call(
        &state,
        multipart_request("/files", Some(&token), "a.csv", "text/csv", b"1"),
    )
    .await;
    let body = problem(&r, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "no internal address leaks: {body}"
    );
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    let r = call(
        &state,
        request(Method::GET, "/files", Some(&token), Body::Empty),
    )
    .await;
    problem(&r, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(written(&ctx).await, (0, 0, 0));
}

#[tokio::test]
async fn storage_down_is_503_and_leaves_no_row() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("no-s3").await;
    let state = ctx.state_without_s3().await;
    let r = call(
        &state,
        multipart_request("/files", Some(&token), "a.csv", "text/csv", b"1"),
    )
    .await;
    problem(&r, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(written(&ctx).await, (0, 0, 0));
    // The name is free again once S3 is back.
    let r = call(
        &ctx.state,
        multipart_request("/files", Some(&token), "a.csv", "text/csv", b"1"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_refused() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("router").await;
    let r = call(
        &ctx.state,
        request(Method::DELETE, "/files", Some(&token), Body::Empty),
    )
    .await;
    problem(&r, StatusCode::METHOD_NOT_ALLOWED);
    let r = call(
        &ctx.state,
        request(Method::GET, "/files/a/b/c", Some(&token), Body::Empty),
    )
    .await;
    problem(&r, StatusCode::NOT_FOUND);
}
