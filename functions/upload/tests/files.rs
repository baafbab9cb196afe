//! `/files` against the REAL PostgreSQL and LocalStack S3, with tokens signed by the REAL local
//! OIDC provider: uploads, presigned uploads, listing, and every bad input. After each refusal
//! nothing is written: no object without its row, no row without its object.

use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{Body, Response};
use mecapy_shared::AppState;
use mecapy_testkit::{
    assert_created, assert_problem, body_json, get_request, json_request, multipart_request,
    multipart_request_with, presign_body, presign_request, put_presigned, put_to_grant, request,
    TestContext,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

async fn call(state: &AppState, req: lambda_http::Request) -> Response<Body> {
    upload::handle(state.clone(), req).await.unwrap()
}

/// `POST /files/presign` refuses `name` with a 400 on the `filename` field.
async fn presign_refuses_the_name(ctx: &TestContext, token: &str, name: &str) {
    let r = call(
        &ctx.state,
        presign_request(token, &presign_body(name, "text/csv", b"1")),
    )
    .await;
    let body = problem(&r, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "filename", "{name:?}: {body}");
}

/// `POST /files/presign` of `body`, granted: the grant (the pending file, its upload URL).
async fn presigned(ctx: &TestContext, token: &str, body: Value) -> Value {
    assert_created(&call(&ctx.state, presign_request(token, &body)).await)
}

fn problem(r: &Response<Body>, status: StatusCode) -> Value {
    assert_problem(r, status)
}

/// What the test's database and bucket hold: (available rows, all rows, objects).
async fn written(ctx: &TestContext) -> (i64, i64, usize) {
    let available: i64 = ctx
        .query_value("SELECT count(*) FROM files WHERE status = 'available'", &[])
        .await;
    let all: i64 = ctx.query_value("SELECT count(*) FROM files", &[]).await;
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
    let file = assert_created(&r);
    assert_eq!(file["filename"], "forces.csv");
    assert_eq!(file["size_bytes"], data.len());
    assert_eq!(file["content_type"], "text/csv");
    assert_eq!(file["status"], "available");
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(&data)));
    assert!(file["etag"].is_string());

    let user_id: uuid::Uuid = ctx
        .query_value("SELECT id FROM users WHERE keycloak_sub = 'uploader'", &[])
        .await;
    assert_eq!(ctx.object_keys().await, [format!("{user_id}/forces.csv")]);

    let id = file["id"].as_str().unwrap();
    let r = call(&ctx.state, get_request(&format!("/files/{id}"), &token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let meta = body_json(&r);
    let download = reqwest::get(meta["download_url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.bytes().await.unwrap().as_ref(), data.as_slice());

    let r = call(&ctx.state, get_request("/files", &token)).await;
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
        presign_refuses_the_name(&ctx, &token, name).await;
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
        presign_request(
            &token,
            &json!({"filename": "huge.bin", "size": 1u64 << 50, "sha256": "0".repeat(64)}),
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
    let r = call(&ctx.state, get_request("/files", &mallory)).await;
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
    let object = ctx.object_bytes(&ctx.object_keys().await[0]).await;
    assert_eq!(object, b"first");
}

#[tokio::test]
async fn presigned_upload_is_recorded_after_the_object_exists() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("presigner").await;
    let data = vec![42u8; 300_000];
    let grant = presigned(
        &ctx,
        &token,
        presign_body("mesh.vtk", "application/octet-stream", &data),
    )
    .await;
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
    let r = call(&ctx.state, get_request("/files", &token)).await;
    assert_eq!(body_json(&r)["items"], json!([]));

    put_presigned(&grant, &data).await;

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
    let r = call(&ctx.state, get_request("/files?limit=2", &token)).await;
    let page = body_json(&r);
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["f4.txt", "f3.txt"]);
    assert_eq!(page["next"], "/files?limit=2&offset=2");
    let r = call(&ctx.state, get_request("/files?limit=2&offset=4", &token)).await;
    let last = body_json(&r);
    assert_eq!(last["items"].as_array().unwrap().len(), 1);
    assert_eq!(last["next"], Value::Null);
    let r = call(&ctx.state, get_request("/files?limit=0", &token)).await;
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
    let r = call(&state, get_request("/files", &token)).await;
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
    let r = call(&ctx.state, get_request("/files/a/b/c", &token)).await;
    problem(&r, StatusCode::NOT_FOUND);
}

/// A multipart upload whose `file` part has these Content-Disposition parameters after
/// `form-data; name="file"; `.
async fn upload_with(ctx: &TestContext, token: &str, params: &str, data: &[u8]) -> Response<Body> {
    let disposition = format!("form-data; name=\"file\"; {params}");
    let req = multipart_request_with(
        "/files",
        Some(token),
        disposition.as_bytes(),
        "text/csv",
        data,
    );
    call(&ctx.state, req).await
}

async fn listed_names(ctx: &TestContext, token: &str) -> Vec<String> {
    let r = call(&ctx.state, get_request("/files", token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut names: Vec<String> = body_json(&r)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn escaped_quotes_are_stored_as_sent_and_names_stay_distinct() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("quoter").await;
    // curl --form-escape writes `\"`; browsers write `%22`.
    for (params, stored) in [
        (r#"filename="we\"ird1.csv""#, "we\"ird1.csv"),
        (r#"filename="we\"ird2.csv""#, "we\"ird2.csv"),
        (r#"filename="we%22ird3.csv""#, "we\"ird3.csv"),
        (r#"filename="100%.csv""#, "100%.csv"),
    ] {
        let r = upload_with(&ctx, &token, params, b"1").await;
        assert_eq!(r.status(), StatusCode::CREATED, "{params}: {:?}", r.body());
        assert_eq!(body_json(&r)["filename"], stored);
    }
    assert_eq!(
        listed_names(&ctx, &token).await,
        ["100%.csv", "we\"ird1.csv", "we\"ird2.csv", "we\"ird3.csv"]
    );
    let keys = ctx.object_keys().await;
    assert!(
        keys.iter().any(|k| k.ends_with("/we\"ird1.csv")),
        "{keys:?}"
    );
    // The same escaped name again is the same file.
    let r = upload_with(&ctx, &token, r#"filename="we\"ird1.csv""#, b"2").await;
    problem(&r, StatusCode::CONFLICT);
    assert_eq!(written(&ctx).await, (4, 4, 4));
}

#[tokio::test]
async fn nfc_and_nfd_spellings_are_one_name() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("accents").await;
    let nfc = "caf\u{e9}.csv";
    let nfd = "cafe\u{301}.csv";
    let r = call(
        &ctx.state,
        multipart_request("/files", Some(&token), nfd, "text/csv", b"first"),
    )
    .await;
    assert_eq!(assert_created(&r)["filename"], nfc);
    for name in [nfc, nfd] {
        let r = call(
            &ctx.state,
            multipart_request("/files", Some(&token), name, "text/csv", b"second"),
        )
        .await;
        let body = problem(&r, StatusCode::CONFLICT);
        assert!(body["detail"].as_str().unwrap().contains(nfc), "{body}");
    }
    let r = upload_with(&ctx, &token, "filename*=UTF-8''cafe%CC%81.csv", b"third").await;
    problem(&r, StatusCode::CONFLICT);
    assert_eq!(written(&ctx).await, (1, 1, 1));
    assert!(ctx.object_keys().await[0].ends_with(&format!("/{nfc}")));
}

#[tokio::test]
async fn presign_normalises_the_name_before_reserving_it() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("presign-accents").await;
    let nfd = "re\u{301}sume\u{301}.csv";
    let nfc = "r\u{e9}sum\u{e9}.csv";
    let grant = presigned(&ctx, &token, presign_body(nfd, "text/csv", b"1,2\n")).await;
    assert_eq!(grant["file"]["filename"], nfc);
    put_presigned(&grant, b"1,2\n").await;
    let complete = format!("/files/{}/complete", grant["file"]["id"].as_str().unwrap());
    let r = call(
        &ctx.state,
        request(Method::POST, &complete, Some(&token), Body::Empty),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
    assert_eq!(listed_names(&ctx, &token).await, [nfc]);
    assert!(ctx.object_keys().await[0].ends_with(&format!("/{nfc}")));
    // The NFC spelling, through either route, is the same name.
    let r = call(
        &ctx.state,
        multipart_request("/files", Some(&token), nfc, "text/csv", b"x"),
    )
    .await;
    problem(&r, StatusCode::CONFLICT);
}

#[tokio::test]
async fn invisible_and_bidi_characters_in_names_are_400_naming_them() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("spoofer").await;
    for (name, code_point) in [
        ("invoice\u{202E}vsc.exe", "U+202E"),
        ("a\u{200B}.csv", "U+200B"),
        ("\u{FEFF}a.csv", "U+FEFF"),
    ] {
        let r = call(
            &ctx.state,
            multipart_request("/files", Some(&token), name, "text/csv", b"1"),
        )
        .await;
        let body = problem(&r, StatusCode::BAD_REQUEST);
        assert_eq!(body["field"], "filename", "{name:?}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(code_point),
            "{body}"
        );
        presign_refuses_the_name(&ctx, &token, name).await;
    }
    let r = upload_with(&ctx, &token, "filename*=UTF-8''a%E2%80%AEb.csv", b"1").await;
    assert_eq!(problem(&r, StatusCode::BAD_REQUEST)["field"], "filename");
    assert_eq!(written(&ctx).await, (0, 0, 0));
}

#[tokio::test]
async fn extended_filename_round_trips_through_get_and_download() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("emoji").await;
    let name = "\u{1F4C8} r\u{e9}sultats (final).csv";
    let r = upload_with(
        &ctx,
        &token,
        "filename=\"fallback.csv\"; filename*=UTF-8''%F0%9F%93%88%20r%C3%A9sultats%20(final).csv",
        b"t,f\n0,1\n",
    )
    .await;
    let id = assert_created(&r)["id"].as_str().unwrap().to_string();
    let r = call(&ctx.state, get_request(&format!("/files/{id}"), &token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let meta = body_json(&r);
    assert_eq!(meta["filename"], name);
    let download = reqwest::get(meta["download_url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(
        download.headers()[header::CONTENT_DISPOSITION],
        "attachment; filename*=UTF-8''%F0%9F%93%88%20r%C3%A9sultats%20%28final%29.csv"
    );
    assert_eq!(download.bytes().await.unwrap().as_ref(), b"t,f\n0,1\n");
    assert_eq!(listed_names(&ctx, &token).await, [name]);
}

#[tokio::test]
async fn malformed_content_disposition_is_400_naming_the_problem() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("malformed").await;
    for (params, expected) in [
        (
            r#"filename="unterminated.csv"#,
            "unterminated quoted string",
        ),
        (r#"filename="a.csv"junk"#, "after the value"),
        (r#"filename="a.csv"; filename="b.csv""#, "sent twice"),
        ("filename*=UTF-8''caf%C3%A", "percent-encoding"),
        ("filename*=windows-1252''caf%E9.csv", "windows-1252"),
        (r#"filename="C:\Users\a.csv""#, "backslash"),
        (r#"filename="line%0Abreak.csv""#, "U+000A"),
    ] {
        let r = upload_with(&ctx, &token, params, b"1").await;
        let body = problem(&r, StatusCode::BAD_REQUEST);
        assert_eq!(body["field"], "filename", "{params}: {body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(expected), "{params}: {detail}");
    }
    assert_eq!(written(&ctx).await, (0, 0, 0));
}

/// `POST {complete}` of the grant's file by `token`.
async fn complete(ctx: &TestContext, token: &str, grant: &Value) -> Response<Body> {
    let path = format!("/files/{}/complete", grant["file"]["id"].as_str().unwrap());
    call(
        &ctx.state,
        request(Method::POST, &path, Some(token), Body::Empty),
    )
    .await
}

#[tokio::test]
async fn a_presigned_url_takes_only_the_declared_bytes_and_only_once() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("bound-uploader").await;
    let data = b"7 bytes".to_vec();
    let grant = presigned(&ctx, &token, presign_body("bound.txt", "text/plain", &data)).await;
    // What AWS checks and LocalStack does not (it verifies no signature): the URL signs the
    // headers that bind the upload, so a request without them, or with others, is refused.
    let url = grant["upload"]["url"].as_str().unwrap();
    let signed = url
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("X-Amz-SignedHeaders="))
        .expect("a SigV4 presigned URL")
        .replace("%3B", ";");
    for header in [
        "content-length",
        "content-type",
        "if-none-match",
        "x-amz-checksum-sha256",
    ] {
        assert!(signed.split(';').any(|h| h == header), "{header}: {signed}");
    }
    // Other bytes of the same length, longer, shorter: S3 checks them against the checksum.
    for other in [&b"7 BYTES"[..], b"7 bytes and more", b"7 b"] {
        let (status, body) = put_to_grant(&grant, other).await;
        assert!(status.is_client_error(), "{other:?}: {status}: {body}");
    }
    assert!(ctx.object_keys().await.is_empty());
    put_presigned(&grant, &data).await;
    let r = complete(&ctx, &token, &grant).await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
    let file = body_json(&r);
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(&data)));
    // The URL again, even with the same bytes: S3 refuses to replace the object.
    let (status, body) = put_to_grant(&grant, &data).await;
    assert_eq!(status.as_u16(), 412, "{body}");
    let (status, body) = put_to_grant(&grant, b"7 other").await;
    assert!(status.is_client_error(), "{status}: {body}");
    let key = &ctx.object_keys().await[0];
    assert_eq!(ctx.object_bytes(key).await, data);
    assert_eq!(written(&ctx).await, (1, 1, 1));
}

#[tokio::test]
async fn an_upload_that_is_not_the_declared_object_is_discarded_at_completion() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("unbound-uploader").await;
    let data = b"declared,bytes\n".to_vec();
    let grant = presigned(
        &ctx,
        &token,
        presign_body("declared.csv", "text/csv", &data),
    )
    .await;
    let url = grant["upload"]["url"].as_str().unwrap();
    // A client that leaves the signed headers out: AWS refuses it, LocalStack takes it.
    for other in [&b"declared,BYTES\n"[..], b"longer than what was declared\n"] {
        let put = reqwest::Client::new()
            .put(url)
            .header("content-type", "text/csv")
            .body(other.to_vec())
            .send()
            .await
            .unwrap();
        assert!(
            put.status().is_success(),
            "LocalStack took it: {}",
            put.status()
        );
        let r = complete(&ctx, &token, &grant).await;
        let body = problem(&r, StatusCode::CONFLICT);
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("not the declared one"),
            "{body}"
        );
        assert!(
            ctx.object_keys().await.is_empty(),
            "the object was discarded"
        );
        assert_eq!(written(&ctx).await, (0, 1, 0), "the reservation is kept");
    }
    put_presigned(&grant, &data).await;
    let r = complete(&ctx, &token, &grant).await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
    assert_eq!(written(&ctx).await, (1, 1, 1));
}

#[tokio::test]
async fn presigning_needs_the_size_and_a_sha256() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("undeclared").await;
    for body in [
        json!({"filename": "a.csv", "size": 3}),
        json!({"filename": "a.csv", "sha256": "0".repeat(64)}),
        json!({"filename": "a.csv", "size": 3, "sha256": "not hex"}),
        json!({"filename": "a.csv", "size": 3, "sha256": "0".repeat(63)}),
    ] {
        let r = call(&ctx.state, presign_request(&token, &body)).await;
        problem(&r, StatusCode::BAD_REQUEST);
    }
    assert_eq!(written(&ctx).await, (0, 0, 0));
}
