//! The platform's events, as they go on the stack's EventBridge bus (`Source: mecapy`,
//! `DetailType`: the event's name, `Detail`: one of the types below). Each detail carries its
//! schema's version, so a consumer can refuse what it does not know; the JSON schemas are derived
//! from these types (`schema`), never written by hand.
//!
//! A change a consumer could notice (a field removed, renamed or retyped, a new required field)
//! is a new version: `SCHEMA_VERSION` goes up and the schema's `$id` with it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

/// The version of every schema below.
pub const SCHEMA_VERSION: u32 = 1;

/// The bus entry's `Source`.
pub const SOURCE: &str = "mecapy";

/// A file became `available`: uploaded directly, completed, or finalised from its S3 event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileUploaded {
    pub schema_version: u32,
    /// Unique per event: a consumer that sees it twice has seen one event.
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub user_id: Uuid,
    pub file_id: Uuid,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
}

/// A job was accepted (`queued`), by `POST /compute` or by an upload rule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalculationQueued {
    pub schema_version: u32,
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub user_id: Uuid,
    pub job_id: Uuid,
    pub tool: String,
}

/// A dispatcher claimed the job and started it (`running`); `attempt` counts from 1.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalculationStarted {
    pub schema_version: u32,
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub user_id: Uuid,
    pub job_id: Uuid,
    pub tool: String,
    pub attempt: i32,
}

/// The job reached its final state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalculationFinished {
    pub schema_version: u32,
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub user_id: Uuid,
    pub job_id: Uuid,
    pub tool: String,
    /// `succeeded`, `failed`, `timeout`, `oom`, `error` or `cancelled`.
    #[schema(pattern = "^(succeeded|failed|timeout|oom|error|cancelled)$")]
    pub status: String,
    /// How long the run took; none when it never ran.
    pub duration_ms: Option<i64>,
    pub exit_code: Option<i32>,
    /// Why the platform could not run it (`error`).
    pub error: Option<String>,
    #[schema(inline)]
    pub links: FinishedLinks,
}

/// Where the job's record and results are read through the API (with the user's token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishedLinks {
    /// `/compute/{id}`: the job, with presigned links to its stdout, stderr and outputs.
    #[serde(rename = "self")]
    pub job: String,
}

/// A user logged in (the callback exchanged a code for a valid token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserLogin {
    pub schema_version: u32,
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub user_id: Uuid,
    /// The identity provider's `preferred_username`, when it gives one.
    pub username: Option<String>,
}

/// One event of any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    FileUploaded(FileUploaded),
    CalculationQueued(CalculationQueued),
    CalculationStarted(CalculationStarted),
    CalculationFinished(CalculationFinished),
    UserLogin(UserLogin),
}

/// Every kind, by its `DetailType`.
pub const KINDS: [&str; 5] = [
    "FileUploaded",
    "CalculationQueued",
    "CalculationStarted",
    "CalculationFinished",
    "UserLogin",
];

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("unknown event kind {0:?}")]
    UnknownKind(String),
    #[error("{kind}: the changed row has no {field}")]
    Missing { kind: String, field: String },
    #[error("{kind} detail: {source}")]
    Detail {
        kind: String,
        source: serde_json::Error,
    },
}

impl Event {
    /// Its `DetailType` on the bus.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::FileUploaded(_) => "FileUploaded",
            Event::CalculationQueued(_) => "CalculationQueued",
            Event::CalculationStarted(_) => "CalculationStarted",
            Event::CalculationFinished(_) => "CalculationFinished",
            Event::UserLogin(_) => "UserLogin",
        }
    }

    pub fn event_id(&self) -> Uuid {
        match self {
            Event::FileUploaded(e) => e.event_id,
            Event::CalculationQueued(e) => e.event_id,
            Event::CalculationStarted(e) => e.event_id,
            Event::CalculationFinished(e) => e.event_id,
            Event::UserLogin(e) => e.event_id,
        }
    }

    /// Its `Detail` on the bus.
    pub fn detail(&self) -> serde_json::Value {
        let value = match self {
            Event::FileUploaded(e) => serde_json::to_value(e),
            Event::CalculationQueued(e) => serde_json::to_value(e),
            Event::CalculationStarted(e) => serde_json::to_value(e),
            Event::CalculationFinished(e) => serde_json::to_value(e),
            Event::UserLogin(e) => serde_json::to_value(e),
        };
        // Plain structs of strings, numbers and ids: serialising cannot fail.
        value.unwrap_or(serde_json::Value::Null)
    }

    /// Reads a `DetailType` and its `Detail` back (what a consumer of the bus does).
    pub fn parse(kind: &str, detail: serde_json::Value) -> Result<Event, EventError> {
        let wrap = |source| EventError::Detail {
            kind: kind.to_string(),
            source,
        };
        Ok(match kind {
            "FileUploaded" => Event::FileUploaded(serde_json::from_value(detail).map_err(wrap)?),
            "CalculationQueued" => {
                Event::CalculationQueued(serde_json::from_value(detail).map_err(wrap)?)
            }
            "CalculationStarted" => {
                Event::CalculationStarted(serde_json::from_value(detail).map_err(wrap)?)
            }
            "CalculationFinished" => {
                Event::CalculationFinished(serde_json::from_value(detail).map_err(wrap)?)
            }
            "UserLogin" => Event::UserLogin(serde_json::from_value(detail).map_err(wrap)?),
            other => return Err(EventError::UnknownKind(other.to_string())),
        })
    }
}

