//! The HTTP edge: one `ApiError` with a single status match rendered as problem+json, body
//! parsing, content negotiation, CORS, security headers and the request log line.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use mecapy_domain::error::DomainError;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::Problem;
use crate::auth::AuthError;
use crate::config::EdgeConfig;
use crate::db::DbError;
use crate::storage::{FilenameError, StorageError};
use crate::validation::Finding;

pub const VENDOR_JSON: &str = "application/vnd.mecapy.v1+json";
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every way a request can fail, and the one place that decides its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    BadRequest {
        detail: String,
        field: Option<String>,
    },
    /// `invalid` distinguishes a bad token (RFC 6750 `invalid_token`) from a missing one.
    #[error("{detail}")]
    Unauthorized { detail: String, invalid: bool },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method {method} is not allowed on this path")]
    MethodNotAllowed { method: String, allow: &'static str },
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request is well-formed but its content is refused; `findings` explains where.
    #[error("{detail}")]
    Unprocessable {
        detail: String,
        findings: Vec<Finding>,
    },
    /// A backing service is down; `service` is shown, `cause` only logged.
    #[error("{service} unavailable: {cause}")]
    Unavailable {
        service: &'static str,
        cause: String,
    },
    /// A bug or misconfiguration; logged with its cause, shown as a bare 500.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            detail: detail.into(),
            field: None,
        }
    }

    pub fn bad_field(field: &str, detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            detail: detail.into(),
            field: Some(field.to_string()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad-request",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::MethodNotAllowed { .. } => "method-not-allowed",
            ApiError::NotAcceptable(_) => "not-acceptable",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::Unprocessable { .. } => "unprocessable",
            ApiError::Unavailable { .. } => "service-unavailable",
            ApiError::Internal(_) => "internal-error",
        }
    }

    /// What the client may read: internal causes stay in the logs.
    fn public_detail(&self) -> String {
        match self {
            ApiError::Unavailable { service, .. } => {
                format!("the {service} is unavailable; retry later")
            }
            ApiError::Internal(_) => "an internal error occurred; quote the request_id".into(),
            other => other.to_string(),
        }
    }

    /// Renders the error as RFC 9457 problem+json, logging server-side failures with their cause.
    pub fn into_response(self, request_id: &str, instance: &str) -> Response<Body> {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(request_id, error = %self, "request failed");
        }
        let (field, findings) = match &self {
            ApiError::BadRequest { field, .. } => (field.clone(), None),
            ApiError::Unprocessable { findings, .. } => (None, Some(findings.clone())),
            _ => (None, None),
        };
        let body = Problem {
            type_: format!("urn:mecapy:problem:{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.public_detail(),
            instance: instance.to_string(),
            request_id: request_id.to_string(),
            field,
            findings,
        };
        let mut response = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, PROBLEM_JSON)
            .body(Body::from(serde_json::to_vec(&body).unwrap_or_default()))
            .unwrap_or_default();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthorized { detail, invalid } => {
                let value = if *invalid {
                    format!(
                        "Bearer realm=\"mecapy\", error=\"invalid_token\", error_description=\"{}\"",
                        detail.replace(['"', '\\'], "'")
                    )
                } else {
                    "Bearer realm=\"mecapy\"".to_string()
                };
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::Unavailable { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::MissingToken => ApiError::Unauthorized {
                detail: e.to_string(),
                invalid: false,
            },
            AuthError::InvalidToken(detail) => ApiError::Unauthorized {
                detail,
                invalid: true,
            },
            AuthError::ProviderUnavailable(cause) => ApiError::Unavailable {
                service: "identity provider",
                cause,
            },
            AuthError::ProviderMisconfigured(cause) => ApiError::Internal(cause),
            AuthError::CodeRejected { .. } => ApiError::bad_field("code", e.to_string()),
        }
    }
}

/// Adapter and domain failures reach HTTP through [`DomainError`]: one mapping.
macro_rules! through_domain {
    ($($error:ty),*) => {$(
        impl From<$error> for ApiError {
            fn from(e: $error) -> Self {
                DomainError::from(e).into()
            }
        }
    )*};
}
through_domain!(DbError, StorageError, FilenameError);

