//! The `jobs` table. Every status change is one conditional UPDATE, so two dispatchers (or a
//! redelivered message) can never move a job along the same edge twice.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::webhooks::{self, WebhookStatus};
use super::{outbox, DbError};
use mecapy_domain::job::{Input, JobOutput, JobStatus, Limits};
use tokio_postgres::types::Json;

/// A computation and what became of it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Job {
    pub id: Uuid,
    #[serde(skip)]
    pub user_id: Uuid,
    pub tool: String,
    pub status: JobStatus,
    /// The image it runs in, and the digest of the one it ran in.
    pub image: String,
    pub image_digest: Option<String>,
    /// The limits it runs under.
    pub limits: Limits,
    /// Its command line arguments.
    pub args: Vec<String>,
    pub code_sha256: Option<String>,
    /// Its input files, each with the sha256 it was checked against.
    pub inputs: Vec<Input>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub attempts: i32,
    pub duration_ms: Option<i64>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// The files it wrote under `/work/out` (within the output caps).
    pub outputs: Vec<JobOutput>,
    pub outputs_truncated: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// While `running`: until when the claiming dispatcher holds the job.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The upload rule that started it, and the upload (file) that set the rule off; none for
    /// a job submitted with `POST /compute`.
    pub rule_id: Option<Uuid>,
    pub upload_file_id: Option<Uuid>,
    /// Where its end is POSTed, signed (`CalculationFinished`); and how that went.
    pub callback_url: Option<String>,
    pub webhook: Option<WebhookStatus>,
}

/// A jsonb column as its type; a value that does not read (written by hand) is logged and taken
/// as the type's default, so the job stays readable.
fn json_column<T: serde::de::DeserializeOwned + Default>(r: &Row, column: &str) -> T {
    let value: Value = r.get(column);
    serde_json::from_value(value).unwrap_or_else(|e| {
        tracing::warn!(column, error = %e, "a job's column does not read as its type");
        T::default()
    })
}

/// A job with its tool's name and its webhook (`w`, see `webhooks::status_json`).
const SELECT: &str = concat!(
    "SELECT j.*, t.name AS tool, ",
    webhooks::status_json!(),
    " AS webhook FROM jobs j JOIN tools t ON t.id = j.tool_id
     LEFT JOIN webhook_deliveries w ON w.job_id = j.id"
);

impl From<&Row> for Job {
    fn from(r: &Row) -> Self {
        Job {
            id: r.get("id"),
            user_id: r.get("user_id"),
            tool: r.get("tool"),
            // The table's CHECK admits only the machine's statuses.
            status: JobStatus::parse(r.get("status")).unwrap_or(JobStatus::Error),
            image: r.get("image"),
            image_digest: r.get("image_digest"),
            limits: json_column(r, "limits"),
            args: json_column(r, "args"),
            code_sha256: r.get("code_sha256"),
            inputs: json_column(r, "inputs"),
            exit_code: r.get("exit_code"),
            error: r.get("error"),
            attempts: r.get("attempts"),
            duration_ms: r.get("duration_ms"),
            stdout_truncated: r.get("stdout_truncated"),
            stderr_truncated: r.get("stderr_truncated"),
            outputs: json_column(r, "outputs"),
            outputs_truncated: r.get("outputs_truncated"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
            started_at: r.get("started_at"),
            finished_at: r.get("finished_at"),
            lease_expires_at: r.get("lease_expires_at"),
            rule_id: r.get("rule_id"),
            upload_file_id: r.get("upload_file_id"),
            callback_url: r.get("callback_url"),
            webhook: WebhookStatus::from_row(r),
        }
    }
}

pub struct NewJob<'a> {
    pub user_id: Uuid,
    pub tool_id: Uuid,
    pub image: &'a str,
    pub limits: &'a Limits,
    pub args: &'a [String],
    pub code_sha256: &'a str,
    pub inputs: &'a [Input],
    /// Set for a job an upload rule starts: `(rule, upload)`, one job each.
    pub origin: Option<(Uuid, Uuid)>,
    /// Where its end is POSTed (checked by `webhooks::accept_callback`).
    pub callback_url: Option<&'a str>,
}