/// What an outbox row holds of the changed row (`to_jsonb` of it): the fields events read.
#[derive(Deserialize)]
struct Snapshot {
    id: Uuid,
    user_id: Option<Uuid>,
    // jobs
    tool: Option<String>,
    status: Option<String>,
    attempts: Option<i32>,
    duration_ms: Option<i64>,
    exit_code: Option<i32>,
    error: Option<String>,
    // files
    filename: Option<String>,
    content_type: Option<String>,
    size_bytes: Option<i64>,
    sha256: Option<String>,
    // users
    username: Option<String>,
}

impl Event {
    /// The event an outbox row stands for: `event_id` is the row's id, `occurred_at` the time
    /// the change was committed, the rest comes from the changed row (`snapshot`).
    pub fn from_outbox(
        kind: &str,
        event_id: Uuid,
        occurred_at: DateTime<Utc>,
        snapshot: serde_json::Value,
    ) -> Result<Event, EventError> {
        let s: Snapshot =
            serde_json::from_value(snapshot).map_err(|source| EventError::Detail {
                kind: kind.to_string(),
                source,
            })?;
        let missing = |field: &str| EventError::Missing {
            kind: kind.to_string(),
            field: field.to_string(),
        };
        let schema_version = SCHEMA_VERSION;
        let tool = || s.tool.clone().ok_or_else(|| missing("tool"));
        let job_owner = || s.user_id.ok_or_else(|| missing("user_id"));
        Ok(match kind {
            "FileUploaded" => Event::FileUploaded(FileUploaded {
                schema_version,
                event_id,
                occurred_at,
                user_id: job_owner()?,
                file_id: s.id,
                filename: s.filename.clone().ok_or_else(|| missing("filename"))?,
                content_type: s
                    .content_type
                    .clone()
                    .ok_or_else(|| missing("content_type"))?,
                size_bytes: s.size_bytes.ok_or_else(|| missing("size_bytes"))?,
                sha256: s.sha256.clone().ok_or_else(|| missing("sha256"))?,
            }),
            "CalculationQueued" => Event::CalculationQueued(CalculationQueued {
                schema_version,
                event_id,
                occurred_at,
                user_id: job_owner()?,
                job_id: s.id,
                tool: tool()?,
            }),
            "CalculationStarted" => Event::CalculationStarted(CalculationStarted {
                schema_version,
                event_id,
                occurred_at,
                user_id: job_owner()?,
                job_id: s.id,
                tool: tool()?,
                attempt: s.attempts.unwrap_or(1),
            }),
            "CalculationFinished" => Event::CalculationFinished(CalculationFinished {
                schema_version,
                event_id,
                occurred_at,
                user_id: job_owner()?,
                job_id: s.id,
                tool: tool()?,
                status: s.status.clone().ok_or_else(|| missing("status"))?,
                duration_ms: s.duration_ms,
                exit_code: s.exit_code,
                error: s.error.clone(),
                links: FinishedLinks {
                    job: format!("/compute/{}", s.id),
                },
            }),
            "UserLogin" => Event::UserLogin(UserLogin {
                schema_version,
                event_id,
                occurred_at,
                user_id: s.id,
                username: s.username.clone(),
            }),
            other => return Err(EventError::UnknownKind(other.to_string())),
        })
    }
}

/// The JSON schema (2020-12) of a kind's detail, with its `$id` naming the kind and version.
pub fn schema(kind: &str) -> Result<serde_json::Value, EventError> {
    let body = match kind {
        "FileUploaded" => serde_json::to_value(FileUploaded::schema()),
        "CalculationQueued" => serde_json::to_value(CalculationQueued::schema()),
        "CalculationStarted" => serde_json::to_value(CalculationStarted::schema()),
        "CalculationFinished" => serde_json::to_value(CalculationFinished::schema()),
        "UserLogin" => serde_json::to_value(UserLogin::schema()),
        other => return Err(EventError::UnknownKind(other.to_string())),
    }
    .map_err(|source| EventError::Detail {
        kind: kind.to_string(),
        source,
    })?;
    let mut schema = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("urn:mecapy:events:{kind}:v{SCHEMA_VERSION}"),
        "title": kind,
    });
    if let (Some(out), serde_json::Value::Object(fields)) = (schema.as_object_mut(), body) {
        for (k, v) in fields {
            out.entry(k).or_insert(v);
        }
    }
    // The version is part of the contract: a detail of another version does not validate.
    if let Some(props) = schema
        .pointer_mut("/properties/schema_version")
        .and_then(|v| v.as_object_mut())
    {
        props.insert("const".into(), SCHEMA_VERSION.into());
    }
    Ok(schema)
}

