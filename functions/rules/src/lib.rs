//! The `/rules` routes: a user's upload rules ("when I upload a file matching `*.csv`, run
//! this"). A rule is checked as a submission would be (tool, code size, static validation)
//! before it is kept; it fires on its uploads through `upload-rules`.

use std::convert::Infallible;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use mecapy_shared::api::Page;
use mecapy_shared::db::{self, rules::NewRule, DbError};
use mecapy_shared::http::{self, ApiError};
use mecapy_shared::rules::{RuleRequest, MAX_RULES_PER_USER};
use mecapy_shared::AppState;
use serde_json::json;
use uuid::Uuid;

pub async fn handle(state: AppState, req: Request) -> Result<Response<Body>, Infallible> {
    http::serve(state, req, "rules", route).await
}

async fn route(state: AppState, req: Request) -> Result<Response<Body>, ApiError> {
    let r = http::Route::of(&req, "rules")?;
    match (&r.method, r.segments().as_slice()) {
        (&Method::POST, []) => create(state, req).await,
        (&Method::GET, []) => list(state, req).await,
        (&Method::GET, [id]) => get(state, req, parse_id(id)?).await,
        (&Method::DELETE, [id]) => delete(state, req, parse_id(id)?).await,
        (_, []) => Err(r.not_allowed("GET, POST, OPTIONS")),
        (_, [_]) => Err(r.not_allowed("GET, DELETE, OPTIONS")),
        _ => Err(r.not_found()),
    }
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound("no such rule".into()))
}

/// `POST /rules {filename_glob, content_type?, tool, code | code_file_id, args?, callback_url?}`
/// → 201.
async fn create(state: AppState, req: Request) -> Result<Response<Body>, ApiError> {
    let user = state.current_user(&req).await?;
    let body: RuleRequest = http::json_body(&req, state.edge.max_json_bytes)?;
    let mut db = state.db.get().await.map_err(DbError::from)?;
    let checked = body.check(&state, &**db, user.id).await?;
    let rule = db::rules::insert(
        &mut db,
        &NewRule {
            user_id: user.id,
            filename_glob: &body.filename_glob,
            content_type: body.content_type.as_deref(),
            tool_id: checked.tool_id,
            code: body.code.as_deref(),
            code_file_id: body.code_file_id,
            args: &json!(body.args),
            callback_url: checked.callback_url.as_deref(),
        },
        MAX_RULES_PER_USER,
    )
    .await?
    .ok_or_else(|| {
        ApiError::Conflict(format!(
            "at most {MAX_RULES_PER_USER} rules: delete one first"
        ))
    })?;
    tracing::info!(rule_id = %rule.id, glob = %rule.filename_glob, "upload rule created");
    Ok(http::json(StatusCode::CREATED, &rule))
}

/// `GET /rules`: the caller's rules, in the order they fire (oldest first).
async fn list(state: AppState, req: Request) -> Result<Response<Body>, ApiError> {
    let user = state.current_user(&req).await?;
    let db = state.db.get().await.map_err(DbError::from)?;
    let rules = db::rules::list(&**db, user.id).await?;
    let n = rules.len() as i64;
    Ok(http::json(StatusCode::OK, &Page::of("/rules", rules, n, 0)))
}

async fn get(state: AppState, req: Request, id: Uuid) -> Result<Response<Body>, ApiError> {
    let user = state.current_user(&req).await?;
    let db = state.db.get().await.map_err(DbError::from)?;
    let rule = http::found(db::rules::get(&**db, user.id, id).await?, "rule")?;
    Ok(http::json(StatusCode::OK, &rule))
}

/// `DELETE /rules/{id}`: the rule stops firing; the jobs it started stay. → 200 with the rule.
async fn delete(state: AppState, req: Request, id: Uuid) -> Result<Response<Body>, ApiError> {
    let user = state.current_user(&req).await?;
    let db = state.db.get().await.map_err(DbError::from)?;
    let rule = http::found(db::rules::get(&**db, user.id, id).await?, "rule")?;
    if !db::rules::delete(&**db, user.id, id).await? {
        return Err(ApiError::NotFound("no such rule".into()));
    }
    Ok(http::json(StatusCode::OK, &rule))
}
