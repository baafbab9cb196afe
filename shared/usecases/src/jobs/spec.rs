//! A job's description, one type from its submission to every runtime: the rules a submission
//! must follow, the [`Manifest`] that `compute-submit` writes as `jobs/{id}/manifest.json` and
//! `compute-dispatch` reads (its type and its sandbox run are the sandbox crate's).

use serde::Deserialize;
use uuid::Uuid;

use super::keys;
use crate::db::{files::FileRow, jobs::Job, tools::Tool};
use mecapy_domain::error::DomainError;
pub use mecapy_domain::job::Input;
pub use mecapy_sandbox::manifest::{Manifest, CODE_PATH, INPUTS_DIR, JOB_LABEL};
use mecapy_sandbox::Limits;

/// Largest number of input files a job may take.
pub const MAX_INPUTS: usize = 32;
/// Largest number of arguments, and of bytes in each.
pub const MAX_ARGS: usize = 64;
pub const MAX_ARG_BYTES: usize = 4096;

/// `POST /compute`: what a user asks for. Exactly one of `code` and `file_id`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The tool that runs the code (`python`).
    #[schema(min_length = 1)]
    pub tool: String,
    /// The Python source, or…
    pub code: Option<String>,
    /// …one of the caller's files holding it.
    pub file_id: Option<Uuid>,
    /// The caller's files the job reads, under `/work/inputs/{filename}`.
    #[serde(default)]
    #[schema(max_items = 32)]
    pub input_file_ids: Vec<Uuid>,
    /// Arguments after `python3 /work/main.py` (each at most 4096 bytes, without NUL).
    #[serde(default)]
    #[schema(max_items = 64)]
    pub args: Vec<String>,
    /// Where the job's end is POSTed (its `CalculationFinished` event), signed with the caller's
    /// webhook secret (`GET /webhooks/secret`): https, to a public address.
    #[schema(max_length = 2048)]
    pub callback_url: Option<String>,
}

/// Where a submission's code comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum CodeSource {
    Inline(String),
    File(Uuid),
}

impl SubmitRequest {
    /// The request's own bounds (inputs, arguments, one code source, the code's size when it is
    /// inline): what can be refused before anything is looked up.
    pub fn check(&self, max_code_bytes: usize) -> Result<CodeSource, DomainError> {
        if self.input_file_ids.len() > MAX_INPUTS {
            return Err(DomainError::invalid(
                "input_file_ids",
                format!("at most {MAX_INPUTS} input files"),
            ));
        }
        if self.args.len() > MAX_ARGS
            || self
                .args
                .iter()
                .any(|a| a.len() > MAX_ARG_BYTES || a.contains('\0'))
        {
            return Err(DomainError::invalid(
                "args",
                format!("at most {MAX_ARGS} arguments of {MAX_ARG_BYTES} bytes, without NUL"),
            ));
        }
        match (&self.code, self.file_id) {
            (Some(code), None) => {
                check_code_size(code.len() as u64, max_code_bytes)?;
                Ok(CodeSource::Inline(code.clone()))
            }
            (None, Some(file)) => Ok(CodeSource::File(file)),
            _ => Err(DomainError::invalid(
                "code",
                "give exactly one of `code` and `file_id`",
            )),
        }
    }

    /// The command the job runs: the tool's interpreter on its code, then the user's arguments.
    pub fn command(&self) -> Vec<String> {
        let mut command = vec!["python3".to_string(), format!("/work/{CODE_PATH}")];
        command.extend(self.args.iter().cloned());
        command
    }
}

/// Code larger than the deployment allows is refused (413), whatever its source.
pub fn check_code_size(size: u64, max_code_bytes: usize) -> Result<(), DomainError> {
    if size > max_code_bytes as u64 {
        return Err(DomainError::TooLarge(format!(
            "code is larger than {max_code_bytes} bytes"
        )));
    }
    Ok(())
}

/// Code kept in a file must be UTF-8 text.
pub fn code_from_file(bytes: &[u8]) -> Result<String, DomainError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| DomainError::invalid("file_id", "the code file is not UTF-8 text"))
}

/// The limits a tool's jobs run under: the tool's own, the sandbox's defaults for the rest.
pub fn limits_for(tool: &Tool) -> Limits {
    Limits {
        memory_mb: tool.memory_mb as i64,
        cpus: tool.cpus,
        timeout: std::time::Duration::from_secs(tool.timeout_seconds.max(0) as u64),
        pids_limit: tool.pids_limit as i64,
        ..Limits::default()
    }
}

/// The image a tool's jobs run in: the deployment's compute image stands in for the python
/// tool's when it is configured.
pub fn image_for(tool: &Tool, compute_image: Option<&str>) -> String {
    match compute_image {
        Some(image) if tool.name == "python" => image.to_string(),
        _ => tool.image.clone(),
    }
}

