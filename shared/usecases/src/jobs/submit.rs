//! Accepting a job, the one way: `POST /compute` and an upload rule both come here, so a job
//! started by a rule passes the same checks as one a user submits (tool, inputs, code size,
//! static validation) and is written the same way (its row, its code, then its manifest,
//! whose creation dispatches it).

use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::spec::{self, CodeSource};
use super::{keys, JobStatus, Manifest, SubmitRequest};
use crate::db::{self, jobs::Job, jobs::NewJob};
use crate::uploads;
use crate::validation::{self, Policy};
use crate::Context;
use mecapy_domain::error::DomainError;

/// The accepted job; `created` is false when a rule's job for this upload existed already.
pub struct Accepted {
    pub job: Job,
    pub created: bool,
}

/// Checks `request` for `user_id` and accepts it. `origin` (a rule and the upload that set it
/// off) makes the acceptance idempotent: the second time, the existing job is answered (and its
/// files written again while it is queued, in case the first attempt died before them).
pub async fn submit(
    state: &Context,
    db: &impl GenericClient,
    user_id: Uuid,
    request: &SubmitRequest,
    origin: Option<(Uuid, Uuid)>,
) -> Result<Accepted, DomainError> {
    let max_code = state.config.max_code_bytes;
    let source = request.check(max_code)?;
    // A rule's URL was resolved when the rule was made: a lookup failing now must not refuse
    // (and disable) the rule. Every delivery resolves it again.
    let callback_url = match &request.callback_url {
        Some(raw) => Some(state.config.accept_callback(raw, origin.is_none()).await?),
        None => None,
    };
    let tool = db::tools::by_name(db, &request.tool)
        .await?
        .ok_or_else(|| DomainError::invalid("tool", format!("unknown tool {:?}", request.tool)))?;
    let code = match source {
        CodeSource::Inline(code) => code,
        CodeSource::File(file_id) => read_code_file(state, db, user_id, file_id).await?,
    };
    check_code(&code, &tool.allowed_imports)?;

    let mut files = Vec::with_capacity(request.input_file_ids.len());
    for id in &request.input_file_ids {
        let file = uploads::usable(
            db::files::get(db, user_id, *id).await?,
            &format!("input file {id}"),
        )?;
        files.push(file);
    }
    let inputs = spec::unique_inputs(files);
    let limits = spec::limits_for(&tool);
    let image = spec::image_for(&tool, state.config.compute_image.as_deref());
    let code_sha256 = hex::encode(Sha256::digest(code.as_bytes()));
    let inserted = db::jobs::insert(
        db,
        &NewJob {
            user_id,
            tool_id: tool.id,
            image: &image,
            limits: &limits,
            args: &request.args,
            code_sha256: &code_sha256,
            inputs: &inputs,
            origin,
            callback_url: callback_url.as_deref(),
        },
    )
    .await?;
    let (job, created) = match (inserted, origin) {
        (Some(job), _) => (job, true),
        (None, Some((rule, upload))) => {
            let job = db::jobs::of_origin(db, rule, upload)
                .await?
                .ok_or_else(|| DomainError::Internal("the rule's job vanished".into()))?;
            if job.status != JobStatus::Queued {
                return Ok(Accepted {
                    job,
                    created: false,
                });
            }
            (job, false)
        }
        (None, None) => return Err(DomainError::Internal("inserted job not returned".into())),
    };

    let manifest = super::spec::manifest(&job, request, code_sha256, inputs, limits);
    // The code first, the manifest last: the manifest's creation dispatches the job.
    if let Err(e) = write_job_files(state, &manifest, code).await {
        if created {
            if let Err(cleanup) = db::jobs::delete_unaccepted(db, job.id).await {
                tracing::error!(job_id = %job.id, error = %cleanup, "unaccepted job row left queued");
            }
        }
        return Err(e);
    }
    Ok(Accepted { job, created })
}

/// The code kept in one of the user's files (available, within the size limit, UTF-8).
pub async fn read_code_file(
    state: &Context,
    db: &impl GenericClient,
    user_id: Uuid,
    file_id: Uuid,
) -> Result<String, DomainError> {
    let max_code = state.config.max_code_bytes;
    let file = uploads::usable(db::files::get(db, user_id, file_id).await?, "file")?;
    spec::check_code_size(file.size_bytes.unwrap_or(0).max(0) as u64, max_code)?;
    let bytes = state
        .storage
        .get(&file.s3_key, max_code as u64)
        .await?
        .ok_or_else(|| DomainError::NotFound("no such file".into()))?;
    spec::code_from_file(&bytes)
}

/// Static validation under the tool's import list: 422 with the findings.
pub fn check_code(code: &str, allowed_imports: &[String]) -> Result<(), DomainError> {
    let findings = validation::validate(code, &Policy::from_allowed(allowed_imports));
    if findings.is_empty() {
        return Ok(());
    }
    Err(DomainError::Refused {
        detail: format!(
            "the code was refused by static validation: {} finding{}",
            findings.len(),
            if findings.len() == 1 { "" } else { "s" }
        ),
        findings,
    })
}

async fn write_job_files(
    state: &Context,
    manifest: &Manifest,
    code: String,
) -> Result<(), DomainError> {
    state
        .storage
        .put(
            &manifest.code_key,
            bytes::Bytes::from(code),
            "text/x-python",
        )
        .await?;
    let body = serde_json::to_vec(manifest).map_err(|e| DomainError::Internal(e.to_string()))?;
    state
        .storage
        .put(
            &keys::manifest(manifest.job_id),
            body.into(),
            "application/json",
        )
        .await?;
    Ok(())
}
