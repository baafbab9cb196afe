//! Starting and stopping a job's task on ECS. No Lambda waits on a job there: dispatch starts
//! the task and returns; the task's end comes back as its state change event ([`super::events`]).
//! A task names its job twice: `startedBy` (which `ListTasks` filters on, and which the end
//! event carries) and a tag; so a retried dispatch finds the task it started instead of
//! starting a second one.

use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::types::{DesiredStatus, KeyValuePair, Tag, TaskOverride};
use uuid::Uuid;

use super::events::TIMEOUT_REASON;
use super::{container_override, started_by, STAGE_IN_CONTAINER, STAGE_OUT_CONTAINER};
use crate::manifest::JOB_LABEL;
use crate::Restrictions;

/// The stage document's presigned URL, as the staging containers find it.
pub const STAGE_URL_ENV: &str = "MECAPY_STAGE_URL";

/// What a dispatch asks of ECS for one job.
#[derive(Debug, Clone)]
pub struct TaskRequest<'a> {
    pub job: Uuid,
    /// The tool's task definition (family or ARN).
    pub task_definition: &'a str,
    pub restrictions: &'a Restrictions,
    pub command: &'a [String],
    pub env: &'a [(String, String)],
    /// One presigned GET of the job's stage document (RunTask's overrides hold 8 KiB: the
    /// inputs' URLs and the upload policy travel in that document, not in the overrides).
    pub stage_url: &'a str,
}

impl TaskRequest<'_> {
    /// `RunTask`'s overrides: the stage document's URL for the staging containers; the job's
    /// command, environment and limits for its container; the task's CPU limit (on EC2, the
    /// containers' `cpu` are only shares: the task's `cpu` is the hard limit).
    pub fn overrides(&self) -> TaskOverride {
        let stage_env = KeyValuePair::builder()
            .name(STAGE_URL_ENV)
            .value(self.stage_url)
            .build();
        let staging = |name: &str| {
            aws_sdk_ecs::types::ContainerOverride::builder()
                .name(name)
                .environment(stage_env.clone())
                .build()
        };
        TaskOverride::builder()
            .cpu(self.restrictions.cpu_units().to_string())
            .container_overrides(staging(STAGE_IN_CONTAINER))
            .container_overrides(container_override(
                self.restrictions,
                self.command,
                self.env,
            ))
            .container_overrides(staging(STAGE_OUT_CONTAINER))
            .build()
    }
}

/// The job's task: started now, or found running from an earlier attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Launched {
    Started(String),
    AlreadyRunning(String),
}

impl Launched {
    pub fn task_arn(&self) -> &str {
        match self {
            Launched::Started(arn) | Launched::AlreadyRunning(arn) => arn,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No instance has room for the task now: the job stays queued and is retried later.
    #[error("no capacity for the job's task: {0}")]
    NoCapacity(String),
    /// ECS could not be reached or failed: retry later.
    #[error("ECS unavailable: {0}")]
    Unavailable(String),
    /// ECS refused the request itself (a wrong task definition or cluster): retrying the same
    /// request will not help.
    #[error("ECS refused the job's task: {0}")]
    Refused(String),
}

impl LaunchError {
    pub fn is_transient(&self) -> bool {
        !matches!(self, LaunchError::Refused(_))
    }
}

fn ecs_error<E, R>(what: &str, e: SdkError<E, R>) -> LaunchError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = format!("{what}: {}", aws_sdk_ecs::error::DisplayErrorContext(&e));
    match &e {
        SdkError::ServiceError(service) => match service.err().code() {
            Some(
                "ServerException"
                | "ThrottlingException"
                | "LimitExceededException"
                | "ServiceUnavailableException",
            ) => LaunchError::Unavailable(detail),
            Some(_) => LaunchError::Refused(detail),
            None => LaunchError::Unavailable(detail),
        },
        _ => LaunchError::Unavailable(detail),
    }
}

/// The jobs' tasks on one ECS cluster.
#[derive(Debug, Clone)]
pub struct EcsLauncher {
    client: aws_sdk_ecs::Client,
    cluster: String,
}

impl EcsLauncher {
    pub fn new(config: &aws_config::SdkConfig, cluster: &str) -> Self {
        Self::with_client(mecapy_adapters::sdk_client!(aws_sdk_ecs, config), cluster)
    }