/// The input a stored file becomes: under `inputs/`, by its name.
pub fn input_of(file: FileRow) -> Input {
    Input {
        file_id: file.id,
        path: format!("{INPUTS_DIR}/{}", file.filename),
        filename: file.filename,
        key: file.s3_key,
        sha256: file.sha256.unwrap_or_default(),
        size: file.size_bytes.unwrap_or(0),
    }
}

/// The inputs of a submission, in the order given, each name once (a file given twice is one
/// input).
pub fn unique_inputs(files: impl IntoIterator<Item = FileRow>) -> Vec<Input> {
    let mut inputs: Vec<Input> = Vec::new();
    for file in files {
        if !inputs.iter().any(|i| i.filename == file.filename) {
            inputs.push(input_of(file));
        }
    }
    inputs
}

/// The manifest of a job just recorded, whose code has this sha256.
pub fn manifest(
    job: &Job,
    request: &SubmitRequest,
    code_sha256: String,
    inputs: Vec<Input>,
    limits: Limits,
) -> Manifest {
    Manifest {
        job_id: job.id,
        user_id: job.user_id,
        tool: request.tool.clone(),
        image: job.image.clone(),
        command: request.command(),
        code_key: keys::code(job.id),
        code_sha256,
        inputs,
        limits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> SubmitRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_submission_names_one_code_source_within_its_bounds() {
        let inline = request(serde_json::json!({"tool": "python", "code": "print(1)"}));
        assert_eq!(
            inline.check(100).unwrap(),
            CodeSource::Inline("print(1)".into())
        );
        assert!(matches!(inline.check(3), Err(DomainError::TooLarge(_))));
        let id = Uuid::new_v4();
        let file = request(serde_json::json!({"tool": "python", "file_id": id}));
        assert_eq!(file.check(100).unwrap(), CodeSource::File(id));
        for bad in [
            serde_json::json!({"tool": "python"}),
            serde_json::json!({"tool": "python", "code": "x", "file_id": id}),
            serde_json::json!({"tool": "python", "code": "x", "args": ["a\u{0}b"]}),
            serde_json::json!({"tool": "python", "code": "x", "args": vec!["a"; MAX_ARGS + 1]}),
            serde_json::json!({"tool": "python", "code": "x", "args": ["a".repeat(MAX_ARG_BYTES + 1)]}),
            serde_json::json!({"tool": "python", "code": "x", "input_file_ids": vec![id; MAX_INPUTS + 1]}),
        ] {
            assert!(
                matches!(
                    request(bad.clone()).check(100),
                    Err(DomainError::Invalid { .. })
                ),
                "{bad}"
            );
        }
        assert!(serde_json::from_value::<SubmitRequest>(
            serde_json::json!({"tool": "python", "code": "x", "network": true})
        )
        .is_err());
    }

    #[test]
    fn the_command_runs_the_code_with_the_arguments_after_it() {
        let r = request(serde_json::json!({"tool": "python", "code": "x", "args": ["-n", "3"]}));
        assert_eq!(r.command(), ["python3", "/work/main.py", "-n", "3"]);
    }

    fn tool() -> Tool {
        Tool {
            id: Uuid::new_v4(),
            name: "python".into(),
            image: "mecapy-python:bookworm".into(),
            memory_mb: 512,
            cpus: 1.0,
            timeout_seconds: 60,
            pids_limit: 32,
            network: false,
            allowed_imports: vec![],
        }
    }

    #[test]
    fn a_tool_sets_its_limits_and_image() {
        let limits = limits_for(&tool());
        assert_eq!(limits.memory_mb, 512);
        assert_eq!(limits.cpus, 1.0);
        assert_eq!(limits.timeout, std::time::Duration::from_secs(60));
        assert_eq!(limits.pids_limit, 32);
        assert_eq!(limits.tmp_mb, Limits::default().tmp_mb);
        assert_eq!(image_for(&tool(), None), "mecapy-python:bookworm");
        assert_eq!(image_for(&tool(), Some("registry/py:1")), "registry/py:1");
        let other = Tool {
            name: "octave".into(),
            ..tool()
        };
        assert_eq!(
            image_for(&other, Some("registry/py:1")),
            "mecapy-python:bookworm"
        );
    }

    fn file(name: &str) -> FileRow {
        let now = chrono::Utc::now();
        FileRow {
            id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            filename: name.into(),
            s3_key: format!("u/{name}"),
            content_type: "text/csv".into(),
            size_bytes: Some(3),
            sha256: Some("ab".into()),
            etag: None,
            status: "available".into(),
            altered_reason: None,
            expected: None,
            upload_id: Uuid::new_v4(),
            created_at: now,
            updated_at: now,
            completed_at: Some(now),
        }
    }

    #[test]
    fn inputs_keep_their_order_once_each_under_inputs() {
        let a = file("a.csv");
        let inputs = unique_inputs([a.clone(), file("b.csv"), a]);
        let paths: Vec<_> = inputs.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["inputs/a.csv", "inputs/b.csv"]);
        assert_eq!(inputs[0].key, "u/a.csv");
    }
}
