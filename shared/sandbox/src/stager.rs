//! The staging containers of a job's ECS task (the `stager` binary): stage-in fetches the
//! job's code and inputs into `/work` through the presigned GETs of its [`StageDocument`],
//! checking each file's size and sha256; stage-out stores stdout, stderr and `/work/out/*`
//! through the document's presigned POST, within the job's output caps, then a report of what
//! it stored ([`StagedReport`]). Neither holds AWS credentials: only these URLs.
//!
//! A refusal is an exit code ([`Refusal`]): the task's end event carries it, and the job's
//! `error` reason says what went wrong. Stage-in writes its marker last; stage-out stores
//! nothing unless the marker is there, so a refused stage-in leaves nothing under `results/`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::archive::{Admit, OutputBudget};
use crate::stage::{StageDocument, StageFile, STAGE_VERSION};
use mecapy_adapters::storage::PostPolicy;
use mecapy_domain::keys;

/// Where the task volume is mounted in every container of the task.
pub const WORK_DIR: &str = "/work";
/// The task's own files in `/work` (not the job's): its streams and stage-in's marker.
pub const CONTROL_DIR: &str = ".mecapy";
/// The job's stdout and stderr, as its container's command redirects them.
pub const STDOUT_FILE: &str = ".mecapy/stdout";
pub const STDERR_FILE: &str = ".mecapy/stderr";
/// Written by stage-in once every file is in place and checked.
pub const STAGED_MARKER: &str = ".mecapy/staged-in";
/// The job's outputs, relative to `/work`.
pub const OUT_DIR: &str = "out";
/// How deep stage-out looks into `/work/out`.
const MAX_DEPTH: usize = 32;
/// The part of a refused request's body kept in the reason.
const SNIPPET: usize = 300;

/// The job's command with its stdout and stderr written to the task volume, where stage-out
/// finds them (on ECS, a container's streams go to its log driver, out of stage-out's reach).
/// The command is passed as arguments, never parsed by the shell.
pub fn streams_to_files(command: &[String]) -> Vec<String> {
    let mut wrapped = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        format!("exec \"$@\" >{WORK_DIR}/{STDOUT_FILE} 2>{WORK_DIR}/{STDERR_FILE}"),
        "sh".into(),
    ];
    wrapped.extend(command.iter().cloned());
    wrapped
}

/// Why a staging container refused: its exit code, and what the job's `error` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Started wrongly: no stage URL, an unknown mode.
    Usage = 2,
    /// The stage document or a file could not be fetched: expired or refused URL, S3
    /// unreachable.
    Fetch = 3,
    /// A file is not what the job was submitted with: its size or sha256 changed.
    Changed = 4,
    /// The stage document is unreadable, of another version, or names a path outside `/work`.
    Document = 5,
    /// S3 refused or failed an upload of the results (expired form, over the size cap).
    Upload = 6,
    /// Stage-out found that stage-in never completed: nothing is stored.
    NotStaged = 7,
    /// The task volume could not be read or written (full, say).
    Io = 8,
}

impl Refusal {
    const ALL: [Refusal; 7] = [
        Refusal::Usage,
        Refusal::Fetch,
        Refusal::Changed,
        Refusal::Document,
        Refusal::Upload,
        Refusal::NotStaged,
        Refusal::Io,
    ];

    pub fn exit_code(self) -> i32 {
        self as i32
    }

    pub fn from_exit_code(code: i64) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|r| i64::from(r.exit_code()) == code)
    }

    /// What a user reads in the job's `error` reason.
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::Usage => "the staging container was started without its stage document",
            Refusal::Fetch => {
                "a file could not be fetched (its presigned URL expired or was refused)"
            }
            Refusal::Changed => "a file changed since the job was submitted (size or sha256)",
            Refusal::Document => "the stage document is unreadable or names an unsafe path",
            Refusal::Upload => "S3 refused the results (the upload form expired or a cap was hit)",
            Refusal::NotStaged => "the job's files were never staged",
            Refusal::Io => "the task's work volume could not be read or written",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{} ({detail})", refusal.describe())]
pub struct StageError {
    pub refusal: Refusal,
    pub detail: String,
}