/// The one mapping of the domain's errors to HTTP.
impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid { detail, field } => ApiError::BadRequest { detail, field },
            DomainError::Refused { detail, findings } => {
                ApiError::Unprocessable { detail, findings }
            }
            DomainError::NotFound(m) => ApiError::NotFound(m),
            DomainError::Conflict(m) => ApiError::Conflict(m),
            DomainError::TooLarge(m) => ApiError::PayloadTooLarge(m),
            DomainError::Unavailable { service, cause } => ApiError::Unavailable { service, cause },
            DomainError::Internal(m) => ApiError::Internal(m),
        }
    }
}

/// The caller's `what` if the lookup found it; a 404 otherwise (another user's is missing too).
pub fn found<T>(row: Option<T>, what: &str) -> Result<T, ApiError> {
    row.ok_or_else(|| ApiError::NotFound(format!("no such {what}")))
}

/// Refuses any method but `method` (CORS preflights never reach handlers).
pub fn require_method(req: &Request, method: Method) -> Result<(), ApiError> {
    if req.method() == method {
        return Ok(());
    }
    let allow = if method == Method::GET {
        "GET, OPTIONS"
    } else {
        "POST, OPTIONS"
    };
    Err(ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        allow,
    })
}

pub use mecapy_adapters::error_chain;

/// Per-request facts the edge needs after the handler ran.
#[derive(Clone, Debug)]
pub struct RequestMeta {
    pub request_id: String,
    user_id: Arc<Mutex<Option<String>>>,
}

impl RequestMeta {
    pub fn set_user(&self, user_id: impl Into<String>) {
        if let Ok(mut slot) = self.user_id.lock() {
            *slot = Some(user_id.into());
        }
    }

    fn user(&self) -> Option<String> {
        self.user_id.lock().ok().and_then(|s| s.clone())
    }

    pub fn of(req: &Request) -> Option<&RequestMeta> {
        req.extensions().get::<RequestMeta>()
    }
}

fn request_id(req: &Request) -> String {
    let from_gateway = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.clone(),
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    from_gateway
        .or_else(|| req.lambda_context_ref().map(|c| c.request_id.clone()))
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Which representation the client accepts: `Ok(true)` for the versioned vendor type.
/// Another version of the vendor type, or only media types we never produce, is 406.
pub fn negotiate(accept: Option<&str>) -> Result<bool, ApiError> {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(false);
    };
    let mut plain = false;
    let mut vendor = false;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            let p = p.trim().replace(' ', "");
            p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
        });
        if refused {
            continue;
        }
        match media.as_str() {
            VENDOR_JSON => vendor = true,
            "*/*" | "application/*" | "application/json" | PROBLEM_JSON => plain = true,
            _ => {}
        }
    }
    if vendor {
        Ok(true)
    } else if plain {
        Ok(false)
    } else {
        Err(ApiError::NotAcceptable(format!(
            "cannot produce any of {accept:?}; this API serves {VENDOR_JSON} and application/json"
        )))
    }
}

/// Serialises `body` as JSON with `status`.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    match serde_json::to_vec(body) {
        Ok(bytes) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(bytes))
            .unwrap_or_default(),
        Err(e) => ApiError::Internal(e.to_string()).into_response("", ""),
    }
}

fn content_type(req: &Request) -> Option<String> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// Parses a JSON body into `T`, naming the offending field on error. An empty body without a
/// content type reads as `{}` (so optional bodies may be omitted).
pub fn json_body<T: DeserializeOwned>(req: &Request, max_bytes: usize) -> Result<T, ApiError> {
    let body: &[u8] = req.body().as_ref();
    let ct = content_type(req);
    if body.len() > max_bytes {
        return Err(ApiError::PayloadTooLarge(format!(
            "JSON body is larger than {max_bytes} bytes"
        )));
    }
    let body: &[u8] = match (&ct, body.is_empty()) {
        (None, true) => b"{}",
        (Some(ct), _) if ct == "application/json" || ct.ends_with("+json") => body,
        (Some(ct), _) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "content type {ct} is not accepted here; send application/json"
            )))
        }
        (None, false) => {
            return Err(ApiError::UnsupportedMediaType(
                "missing content type; send application/json".into(),
            ))
        }
    };
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let inner_text = inner.to_string();
        let field = if path != "." {
            Some(path)
        } else {
            // A missing field is reported at the parent: take its name from the message.
            inner_text.split('`').nth(1).map(str::to_string)
        };
        let detail = match (&field, inner.classify()) {
            (_, serde_json::error::Category::Syntax | serde_json::error::Category::Eof) => {
                format!("malformed JSON: {inner_text}")
            }
            (Some(f), _) => format!("invalid field `{f}`: {inner_text}"),
            (None, _) => format!("invalid JSON body: {inner_text}"),
        };
        ApiError::BadRequest { detail, field }
    })
}

