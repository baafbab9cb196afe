//! `GET /openapi.json` and `GET /docs`: the API's OpenAPI document and its documentation page,
//! both without a token. Both are rendered once per cold start from `shared::api::openapi`.

use std::convert::Infallible;
use std::sync::Arc;

use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use mecapy_shared::api::{docs, openapi};
use mecapy_shared::config::EdgeConfig;
use mecapy_shared::http::{self, ApiError};

/// The two representations, made once.
pub struct Docs {
    json: String,
    html: String,
}

impl Docs {
    pub fn new() -> Self {
        let json = openapi::json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        Docs {
            html: docs::page(&value),
            json,
        }
    }
}

impl Default for Docs {
    fn default() -> Self {
        Self::new()
    }
}

pub async fn handle(
    edge: Arc<EdgeConfig>,
    docs: Arc<Docs>,
    req: Request,
) -> Result<Response<Body>, Infallible> {
    http::serve_as(
        edge,
        req,
        "api-docs",
        http::Representation::Own,
        |_, req| route(docs, req),
    )
    .await
}

async fn route(docs: Arc<Docs>, req: Request) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let (body, content_type) = if path.ends_with("/openapi.json") || path == "openapi.json" {
        (docs.json.clone(), "application/json")
    } else if path.ends_with("/docs") || path == "docs" {
        (docs.html.clone(), "text/html; charset=utf-8")
    } else {
        return Err(ApiError::NotFound(format!("no route for {path}")));
    };
    http::require_method(&req, Method::GET)?;
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap_or_default();
    if content_type.starts_with("text/html") {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(docs::CONTENT_SECURITY_POLICY),
        );
    }
    Ok(response)
}