fn refuse(refusal: Refusal, detail: impl Into<String>) -> StageError {
    StageError {
        refusal,
        detail: detail.into(),
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StageError {
    refuse(Refusal::Io, format!("{what} {}: {e}", path.display()))
}

/// One stored stream (stdout or stderr).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredStream {
    pub size: u64,
    pub truncated: bool,
}

/// One stored output file, as the job's record lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredOutput {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

impl StoredOutput {
    /// The output as the job's record lists it.
    pub fn record(&self) -> mecapy_domain::job::JobOutput {
        mecapy_domain::job::JobOutput {
            name: self.name.clone(),
            size: self.size as i64,
            sha256: self.sha256.clone(),
        }
    }
}

/// What stage-out stored (`results/{id}/staged.json`, written last).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StagedReport {
    pub version: u32,
    pub job_id: Uuid,
    pub stdout: StoredStream,
    pub stderr: StoredStream,
    pub outputs: Vec<StoredOutput>,
    pub outputs_truncated: bool,
}

/// The HTTP client of the staging containers: bounded waits, no redirects (a presigned URL
/// answers itself).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

async fn refused_body(reply: reqwest::Response) -> String {
    let status = reply.status();
    let body = reply.text().await.unwrap_or_default();
    let snippet: String = body.chars().take(SNIPPET).collect();
    format!("HTTP {status}: {snippet}")
}

/// The stage document at `url`.
pub async fn fetch_document(
    http: &reqwest::Client,
    url: &str,
) -> Result<StageDocument, StageError> {
    let reply = http
        .get(url)
        .send()
        .await
        .map_err(|e| refuse(Refusal::Fetch, format!("the stage document: {e}")))?;
    if !reply.status().is_success() {
        return Err(refuse(
            Refusal::Fetch,
            format!("the stage document: {}", refused_body(reply).await),
        ));
    }
    let bytes = reply
        .bytes()
        .await
        .map_err(|e| refuse(Refusal::Fetch, format!("the stage document: {e}")))?;
    let document: StageDocument = serde_json::from_slice(&bytes)
        .map_err(|e| refuse(Refusal::Document, format!("the stage document: {e}")))?;
    if document.version != STAGE_VERSION {
        return Err(refuse(
            Refusal::Document,
            format!(
                "version {} (this stager reads {STAGE_VERSION})",
                document.version
            ),
        ));
    }
    Ok(document)
}

/// Where a staged file goes: a safe relative path, outside the task's own files and the
/// outputs.
fn staged_path(work: &Path, file: &StageFile) -> Result<PathBuf, StageError> {
    crate::validate::relative_path(&file.path)
        .map_err(|e| refuse(Refusal::Document, e.to_string()))?;
    let first = file.path.split('/').next().unwrap_or_default();
    if first == CONTROL_DIR || first == OUT_DIR {
        return Err(refuse(
            Refusal::Document,
            format!("{:?} is reserved", file.path),
        ));
    }
    if file.size < 0 {
        return Err(refuse(
            Refusal::Document,
            format!("{:?} has a negative size", file.path),
        ));
    }
    Ok(work.join(&file.path))
}

/// Stage-in: every file of the document into `work`, each checked, then the marker.
pub async fn stage_in(
    http: &reqwest::Client,
    document: &StageDocument,
    work: &Path,
) -> Result<(), StageError> {
    let targets = document
        .files
        .iter()
        .map(|file| staged_path(work, file))
        .collect::<Result<Vec<_>, _>>()?;
    for dir in [work.join(CONTROL_DIR), work.join(OUT_DIR)] {
        std::fs::create_dir_all(&dir).map_err(|e| io("creating", &dir, e))?;
    }
    for (file, target) in document.files.iter().zip(&targets) {
        fetch_file(http, file, target).await?;
    }
    let marker = work.join(STAGED_MARKER);
    std::fs::write(&marker, document.job_id.to_string()).map_err(|e| io("writing", &marker, e))
}

