//! The `upload_rules` table: a user's "when I upload a file matching this, run this".

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::{GenericClient, Row};
use utoipa::ToSchema;
use uuid::Uuid;

use super::DbError;

/// One rule, as its owner sees it.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct Rule {
    pub id: Uuid,
    #[serde(skip)]
    pub user_id: Uuid,
    /// Matched against the whole file name: `*` any run of characters, `?` one.
    pub filename_glob: String,
    /// Matched against the file's content type when set (`text/csv`, or `text/*`).
    pub content_type: Option<String>,
    pub tool: String,
    /// The code the job runs, or…
    pub code: Option<String>,
    /// …the caller's file holding it (read when the rule fires).
    pub code_file_id: Option<Uuid>,
    #[schema(value_type = Vec<String>)]
    pub args: Value,
    /// A rule whose code stopped passing validation (or whose code file is gone) is disabled,
    /// with the reason.
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Where the end of each job it starts is POSTed, signed.
    pub callback_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Row> for Rule {
    fn from(r: &Row) -> Self {
        Rule {
            id: r.get("id"),
            user_id: r.get("user_id"),
            filename_glob: r.get("filename_glob"),
            content_type: r.get("content_type"),
            tool: r.get("tool"),
            code: r.get("code"),
            code_file_id: r.get("code_file_id"),
            args: r.get("args"),
            enabled: r.get("enabled"),
            disabled_reason: r.get("disabled_reason"),
            callback_url: r.get("callback_url"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
        }
    }
}

const SELECT: &str =
    "SELECT r.*, t.name AS tool FROM upload_rules r JOIN tools t ON t.id = r.tool_id";

pub struct NewRule<'a> {
    pub user_id: Uuid,
    pub filename_glob: &'a str,
    pub content_type: Option<&'a str>,
    pub tool_id: Uuid,
    pub code: Option<&'a str>,
    pub code_file_id: Option<Uuid>,
    pub args: &'a Value,
    pub callback_url: Option<&'a str>,
}

/// Inserts the rule unless its owner has `max` already (`None` then). The owner's row is locked
/// for the count, so concurrent creations cannot pass the limit together.
pub async fn insert(
    db: &mut deadpool_postgres::Object,
    rule: &NewRule<'_>,
    max: i64,
) -> Result<Option<Rule>, DbError> {
    let tx = db.transaction().await?;
    tx.execute(
        "SELECT 1 FROM users WHERE id = $1 FOR UPDATE",
        &[&rule.user_id],
    )
    .await?;
    let count: i64 = tx
        .query_one(
            "SELECT count(*) FROM upload_rules WHERE user_id = $1",
            &[&rule.user_id],
        )
        .await?
        .get(0);
    if count >= max {
        return Ok(None);
    }
    let row = tx
        .query_one(
            "WITH new AS (
                 INSERT INTO upload_rules
                     (user_id, filename_glob, content_type, tool_id, code, code_file_id, args,
                      callback_url)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *)
             SELECT r.*, t.name AS tool FROM new r JOIN tools t ON t.id = r.tool_id",
            &[
                &rule.user_id,
                &rule.filename_glob,
                &rule.content_type,
                &rule.tool_id,
                &rule.code,
                &rule.code_file_id,
                rule.args,
                &rule.callback_url,
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(Some(Rule::from(&row)))
}

/// The user's rules, oldest first (the order they fire in).
pub async fn list(db: &impl GenericClient, user_id: Uuid) -> Result<Vec<Rule>, DbError> {
    let rows = db
        .query(
            &format!("{SELECT} WHERE r.user_id = $1 ORDER BY r.created_at, r.id"),
            &[&user_id],
        )
        .await?;
    Ok(rows.iter().map(Rule::from).collect())
}

/// The user's rule; another user's is `None`, like a missing one.
pub async fn get(
    db: &impl GenericClient,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<Rule>, DbError> {
    let row = db
        .query_opt(
            &format!("{SELECT} WHERE r.user_id = $1 AND r.id = $2"),
            &[&user_id, &id],
        )
        .await?;
    Ok(row.as_ref().map(Rule::from))
}

/// Deletes the user's rule; `false` when there was none. Its jobs keep running, and forget it.
pub async fn delete(db: &impl GenericClient, user_id: Uuid, id: Uuid) -> Result<bool, DbError> {
    let n = db
        .execute(
            "DELETE FROM upload_rules WHERE user_id = $1 AND id = $2",
            &[&user_id, &id],
        )
        .await?;
    Ok(n > 0)
}

/// Stops a rule from firing, saying why.
pub async fn disable(db: &impl GenericClient, id: Uuid, reason: &str) -> Result<(), DbError> {
    db.execute(
        "UPDATE upload_rules SET enabled = false, disabled_reason = $2, updated_at = now()
         WHERE id = $1",
        &[&id, &reason],
    )
    .await?;
    Ok(())
}
