//! The job's manifest (`jobs/{id}/manifest.json`): everything needed to run a job and check its
//! inputs, whichever runtime runs it, and the sandbox run ([`JobSpec`]) it becomes.

use bytes::Bytes;
use mecapy_adapters::db::jobs::Job;
use mecapy_domain::job::{Input, Limits};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::JobSpec;

/// The code's path under `/work`.
pub const CODE_PATH: &str = "main.py";
/// Where inputs go under `/work`.
pub const INPUTS_DIR: &str = "inputs";
/// The label (Docker) or tag (ECS) naming the job a container or task runs.
pub const JOB_LABEL: &str = "org.mecapy.job-id";

/// Everything needed to run the job and check its inputs, whichever runtime runs it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub job_id: Uuid,
    pub user_id: Uuid,
    pub tool: String,
    pub image: String,
    pub command: Vec<String>,
    pub code_key: String,
    pub code_sha256: String,
    pub inputs: Vec<Input>,
    pub limits: Limits,
}

impl Manifest {
    /// Whether this manifest describes `job` (same id, same owner).
    pub fn describes(&self, job: &Job) -> bool {
        self.job_id == job.id && self.user_id == job.user_id
    }

    /// The environment the job's command sees, and nothing else.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("HOME".into(), "/work".into()),
            ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
            ("PYTHONUNBUFFERED".into(), "1".into()),
            ("MECAPY_JOB_ID".into(), self.job_id.to_string()),
        ]
    }

    /// The labels (Docker) or tags (ECS) that trace what a runtime created back to the job.
    pub fn labels(&self) -> Vec<(String, String)> {
        vec![(JOB_LABEL.into(), self.job_id.to_string())]
    }

    /// The sandbox run of this job: its code as [`CODE_PATH`], its inputs at their paths (given
    /// in the manifest's order), its command, environment, limits and labels.
    pub fn job_spec(&self, code: Bytes, inputs: Vec<Bytes>) -> JobSpec {
        let mut files = Vec::with_capacity(inputs.len() + 1);
        files.push((CODE_PATH.to_string(), code));
        files.extend(self.inputs.iter().map(|i| i.path.clone()).zip(inputs));
        JobSpec {
            image: self.image.clone(),
            command: self.command.clone(),
            files,
            env: self.env(),
            limits: self.limits.clone(),
            labels: self.labels(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_run_carries_the_code_inputs_environment_and_label() {
        let inputs = vec![Input {
            file_id: Uuid::new_v4(),
            filename: "a.csv".into(),
            key: "u/a.csv".into(),
            sha256: "ab".into(),
            size: 3,
            path: format!("{INPUTS_DIR}/a.csv"),
        }];
        let manifest = Manifest {
            job_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            tool: "python".into(),
            image: "img".into(),
            command: vec!["python3".into(), "/work/main.py".into()],
            code_key: "k".into(),
            code_sha256: "s".into(),
            inputs,
            limits: Limits::default(),
        };
        let spec = manifest.job_spec(
            Bytes::from_static(b"code"),
            vec![Bytes::from_static(b"1,2")],
        );
        assert_eq!(
            spec.files[0],
            ("main.py".to_string(), Bytes::from_static(b"code"))
        );
        assert_eq!(
            spec.files[1],
            ("inputs/a.csv".to_string(), Bytes::from_static(b"1,2"))
        );
        assert!(spec
            .env
            .contains(&("MECAPY_JOB_ID".to_string(), manifest.job_id.to_string())));
        assert_eq!(
            spec.labels,
            [(JOB_LABEL.to_string(), manifest.job_id.to_string())]
        );
        assert_eq!(spec.limits, Limits::default());
        let json = serde_json::to_value(&manifest).unwrap();
        assert_eq!(serde_json::from_value::<Manifest>(json).unwrap(), manifest);
    }
}
