//! What the compute-dispatch test crates share: the job API, as compute-submit serves it.
// Each test crate uses only some of these.
#![allow(dead_code)]

use std::fmt::Display;

use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use mecapy_shared::AppState;
use mecapy_testkit::{get_request, json_request};
use serde_json::Value;

/// compute-submit's answer to `req` (its handler is infallible).
pub async fn compute_api(state: &AppState, req: Request) -> Response<Body> {
    compute_submit::handle(state.clone(), req).await.unwrap()
}

/// `POST /compute` of `body` by the bearer of `token`.
pub async fn post_compute(state: &AppState, token: &str, body: &Value) -> Response<Body> {
    compute_api(
        state,
        json_request(Method::POST, "/compute", Some(token), body),
    )
    .await
}

/// `GET /compute/{id}` by the bearer of `token`.
pub async fn get_compute(state: &AppState, token: &str, id: impl Display) -> Response<Body> {
    compute_api(state, get_request(&format!("/compute/{id}"), token)).await
}