/// Runs `sql` (which must end in `RETURNING *`) and returns the changed row with its tool's
/// name: the outer query joins the CTE's own rows, since it cannot see the new versions in
/// `jobs` (one snapshot for the whole statement).
/// With `event`, the change records that event in the outbox in the same statement.
async fn returning(
    db: &impl GenericClient,
    sql: &str,
    event: Option<&'static str>,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<Job>, DbError> {
    let mut emitted = event
        .map(|kind| outbox::emit(kind, "out"))
        .unwrap_or_default();
    // A final state is also its webhook's delivery, when the job names a callback_url.
    if event == Some("CalculationFinished") {
        emitted.push_str(&webhooks::record("emitted", "out"));
    }
    let wrapped = format!(
        "WITH changed AS ({sql}),
              out AS (SELECT c.*, t.name AS tool FROM changed c JOIN tools t ON t.id = c.tool_id)
              {emitted}
         SELECT * FROM out"
    );
    let row = db.query_opt(&wrapped, params).await?;
    Ok(row.as_ref().map(Job::from))
}

pub async fn insert(db: &impl GenericClient, job: &NewJob<'_>) -> Result<Option<Job>, DbError> {
    let (rule_id, upload_file_id) = job.origin.unzip();
    returning(
        db,
        "INSERT INTO jobs (user_id, tool_id, image, limits, args, code_sha256, inputs, rule_id,
                           upload_file_id, callback_url)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (rule_id, upload_file_id) WHERE rule_id IS NOT NULL DO NOTHING
         RETURNING *",
        Some("CalculationQueued"),
        &[
            &job.user_id,
            &job.tool_id,
            &job.image,
            &Json(job.limits),
            &Json(job.args),
            &job.code_sha256,
            &Json(job.inputs),
            &rule_id,
            &upload_file_id,
            &job.callback_url,
        ],
    )
    .await
}

/// The job a rule started for an upload, if it did.
pub async fn of_origin(
    db: &impl GenericClient,
    rule_id: Uuid,
    upload_file_id: Uuid,
) -> Result<Option<Job>, DbError> {
    let row = db
        .query_opt(
            &format!("{SELECT} WHERE j.rule_id = $1 AND j.upload_file_id = $2"),
            &[&rule_id, &upload_file_id],
        )
        .await?;
    Ok(row.as_ref().map(Job::from))
}

/// Removes a job that was never accepted (its files could not be written), with its
/// `CalculationQueued` event if the bus does not have it yet.
pub async fn delete_unaccepted(db: &impl GenericClient, id: Uuid) -> Result<(), DbError> {
    db.execute(
        "WITH gone AS (DELETE FROM jobs WHERE id = $1 AND status = 'queued' RETURNING id)
         DELETE FROM event_outbox o USING gone
         WHERE o.subject_id = gone.id AND o.published_at IS NULL",
        &[&id],
    )
    .await?;
    Ok(())
}

/// The user's job; another user's is `None`, like a missing one.
pub async fn get(db: &impl GenericClient, user_id: Uuid, id: Uuid) -> Result<Option<Job>, DbError> {
    let row = db
        .query_opt(
            &format!("{SELECT} WHERE j.id = $1 AND j.user_id = $2"),
            &[&id, &user_id],
        )
        .await?;
    Ok(row.as_ref().map(Job::from))
}

/// Any job, for the dispatcher.
pub async fn get_any(db: &impl GenericClient, id: Uuid) -> Result<Option<Job>, DbError> {
    let row = db
        .query_opt(&format!("{SELECT} WHERE j.id = $1"), &[&id])
        .await?;
    Ok(row.as_ref().map(Job::from))
}

/// The user's jobs, newest first.
pub async fn list(
    db: &impl GenericClient,
    user_id: Uuid,
    limit: i64,
    offset: i64,
) -> Result<Vec<Job>, DbError> {
    let rows = db
        .query(
            &format!("{SELECT} WHERE j.user_id = $1 ORDER BY j.created_at DESC, j.id DESC LIMIT $2 OFFSET $3"),
            &[&user_id, &limit, &offset],
        )
        .await?;
    Ok(rows.iter().map(Job::from).collect())
}