    pub fn with_client(client: aws_sdk_ecs::Client, cluster: &str) -> Self {
        EcsLauncher {
            client,
            cluster: cluster.to_string(),
        }
    }

    /// The job's task that is pending or running, if any.
    pub async fn find(&self, job: Uuid) -> Result<Option<String>, LaunchError> {
        let found = self
            .client
            .list_tasks()
            .cluster(&self.cluster)
            .started_by(started_by(job))
            .desired_status(DesiredStatus::Running)
            .send()
            .await
            .map_err(|e| ecs_error("listing the job's tasks", e))?;
        Ok(found.task_arns().first().cloned())
    }

    /// Starts the job's task, unless an earlier attempt's task is still there.
    pub async fn start(&self, request: &TaskRequest<'_>) -> Result<Launched, LaunchError> {
        if let Some(arn) = self.find(request.job).await? {
            return Ok(Launched::AlreadyRunning(arn));
        }
        self.run(request).await.map(Launched::Started)
    }

    /// Starts the job's task without looking for one first (the caller just did, with
    /// [`Self::find`]): its ARN.
    pub async fn run(&self, request: &TaskRequest<'_>) -> Result<String, LaunchError> {
        let ran = self
            .client
            .run_task()
            .cluster(&self.cluster)
            .task_definition(request.task_definition)
            .count(1)
            .started_by(started_by(request.job))
            .tags(
                Tag::builder()
                    .key(JOB_LABEL)
                    .value(request.job.to_string())
                    .build(),
            )
            .overrides(request.overrides())
            .send()
            .await
            .map_err(|e| ecs_error("starting the job's task", e))?;
        if let Some(arn) = ran.tasks().first().and_then(|t| t.task_arn()) {
            return Ok(arn.to_string());
        }
        // No task and the failures say why; RESOURCE:* (CPU, MEMORY) and an empty answer both
        // mean no instance has room now.
        let reasons: Vec<String> = ran
            .failures()
            .iter()
            .map(|f| {
                format!(
                    "{}{}",
                    f.reason().unwrap_or("unknown"),
                    f.detail().map(|d| format!(" ({d})")).unwrap_or_default()
                )
            })
            .collect();
        if reasons.iter().all(|r| r.starts_with("RESOURCE:")) {
            return Err(LaunchError::NoCapacity(if reasons.is_empty() {
                "no instance of the cluster can place it".into()
            } else {
                reasons.join(", ")
            }));
        }
        Err(LaunchError::Refused(reasons.join(", ")))
    }

    /// When the task's containers started (none while it waits for an instance, or is gone).
    pub async fn started_at(
        &self,
        task_arn: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, LaunchError> {
        let described = self
            .client
            .describe_tasks()
            .cluster(&self.cluster)
            .tasks(task_arn)
            .send()
            .await
            .map_err(|e| ecs_error("describing the job's task", e))?;
        Ok(described
            .tasks()
            .first()
            .and_then(|t| t.started_at())
            .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())))
    }

    /// Stops a task at its job's limit (the fallback to the in-container wall clock); its end
    /// event then says `timeout`.
    pub async fn stop_at_limit(&self, task_arn: &str) -> Result<(), LaunchError> {
        self.client
            .stop_task()
            .cluster(&self.cluster)
            .task(task_arn)
            .reason(TIMEOUT_REASON)
            .send()
            .await
            .map_err(|e| ecs_error("stopping the job's task", e))?;
        Ok(())
    }
}
