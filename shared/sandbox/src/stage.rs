//! The stage document of a job run on ECS (`jobs/{id}/stage.json`): what its stage-in container
//! fetches into `/work` (presigned GETs, each with the sha256 and size it must have) and how its
//! stage-out container stores the results (a presigned POST limited to `results/{id}/` and to the
//! job's output cap). RunTask's overrides hold 8 KiB, so the task is only given one presigned URL
//! of this document. The staging containers hold no AWS credentials: only these URLs.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::manifest::{Manifest, CODE_PATH};
use mecapy_adapters::storage::{PostPolicy, Storage, StorageError};
use mecapy_domain::keys;

pub const STAGE_VERSION: u32 = 1;

/// One file stage-in puts under `/work`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageFile {
    /// Relative to `/work`.
    pub path: String,
    pub url: String,
    pub sha256: String,
    pub size: i64,
}

/// What stage-out keeps of the job's output (the sandbox's caps).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutputCaps {
    pub stdout_max_bytes: u64,
    pub stderr_max_bytes: u64,
    pub output_max_files: usize,
    pub output_max_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageDocument {
    pub version: u32,
    pub job_id: Uuid,
    pub files: Vec<StageFile>,
    pub upload: PostPolicy,
    pub caps: OutputCaps,
}

impl StageDocument {
    /// The document of `manifest`'s job: its code and inputs as presigned GETs, its results'
    /// upload form, all valid for `ttl` (the job's lease: long enough for the task to start
    /// and run, no longer).
    pub async fn for_job(
        manifest: &Manifest,
        code_size: i64,
        storage: &Storage,
        ttl: Duration,
    ) -> Result<Self, StorageError> {
        let mut files = Vec::with_capacity(manifest.inputs.len() + 1);
        files.push(StageFile {
            path: CODE_PATH.to_string(),
            url: storage
                .presign_get(&manifest.code_key, CODE_PATH, ttl)
                .await?,
            sha256: manifest.code_sha256.clone(),
            size: code_size,
        });
        for input in &manifest.inputs {
            files.push(StageFile {
                path: input.path.clone(),
                url: storage
                    .presign_get(&input.key, &input.filename, ttl)
                    .await?,
                sha256: input.sha256.clone(),
                size: input.size,
            });
        }
        let limits = &manifest.limits;
        // One object at a time is capped at the larger of the stream caps and the outputs' cap.
        let largest = limits
            .output_max_bytes
            .max(limits.stdout_max_bytes)
            .max(limits.stderr_max_bytes);
        let upload = storage
            .presign_post(&keys::results_prefix(manifest.job_id), largest, ttl)
            .await?;
        Ok(StageDocument {
            version: STAGE_VERSION,
            job_id: manifest.job_id,
            files,
            upload,
            caps: OutputCaps {
                stdout_max_bytes: limits.stdout_max_bytes,
                stderr_max_bytes: limits.stderr_max_bytes,
                output_max_files: limits.output_max_files,
                output_max_bytes: limits.output_max_bytes,
            },
        })
    }
}