/// queued → cancelled, only for its owner.
pub async fn cancel(
    db: &impl GenericClient,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<Job>, DbError> {
    returning(
        db,
        "UPDATE jobs SET status = 'cancelled', finished_at = now(), updated_at = now()
         WHERE id = $1 AND user_id = $2 AND status = 'queued' RETURNING *",
        Some("CalculationFinished"),
        &[&id, &user_id],
    )
    .await
}

/// queued → running: the atomic claim. `None` if the job is not queued (already claimed,
/// finished, cancelled or deleted). The claim holds a lease of the job's own wall-clock limit
/// plus `margin` (the sandbox's grace and the dispatcher's time to stage files in and out): no
/// run of it can last longer. A job still `running` past its lease was left by a dispatcher that
/// died: it is claimed again, unless it has already been claimed `max_attempts` times.
pub async fn claim(
    db: &impl GenericClient,
    id: Uuid,
    margin: std::time::Duration,
    max_attempts: u32,
) -> Result<Option<Job>, DbError> {
    returning(
        db,
        "UPDATE jobs SET status = 'running', started_at = now(), attempts = attempts + 1,
             lease_expires_at = now() + make_interval(secs =>
                 COALESCE((limits->>'timeout_seconds')::float8, 0) + $2),
             updated_at = now()
         WHERE id = $1 AND (status = 'queued'
             OR (status = 'running' AND lease_expires_at < now() AND attempts < $3))
         RETURNING *",
        Some("CalculationStarted"),
        &[&id, &margin.as_secs_f64(), &(max_attempts as i32)],
    )
    .await
}

/// running → queued, after a transient failure, so the retry can claim it again.
pub async fn release(db: &impl GenericClient, id: Uuid, reason: &str) -> Result<(), DbError> {
    db.execute(
        "UPDATE jobs SET status = 'queued', started_at = NULL, lease_expires_at = NULL,
             error = $2, updated_at = now()
         WHERE id = $1 AND status = 'running'",
        &[&id, &reason],
    )
    .await?;
    Ok(())
}

/// Jobs `running` past their lease: their dispatcher died. Oldest first, at most `limit`.
pub async fn expired_leases(db: &impl GenericClient, limit: i64) -> Result<Vec<Job>, DbError> {
    let rows = db
        .query(
            &format!(
                "{SELECT} WHERE j.status = 'running' AND j.lease_expires_at < now()
                 ORDER BY j.lease_expires_at LIMIT $1"
            ),
            &[&limit],
        )
        .await?;
    Ok(rows.iter().map(Job::from).collect())
}

/// running (past its lease) → queued: the sweep gives the job of a dead dispatcher back to the
/// queue. `None` if it changed meanwhile.
pub async fn requeue_expired(
    db: &impl GenericClient,
    id: Uuid,
    reason: &str,
) -> Result<Option<Job>, DbError> {
    returning(
        db,
        "UPDATE jobs SET status = 'queued', started_at = NULL, lease_expires_at = NULL,
             error = $2, updated_at = now()
         WHERE id = $1 AND status = 'running' AND lease_expires_at < now() RETURNING *",
        None,
        &[&id, &reason],
    )
    .await
}

/// Jobs `queued` with no change for `idle`: their message may have been lost or moved to the
/// dead-letter queue (e.g. while the database was down). Each is touched, so the next sweep
/// leaves it alone for another `idle`. At most `limit`, oldest first.
pub async fn touch_idle_queued(
    db: &impl GenericClient,
    idle: std::time::Duration,
    limit: i64,
) -> Result<Vec<Uuid>, DbError> {
    let rows = db
        .query(
            "UPDATE jobs SET updated_at = now() WHERE id IN (
                 SELECT id FROM jobs
                 WHERE status = 'queued' AND updated_at < now() - make_interval(secs => $1)
                 ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING id",
            &[&idle.as_secs_f64(), &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get("id")).collect())
}

/// queued|running → error: the platform could not run it (permanent failure).
pub async fn fail(db: &impl GenericClient, id: Uuid, reason: &str) -> Result<Option<Job>, DbError> {
    returning(
        db,
        "UPDATE jobs SET status = 'error', error = $2, finished_at = now(), updated_at = now(),
             lease_expires_at = NULL
         WHERE id = $1 AND status IN ('queued', 'running') RETURNING *",
        Some("CalculationFinished"),
        &[&id, &reason],
    )
    .await
}

/// What a finished run recorded.
pub struct Finished<'a> {
    pub status: JobStatus,
    pub exit_code: Option<i32>,
    pub duration_ms: i64,
    pub image_digest: Option<&'a str>,
    pub limits: &'a Limits,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub outputs: &'a [JobOutput],
    pub outputs_truncated: bool,
}

/// running → a final state.
pub async fn finish(
    db: &impl GenericClient,
    id: Uuid,
    f: &Finished<'_>,
) -> Result<Option<Job>, DbError> {
    returning(
        db,
        "UPDATE jobs SET status = $2, exit_code = $3, duration_ms = $4, image_digest = $5,
             limits = $6, stdout_truncated = $7, stderr_truncated = $8, outputs = $9,
             outputs_truncated = $10, error = NULL, finished_at = now(), updated_at = now(),
             lease_expires_at = NULL
         WHERE id = $1 AND status = 'running' RETURNING *",
        Some("CalculationFinished"),
        &[
            &id,
            &f.status.as_str(),
            &f.exit_code,
            &f.duration_ms,
            &f.image_digest,
            &Json(f.limits),
            &f.stdout_truncated,
            &f.stderr_truncated,
            &Json(f.outputs),
            &f.outputs_truncated,
        ],
    )
    .await
}