/// `?limit=&offset=` of a listing: limit 1..=200 (default 50), offset ≥ 0 (default 0).
pub fn pagination(req: &Request) -> Result<(i64, i64), ApiError> {
    let (mut limit, mut offset) = (None, None);
    for (k, v) in url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "limit" => limit = Some(v.into_owned()),
            "offset" => offset = Some(v.into_owned()),
            _ => {}
        }
    }
    let bounded = |value: Option<String>, name: &str, default: i64, max: i64, min: i64| match value
    {
        None => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_field(
                    name,
                    format!("{name} must be a whole number from {min} to {max}"),
                )
            }),
    };
    Ok((
        bounded(limit, "limit", 50, 200, 1)?,
        bounded(offset, "offset", 0, i64::MAX, 0)?,
    ))
}

/// The path segments after the first `root` segment (`/prod/files/x` with root `files` → `["x"]`),
/// so routing works behind any stage or base path.
pub fn route<'a>(path: &'a str, root: &str) -> Option<Vec<&'a str>> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let at = segments.iter().position(|s| *s == root)?;
    Some(segments[at + 1..].to_vec())
}

/// A request's place in a function's route table: its method and its path segments under a root
/// (see [`route`]), with the table's two answers for what it lacks.
pub struct Route {
    pub method: Method,
    path: String,
    segments: Vec<String>,
}

impl Route {
    /// `None` when the path has no `root` segment.
    pub fn under(req: &Request, root: &str) -> Option<Route> {
        let path = req.uri().path().to_string();
        let segments = route(&path, root)?
            .into_iter()
            .map(str::to_string)
            .collect();
        Some(Route {
            method: req.method().clone(),
            path,
            segments,
        })
    }

    /// Like [`Route::under`], a 404 when the path has no `root` segment.
    pub fn of(req: &Request, root: &str) -> Result<Route, ApiError> {
        Route::under(req, root).ok_or_else(|| no_route(req.uri().path()))
    }

    pub fn segments(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }

    /// 405 naming the methods the path allows.
    pub fn not_allowed(&self, allow: &'static str) -> ApiError {
        ApiError::MethodNotAllowed {
            method: self.method.to_string(),
            allow,
        }
    }

    /// 404: no route for the path.
    pub fn not_found(&self) -> ApiError {
        no_route(&self.path)
    }
}

fn no_route(path: &str) -> ApiError {
    ApiError::NotFound(format!("no route for {path}"))
}

const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

const ALLOWED_METHODS: &str = "GET, POST, DELETE, OPTIONS";
const ALLOWED_HEADERS: &str = "Authorization, Content-Type, Accept";

fn allowed_origin<'a>(config: &EdgeConfig, headers: &'a HeaderMap) -> Option<&'a str> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    config
        .allowed_origins
        .iter()
        .any(|o| o == origin)
        .then_some(origin)
}

fn preflight(
    config: &EdgeConfig,
    headers: &HeaderMap,
    request_id: &str,
    path: &str,
) -> Response<Body> {
    if allowed_origin(config, headers).is_none() {
        return ApiError::Forbidden("this origin is not allowed to call the API".into())
            .into_response(request_id, path);
    }
    let mut response = Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::Empty)
        .unwrap_or_default();
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOWED_METHODS),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOWED_HEADERS),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// What the edge needs of a function's state: its CORS and body settings. `AppState` has
/// them; a function with no database (`login`, `api-docs`) brings a state of its own.
pub trait Edge: Clone {
    fn edge(&self) -> &EdgeConfig;
}

impl Edge for Arc<EdgeConfig> {
    fn edge(&self) -> &EdgeConfig {
        self
    }
}

/// The Lambda runtime calling `handler` with `state` for each request.
pub async fn run_with<S, F, Fut>(state: S, handler: F) -> Result<(), lambda_http::Error>
where
    S: Clone + Send,
    F: Fn(S, Request) -> Fut + Send,
    Fut: Future<Output = Result<Response<Body>, Infallible>> + Send,
{
    lambda_http::run(lambda_http::service_fn(move |req| {
        handler(state.clone(), req)
    }))
    .await
}

