//! The `/compute` routes: submit a job (validated, recorded `queued`, its code and manifest
//! written to S3, the manifest's creation being the event that dispatches it), read one, list
//! them, cancel one that has not started; and `GET /webhooks/secret`, the key a job's
//! `callback_url` receives its signed end with.

use std::convert::Infallible;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use mecapy_shared::api::{JobLinks, JobView, OutputLink, Page, SubmitAccepted, WebhookSecret};
use mecapy_shared::db::{self, jobs::Job, DbError};
use mecapy_shared::http::{self, ApiError};
use mecapy_shared::jobs::{self, keys, SubmitRequest};
use mecapy_shared::{webhooks, AppState};
use uuid::Uuid;

pub async fn handle(state: AppState, req: Request) -> Result<Response<Body>, Infallible> {
    http::serve(state, req, "compute-submit", route).await
}

async fn route(state: AppState, req: Request) -> Result<Response<Body>, ApiError> {
    if let Some(r) = http::Route::under(&req, "webhooks") {
        return match (&r.method, r.segments().as_slice()) {
            (&Method::GET, ["secret"]) => webhook_secret(state, req).await,
            (_, ["secret"]) => Err(r.not_allowed("GET, OPTIONS")),
            _ => Err(r.not_found()),
        };
    }
    let r = http::Route::of(&req, "compute")?;
    match (&r.method, r.segments().as_slice()) {
        (&Method::POST, []) => submit(state, req).await,
        (&Method::GET, []) => list(state, req).await,
        (&Method::GET, [id]) => get(state, req, parse_id(id)?).await,
        (&Method::DELETE, [id]) => cancel(state, req, parse_id(id)?).await,
        (_, []) => Err(r.not_allowed("GET, POST, OPTIONS")),
        (_, [_]) => Err(r.not_allowed("GET, DELETE, OPTIONS")),
        _ => Err(r.not_found()),
    }
}

/// `GET /webhooks/secret`: the caller's signing secret.
async fn webhook_secret(state: AppState, req: Request) -> Result<Response<Body>, ApiError> {
    let user = state.current_user(&req).await?;
    let key = state
        .config
        .webhook_secret
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest {
            detail: "webhooks are not enabled on this deployment (WEBHOOK_SECRET is not set)"
                .into(),
            field: None,
        })?;
    Ok(http::json(
        StatusCode::OK,
        &WebhookSecret {
            secret: webhooks::encode_secret(&webhooks::user_secret(key, user.id)),
            scheme: "v1".into(),
        },
    ))
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound("no such job".into()))
}

/// `POST /compute {tool, code | file_id, input_file_ids?, args?}` → 202.
async fn submit(state: AppState, req: Request) -> Result<Response<Body>, ApiError> {
    let user = state.current_user(&req).await?;
    let body: SubmitRequest = http::json_body(&req, state.edge.max_json_bytes)?;
    let db = state.db.get().await.map_err(DbError::from)?;
    let job = jobs::submit::submit(&state, &**db, user.id, &body, None)
        .await?
        .job;
    drop(db);
    // The job's CalculationQueued event: sent now (what fails stays in the outbox).
    state.publish_events().await;
    tracing::info!(job_id = %job.id, tool = %job.tool, "job accepted");
    Ok(http::json(
        StatusCode::ACCEPTED,
        &SubmitAccepted {
            job_id: job.id,
            links: JobLinks::of(job.id),
            status: job.status,
        },
    ))
}

/// `GET /compute/{id}`: status, timings, exit code, and presigned links to the results.
async fn get(state: AppState, req: Request, id: Uuid) -> Result<Response<Body>, ApiError> {
    let user = state.current_user(&req).await?;
    let db = state.db.get().await.map_err(DbError::from)?;
    let job = db::jobs::get(&**db, user.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such job".into()))?;
    Ok(http::json(StatusCode::OK, &view(&state, job).await?))
}

async fn view(state: &AppState, job: Job) -> Result<JobView, ApiError> {
    let mut links = JobLinks::of(job.id);
    if job.status.ran() {
        let ttl = state.config.presign_ttl;
        links.stdout = Some(
            state
                .storage
                .presign_get(&keys::stdout(job.id), "stdout.txt", ttl)
                .await?,
        );
        links.stderr = Some(
            state
                .storage
                .presign_get(&keys::stderr(job.id), "stderr.txt", ttl)
                .await?,
        );
        let mut outputs = Vec::new();
        for output in &job.outputs {
            let name = &output.name;
            let file = name.rsplit('/').next().unwrap_or(name);
            let url = state
                .storage
                .presign_get(&keys::output(job.id, name), file, ttl)
                .await?;
            outputs.push(OutputLink {
                name: name.clone(),
                size: output.size,
                url,
            });
        }
        links.outputs = Some(outputs);
    }
    Ok(JobView { job, links })
}

/// `GET /compute?limit=&offset=`: the caller's jobs, newest first.
async fn list(state: AppState, req: Request) -> Result<Response<Body>, ApiError> {
    let user = state.current_user(&req).await?;
    let (limit, offset) = http::pagination(&req)?;
    let db = state.db.get().await.map_err(DbError::from)?;
    let jobs = db::jobs::list(&**db, user.id, limit + 1, offset).await?;
    Ok(http::json(
        StatusCode::OK,
        &Page::of("/compute", jobs, limit, offset),
    ))
}

/// `DELETE /compute/{id}`: cancels a job that has not started (409 once it has).
async fn cancel(state: AppState, req: Request, id: Uuid) -> Result<Response<Body>, ApiError> {
    let user = state.current_user(&req).await?;
    let db = state.db.get().await.map_err(DbError::from)?;
    if let Some(job) = db::jobs::cancel(&**db, user.id, id).await? {
        drop(db);
        // The job's CalculationFinished event (cancelled): sent now.
        state.publish_events().await;
        return Ok(http::json(StatusCode::OK, &view(&state, job).await?));
    }
    let job = db::jobs::get(&**db, user.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such job".into()))?;
    Err(ApiError::Conflict(format!(
        "the job is {} and can no longer be cancelled",
        job.status
    )))
}