async fn fetch_file(
    http: &reqwest::Client,
    file: &StageFile,
    target: &Path,
) -> Result<(), StageError> {
    use std::io::Write;
    let what = &file.path;
    let mut reply = http
        .get(&file.url)
        .send()
        .await
        .map_err(|e| refuse(Refusal::Fetch, format!("{what}: {e}")))?;
    if !reply.status().is_success() {
        return Err(refuse(
            Refusal::Fetch,
            format!("{what}: {}", refused_body(reply).await),
        ));
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
    }
    // A path named twice is refused, never overwritten.
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(target)
        .map_err(|e| io("creating", target, e))?;
    let expected = file.size as u64;
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    while let Some(chunk) = reply
        .chunk()
        .await
        .map_err(|e| refuse(Refusal::Fetch, format!("{what}: {e}")))?
    {
        received += chunk.len() as u64;
        if received > expected {
            return Err(refuse(
                Refusal::Changed,
                format!("{what}: more than its {expected} bytes"),
            ));
        }
        hasher.update(&chunk);
        out.write_all(&chunk)
            .map_err(|e| io("writing", target, e))?;
    }
    if received != expected {
        return Err(refuse(
            Refusal::Changed,
            format!("{what}: {received} bytes, not {expected}"),
        ));
    }
    let sha256 = hex::encode(hasher.finalize());
    if sha256 != file.sha256 {
        return Err(refuse(
            Refusal::Changed,
            format!("{what}: sha256 {sha256}, not {}", file.sha256),
        ));
    }
    Ok(())
}

/// A regular file of the task volume (never through a link), at most `max` bytes of it, and
/// whether there was more. A missing file is empty.
fn read_capped(path: &Path, max: u64) -> Result<(Vec<u8>, bool), StageError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
        Err(e) => return Err(io("reading", path, e)),
    };
    if !meta.file_type().is_file() {
        return Ok((Vec::new(), false));
    }
    let file = std::fs::File::open(path).map_err(|e| io("opening", path, e))?;
    let mut data = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| io("reading", path, e))?;
    let truncated = data.len() as u64 > max;
    data.truncate(usize::try_from(max).unwrap_or(usize::MAX));
    Ok((data, truncated))
}

/// The regular files under `dir`, as names relative to it, in name order; links, devices and
/// the like are skipped, and so are names the sandbox would not collect.
fn output_files(dir: &Path) -> Result<Vec<(String, PathBuf, u64)>, StageError> {
    fn walk(
        dir: &Path,
        prefix: &str,
        depth: usize,
        found: &mut Vec<(String, PathBuf, u64)>,
    ) -> Result<(), StageError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("listing", dir, e)),
        };
        let mut entries: Vec<_> = entries
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
            .collect();
        entries.sort();
        for (name, path) in entries {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let relative = format!("{prefix}{name}");
            if meta.file_type().is_dir() && depth < MAX_DEPTH {
                walk(&path, &format!("{relative}/"), depth + 1, found)?;
            } else if meta.file_type().is_file()
                && crate::validate::relative_path(&relative).is_ok()
            {
                found.push((relative, path, meta.len()));
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    if is_real_dir(dir) {
        walk(dir, "", 0, &mut found)?;
    }
    Ok(found)
}

/// A directory itself, not a link to one (the job may have replaced `/work/out` or
/// `/work/.mecapy` by a link into the stager's own file system).
fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_dir())
}

async fn upload(
    http: &reqwest::Client,
    policy: &PostPolicy,
    name: &str,
    content_type: &str,
    body: &[u8],
) -> Result<(), StageError> {
    let key = format!("{}{name}", policy.prefix);
    let (form_type, form) = policy.form(&key, content_type, body);
    let reply = http
        .post(&policy.url)
        .header(reqwest::header::CONTENT_TYPE, form_type)
        .body(form)
        .send()
        .await
        .map_err(|e| refuse(Refusal::Upload, format!("{name}: {e}")))?;
    if !reply.status().is_success() {
        return Err(refuse(
            Refusal::Upload,
            format!("{name}: {}", refused_body(reply).await),
        ));
    }
    Ok(())
}