/// The file name of a kind's schema (`shared/events/` holds them).
pub fn schema_file(kind: &str) -> String {
    format!("{kind}.v{SCHEMA_VERSION}.json")
}

/// A kind's schema as committed: pretty JSON with a final newline.
pub fn schema_text(kind: &str) -> String {
    let schema = schema(kind).unwrap_or(serde_json::Value::Null);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished() -> Event {
        Event::CalculationFinished(CalculationFinished {
            schema_version: SCHEMA_VERSION,
            event_id: Uuid::new_v4(),
            occurred_at: Utc::now(),
            user_id: Uuid::new_v4(),
            job_id: Uuid::nil(),
            tool: "python".into(),
            status: "succeeded".into(),
            duration_ms: Some(1200),
            exit_code: Some(0),
            error: None,
            links: FinishedLinks {
                job: format!("/compute/{}", Uuid::nil()),
            },
        })
    }

    #[test]
    fn every_kind_has_a_versioned_schema() {
        for kind in KINDS {
            let schema = schema(kind).unwrap();
            assert_eq!(schema["title"], kind);
            assert_eq!(schema["$id"], format!("urn:mecapy:events:{kind}:v1"));
            assert_eq!(schema["properties"]["schema_version"]["const"], 1);
            let required = schema["required"].as_array().unwrap();
            for field in ["schema_version", "event_id", "occurred_at", "user_id"] {
                assert!(
                    required.iter().any(|r| r == field),
                    "{kind} requires {field}"
                );
            }
            assert_eq!(schema["additionalProperties"], false, "{kind}");
        }
        assert!(schema("Nope").is_err());
    }

    #[test]
    fn a_detail_reads_back_as_the_same_event() {
        let event = finished();
        assert_eq!(event.kind(), "CalculationFinished");
        let detail = event.detail();
        assert_eq!(detail["links"]["self"], format!("/compute/{}", Uuid::nil()));
        assert_eq!(Event::parse(event.kind(), detail).unwrap(), event);
    }

    #[test]
    fn unknown_kinds_and_fields_are_refused() {
        let mut detail = finished().detail();
        assert!(matches!(
            Event::parse("CalculationPaused", detail.clone()),
            Err(EventError::UnknownKind(_))
        ));
        detail["surprise"] = true.into();
        assert!(Event::parse("CalculationFinished", detail).is_err());
    }

    #[test]
    fn the_finished_schema_inlines_its_links() {
        let schema = schema("CalculationFinished").unwrap();
        let links = &schema["properties"]["links"];
        assert!(links.get("$ref").is_none(), "{links}");
        assert!(links["properties"]["self"].is_object(), "{links}");
    }

    #[test]
    fn the_committed_schemas_are_the_derived_ones() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
        for kind in KINDS {
            let path = dir.join(schema_file(kind));
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == schema_text(kind),
                "{} differs from the schema the types derive: run `make event-schemas` and \
                 commit shared/events/",
                path.display()
            );
        }
    }

    #[test]
    fn outbox_snapshots_become_events() {
        let job = Uuid::new_v4();
        let user = Uuid::new_v4();
        let snapshot = serde_json::json!({
            "id": job, "user_id": user, "tool": "python", "status": "failed", "attempts": 2,
            "duration_ms": 40, "exit_code": 1, "error": null, "limits": {}, "extra": true,
        });
        let at = Utc::now();
        let id = Uuid::new_v4();
        let Event::CalculationFinished(f) =
            Event::from_outbox("CalculationFinished", id, at, snapshot.clone()).unwrap()
        else {
            panic!("not finished")
        };
        assert_eq!((f.event_id, f.job_id, f.user_id), (id, job, user));
        assert_eq!(
            (f.status.as_str(), f.exit_code, f.duration_ms),
            ("failed", Some(1), Some(40))
        );
        assert_eq!(f.links.job, format!("/compute/{job}"));
        let started = Event::from_outbox("CalculationStarted", id, at, snapshot).unwrap();
        assert!(matches!(started, Event::CalculationStarted(s) if s.attempt == 2));
        // A file without its size is not an upload yet.
        let file = serde_json::json!({"id": job, "user_id": user, "filename": "a.csv"});
        assert!(Event::from_outbox("FileUploaded", id, at, file).is_err());
        let user_row = serde_json::json!({"id": user, "username": null});
        assert!(matches!(
            Event::from_outbox("UserLogin", id, at, user_row).unwrap(),
            Event::UserLogin(u) if u.user_id == user && u.username.is_none()
        ));
    }
}