/// Runs one handler behind the edge: request id, content negotiation, CORS (preflight
/// included), security headers, problem+json errors and the seed's request log line.
pub async fn serve<S: Edge, F, Fut>(
    state: S,
    req: Request,
    service: &'static str,
    handler: F,
) -> Result<Response<Body>, Infallible>
where
    F: FnOnce(S, Request) -> Fut,
    Fut: Future<Output = Result<Response<Body>, ApiError>>,
{
    serve_as(state, req, service, Representation::Json, handler).await
}

/// What a route answers: JSON, negotiated against `Accept` (the vendor type or plain JSON), or
/// a representation of its own (a page, a document) whose media type is kept.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    Json,
    Own,
}

/// [`serve`] for either [`Representation`].
pub async fn serve_as<S: Edge, F, Fut>(
    state: S,
    mut req: Request,
    service: &'static str,
    representation: Representation,
    handler: F,
) -> Result<Response<Body>, Infallible>
where
    F: FnOnce(S, Request) -> Fut,
    Fut: Future<Output = Result<Response<Body>, ApiError>>,
{
    let started = Instant::now();
    let meta = RequestMeta {
        request_id: request_id(&req),
        user_id: Arc::new(Mutex::new(None)),
    };
    req.extensions_mut().insert(meta.clone());
    let method = req.method().clone();
    let endpoint = req.uri().path().to_string();
    let headers = req.headers().clone();

    let negotiated = if representation == Representation::Json {
        negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
    } else {
        Ok(false)
    };
    let vendor = matches!(negotiated, Ok(true));
    let mut response = match negotiated {
        Err(e) => e.into_response(&meta.request_id, &endpoint),
        Ok(_) if method == Method::OPTIONS => {
            preflight(state.edge(), &headers, &meta.request_id, &endpoint)
        }
        Ok(_) => handler(state.clone(), req)
            .await
            .unwrap_or_else(|e| e.into_response(&meta.request_id, &endpoint)),
    };

    let out = response.headers_mut();
    if vendor
        && out.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) == Some("application/json")
    {
        out.insert(header::CONTENT_TYPE, HeaderValue::from_static(VENDOR_JSON));
    }
    for (name, value) in SECURITY_HEADERS {
        // A page the handler serves may set its own content security policy (the docs page).
        if *name == "content-security-policy" && out.contains_key(*name) {
            continue;
        }
        out.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&meta.request_id) {
        out.insert(HeaderName::from_static("x-request-id"), v);
    }
    if let Some(origin) = allowed_origin(state.edge(), &headers) {
        if let Ok(v) = HeaderValue::from_str(origin) {
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            out.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("X-Request-Id, WWW-Authenticate, Retry-After"),
            );
        }
    }
    out.append(header::VARY, HeaderValue::from_static("Origin"));

    let status = response.status().as_u16();
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let user_id = meta.user().unwrap_or_default();
    let duration_ms = (duration_ms * 1000.0).round() / 1000.0;
    if status >= 500 {
        tracing::error!(service, request_id = %meta.request_id, user_id, endpoint, method = %method, status_code = status, duration_ms, "request failed");
    } else {
        tracing::info!(service, request_id = %meta.request_id, user_id, endpoint, method = %method, status_code = status, duration_ms, "request completed");
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert!(!negotiate(None).unwrap());
        assert!(!negotiate(Some("*/*")).unwrap());
        assert!(negotiate(Some(VENDOR_JSON)).unwrap());
        assert!(negotiate(Some("text/html, application/vnd.mecapy.v1+json;q=0.9")).unwrap());
        assert!(negotiate(Some("application/vnd.mecapy.v2+json")).is_err());
        assert!(negotiate(Some("text/html")).is_err());
        assert!(negotiate(Some("application/json;q=0")).is_err());
    }

    #[test]
    fn route_skips_stage_prefix() {
        assert_eq!(
            route("/prod/files/abc/complete", "files").unwrap(),
            vec!["abc", "complete"]
        );
        assert_eq!(route("/files", "files").unwrap(), Vec::<&str>::new());
        assert!(route("/other", "files").is_none());
    }

    #[test]
    fn problem_body_has_request_id_and_no_internal_cause() {
        let r = ApiError::Unavailable {
            service: "database",
            cause: "connection refused to 10.0.0.1".into(),
        }
        .into_response("req-1", "/files");
        assert_eq!(r.status(), 503);
        let body: serde_json::Value = serde_json::from_slice(r.body().as_ref()).unwrap();
        assert_eq!(body["request_id"], "req-1");
        assert!(!body.to_string().contains("10.0.0.1"));
    }
}