/// Stage-out: stdout, stderr and the outputs within the caps, then the report, last.
pub async fn stage_out(
    http: &reqwest::Client,
    document: &StageDocument,
    work: &Path,
) -> Result<StagedReport, StageError> {
    let marker = work.join(STAGED_MARKER);
    let staged = std::fs::read_to_string(&marker).unwrap_or_default();
    if staged != document.job_id.to_string() {
        return Err(refuse(
            Refusal::NotStaged,
            format!("no stage-in marker at {}", marker.display()),
        ));
    }
    let caps = &document.caps;
    let policy = &document.upload;
    let text = "text/plain; charset=utf-8";
    let streams = is_real_dir(&work.join(CONTROL_DIR));
    let stream = |file: &str, max: u64| match streams {
        true => read_capped(&work.join(file), max),
        false => Ok((Vec::new(), false)),
    };
    let (stdout, stdout_truncated) = stream(STDOUT_FILE, caps.stdout_max_bytes)?;
    upload(http, policy, keys::STDOUT, text, &stdout).await?;
    let (stderr, stderr_truncated) = stream(STDERR_FILE, caps.stderr_max_bytes)?;
    upload(http, policy, keys::STDERR, text, &stderr).await?;

    let mut budget = OutputBudget::new(caps.output_max_files, caps.output_max_bytes);
    let mut outputs = Vec::new();
    for (name, path, size) in output_files(&work.join(OUT_DIR))? {
        match budget.admit(size) {
            Admit::Stop => break,
            Admit::Skip => continue,
            Admit::Take => {}
        }
        let (data, _) = read_capped(&path, size)?;
        upload(
            http,
            policy,
            &format!("{}{name}", keys::OUTPUTS_DIR),
            "application/octet-stream",
            &data,
        )
        .await?;
        outputs.push(StoredOutput {
            name,
            size: data.len() as u64,
            sha256: hex::encode(Sha256::digest(&data)),
        });
    }
    let report = StagedReport {
        version: STAGE_VERSION,
        job_id: document.job_id,
        stdout: StoredStream {
            size: stdout.len() as u64,
            truncated: stdout_truncated,
        },
        stderr: StoredStream {
            size: stderr.len() as u64,
            truncated: stderr_truncated,
        },
        outputs,
        outputs_truncated: budget.truncated,
    };
    let body = serde_json::to_vec(&report).expect("a report serialises");
    upload(http, policy, keys::STAGED, "application/json", &body).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_name_their_refusal() {
        for r in Refusal::ALL {
            assert_eq!(Refusal::from_exit_code(r.exit_code().into()), Some(r));
            assert!(r.exit_code() > 1, "0 is success, 1 a crash");
        }
        assert_eq!(Refusal::from_exit_code(0), None);
        assert_eq!(Refusal::from_exit_code(137), None);
    }

    #[test]
    fn the_command_is_passed_to_the_shell_as_arguments() {
        let wrapped = streams_to_files(&["python3".into(), "$(rm -rf /)".into()]);
        assert_eq!(wrapped[..2], ["/bin/sh", "-c"]);
        assert_eq!(
            wrapped[2],
            "exec \"$@\" >/work/.mecapy/stdout 2>/work/.mecapy/stderr"
        );
        assert_eq!(wrapped[3..], ["sh", "python3", "$(rm -rf /)"]);
    }

    fn file(path: &str) -> StageFile {
        StageFile {
            path: path.into(),
            url: "http://s3/x".into(),
            sha256: String::new(),
            size: 1,
        }
    }

    #[test]
    fn staged_paths_stay_in_work_and_off_the_task_files() {
        let work = Path::new("/work");
        assert_eq!(
            staged_path(work, &file("inputs/a.csv")).unwrap(),
            Path::new("/work/inputs/a.csv")
        );
        for bad in [
            "/etc/passwd",
            "../x",
            "inputs/../../x",
            "",
            ".mecapy/staged-in",
            "out/x",
            "a//b",
        ] {
            let e = staged_path(work, &file(bad)).unwrap_err();
            assert_eq!(e.refusal, Refusal::Document, "{bad}");
        }
    }

    #[test]
    fn outputs_are_regular_files_in_name_order_never_links() {
        let dir = std::env::temp_dir().join(format!("mecapy-out-{}", Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("b.txt"), "b").unwrap();
        std::fs::write(dir.join("a.json"), "{}").unwrap();
        std::fs::write(dir.join("sub/c.txt"), "cc").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("secret")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("linked-dir")).unwrap();
        let found: Vec<_> = output_files(&dir)
            .unwrap()
            .into_iter()
            .map(|(name, _, size)| (name, size))
            .collect();
        assert_eq!(
            found,
            [
                ("a.json".to_string(), 2),
                ("b.txt".to_string(), 1),
                ("sub/c.txt".to_string(), 2)
            ]
        );
        let (data, truncated) = read_capped(&dir.join("sub/c.txt"), 1).unwrap();
        assert_eq!((data, truncated), (b"c".to_vec(), true));
        assert_eq!(
            read_capped(&dir.join("secret"), 100).unwrap(),
            (vec![], false),
            "a link reads as nothing"
        );
        assert_eq!(
            read_capped(&dir.join("missing"), 100).unwrap(),
            (vec![], false)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_outputs_directory_replaced_by_a_link_gives_nothing() {
        let dir = std::env::temp_dir().join(format!("mecapy-work-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("out")).unwrap();
        assert!(output_files(&dir.join("out")).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
