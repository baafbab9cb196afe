//! The demo journey through the deployed stack, step by step: log in through the identity
//! provider, upload a CSV of measurements, submit a numpy fit that reads it, poll the job until
//! it is final, fetch its stdout and its plot (`plot.png`, the points and the fitted line, drawn
//! with matplotlib) through their presigned links.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::{Api, Failure};
use crate::auth;
use crate::env::StackEnv;

/// Statuses of a job that will not change any more.
pub fn is_final(status: &str) -> bool {
    !matches!(status, "queued" | "running")
}

/// One step of the journey.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: &'static str,
    pub duration: Duration,
    /// What it achieved (one line), or why it failed.
    pub outcome: Result<String, Failure>,
}

/// What the journey produced (every step succeeded).
#[derive(Debug, Clone)]
pub struct DemoResult {
    pub user: Value,
    pub access_token: String,
    pub file_id: String,
    pub filename: String,
    pub job_id: String,
    /// `GET /compute/{id}` once final.
    pub job: Value,
    /// The statuses seen while polling, consecutive duplicates removed.
    pub statuses: Vec<String>,
    pub stdout: String,
    /// `plot.png` as fetched through its presigned link (a PNG).
    pub plot: Vec<u8>,
}

/// The steps run (the last one failed if the journey did), and the result if all succeeded.
#[derive(Debug, Clone)]
pub struct Journey {
    pub steps: Vec<Step>,
    pub result: Option<DemoResult>,
}

impl Journey {
    pub fn succeeded(&self) -> bool {
        self.result.is_some()
    }

    /// The step that failed, if one did.
    pub fn failed_step(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.outcome.is_err())
    }

    pub fn total(&self) -> Duration {
        self.steps.iter().map(|s| s.duration).sum()
    }
}

/// Who logs in and how long to wait for the job.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub username: String,
    pub password: String,
    pub job_deadline: Duration,
    pub poll_interval: Duration,
}

impl DemoOptions {
    /// `wait_final` with these options' deadline and poll interval.
    async fn wait_final(
        &self,
        api: &Api,
        token: &str,
        id: &str,
    ) -> Result<(Value, Vec<String>), Failure> {
        wait_final(api, token, id, self.job_deadline, self.poll_interval).await
    }
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            username: "alice".into(),
            password: "alice-password".into(),
            job_deadline: Duration::from_secs(120),
            poll_interval: Duration::from_millis(200),
        }
    }
}

/// Step names, in order.
pub const STEPS: [&str; 6] = [
    "log in through the OIDC provider",
    "upload the measurements (multipart POST /files)",
    "submit the numpy fit (POST /compute)",
    "wait for the job (GET /compute/{id})",
    "fetch stdout and plot.png (presigned links)",
    "upload a CSV matching alice's rule: its job starts by itself",
];

/// Alice's upload rule in the demo: its uploads named so run [`RULE_CODE`] by themselves.
pub const RULE_GLOB: &str = "auto-*.csv";
pub const RULE_CODE: &str = "import csv\nprint('started by the upload rule')\n";

/// The output the demo job draws: the measured points and the fitted line.
pub const DEMO_PLOT: &str = "plot.png";

/// The first bytes of every PNG file.
pub const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// Slope and intercept of the measurements [`demo_csv`] writes: the fit must find them.
pub const DEMO_SLOPE: f64 = 2.5;
pub const DEMO_INTERCEPT: f64 = 1.0;

/// A tensile test: force [kN] against elongation [µm] on a linear-elastic bar, exact points.
pub fn demo_csv() -> Vec<u8> {
    let mut csv = String::from("force_kn,elongation_um\n");
    for i in 0..10 {
        let x = f64::from(i) * 2.0;
        csv.push_str(&format!("{x},{}\n", DEMO_SLOPE * x + DEMO_INTERCEPT));
    }
    csv.into_bytes()
}

/// The computation: a least-squares line through the uploaded file, found where the sandbox
/// puts inputs (`/work/inputs/<filename>`; `/work` is the job's working directory), and a plot
/// of the points and the line, `out/plot.png` ([`DEMO_PLOT`]).
pub fn demo_code(filename: &str) -> String {
    format!(
        r#"import json
import numpy as np
import matplotlib.pyplot as plt

data = np.loadtxt("inputs/{filename}", delimiter=",", skiprows=1)
slope, intercept = np.polyfit(data[:, 0], data[:, 1], 1)
with open("out/fit.json", "w") as f:
    json.dump({{"slope": float(slope), "intercept": float(intercept)}}, f)
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(data[:, 0], data[:, 1], "o", label="measured")
ax.plot(data[:, 0], slope * data[:, 0] + intercept, "-",
        label=f"fit: {{slope:.2f}} x + {{intercept:.2f}}")
ax.set_xlabel("force [kN]")
ax.set_ylabel("elongation [µm]")
ax.set_title("{filename}")
ax.legend()
fig.savefig("out/{DEMO_PLOT}", dpi=100)
print(f"points={{len(data)}} slope={{slope:.4f}} intercept={{intercept:.4f}}")
"#
    )
}

/// The line [`demo_code`] prints for [`demo_csv`].
pub fn demo_expected_stdout() -> String {
    format!("points=10 slope={DEMO_SLOPE:.4} intercept={DEMO_INTERCEPT:.4}")
}

async fn step<T>(
    steps: &mut Vec<Step>,
    name: &'static str,
    work: impl Future<Output = Result<(T, String), Failure>>,
) -> Option<T> {
    let started = Instant::now();
    let outcome = work.await;
    let duration = started.elapsed();
    match outcome {
        Ok((value, summary)) => {
            steps.push(Step {
                name,
                duration,
                outcome: Ok(summary),
            });
            Some(value)
        }
        Err(failure) => {
            steps.push(Step {
                name,
                duration,
                outcome: Err(failure),
            });
            None
        }
    }
}

/// The id of alice's enabled rule for [`RULE_GLOB`], created the first time.
async fn alices_rule(api: &Api, token: &str) -> Result<String, Failure> {
    let rules = api.get("/rules", Some(token)).await?.expect(200)?;
    let existing = rules["items"].as_array().and_then(|items| {
        items
            .iter()
            .find(|r| {
                r["filename_glob"] == RULE_GLOB && r["enabled"] == true && r["code"] == RULE_CODE
            })
            .and_then(|r| r["id"].as_str().map(str::to_string))
    });
    if let Some(id) = existing {
        return Ok(id);
    }
    let body = json!({"filename_glob": RULE_GLOB, "content_type": "text/csv", "tool": "python", "code": RULE_CODE});
    let reply = api.post_json("/rules", Some(token), &body).await?;
    let rule = reply.expect(201)?;
    rule["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| reply.failure("no id"))
}

/// `POST /compute`; the job id.
pub async fn submit(api: &Api, token: &str, body: &Value) -> Result<String, Failure> {
    let reply = api.post_json("/compute", Some(token), body).await?;
    let job = reply.expect(202)?;
    if job["status"] != "queued" {
        return Err(reply.failure("a new job is not queued"));
    }
    job["job_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| reply.failure("no job_id"))
}

/// Polls `GET /compute/{id}` until the job is final or `deadline` passes; the final job and
/// the statuses seen (consecutive duplicates removed).
pub async fn wait_final(
    api: &Api,
    token: &str,
    id: &str,
    deadline: Duration,
    every: Duration,
) -> Result<(Value, Vec<String>), Failure> {
    let started = Instant::now();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let reply = api.get(&format!("/compute/{id}"), Some(token)).await?;
        let job = reply.expect(200)?;
        let status = job["status"].as_str().unwrap_or("").to_string();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if is_final(&status) {
            return Ok((job, seen));
        }
        if started.elapsed() > deadline {
            return Err(Failure {
                message: format!(
                    "job {id} still {status} after {} s (statuses seen: {}); the compute queue feeds compute-dispatch inside LocalStack",
                    deadline.as_secs(),
                    seen.join(" → ")
                ),
                status: Some(200),
                body: Some(job.to_string()),
            });
        }
        tokio::time::sleep(every).await;
    }
}

/// Runs the demo journey; never panics: a failed step ends it and is the last in the list.
pub async fn demo_journey(env: &StackEnv, options: &DemoOptions) -> Journey {
    let api = Api::new(&env.api_url);
    let mut steps = Vec::new();
    let result = run(&api, options, &mut steps).await;
    Journey { steps, result }
}

async fn run(api: &Api, options: &DemoOptions, steps: &mut Vec<Step>) -> Option<DemoResult> {
    let session = step(steps, STEPS[0], async {
        let session = auth::login(api, &options.username, &options.password).await?;
        let who = format!(
            "{} ({}), user {}",
            options.username,
            session.user["email"].as_str().unwrap_or("?"),
            session.user["id"].as_str().unwrap_or("?")
        );
        Ok((session, who))
    })
    .await?;
    let token = session.access_token.clone();

    let filename = format!(
        "tensile-{}-{}.csv",
        chrono::Utc::now().format("%Y%m%dT%H%M%S"),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let file_id = step(steps, STEPS[1], async {
        let data = demo_csv();
        let reply = api.upload(&token, &filename, "text/csv", &data).await?;
        let file = reply.expect(201)?;
        let id = file["id"]
            .as_str()
            .ok_or_else(|| reply.failure("no id"))?
            .to_string();
        Ok((
            id.clone(),
            format!("{filename}, {} bytes, file {id}", data.len()),
        ))
    })
    .await?;

    let job_id = step(steps, STEPS[2], async {
        let body = json!({
            "tool": "python",
            "code": demo_code(&filename),
            "input_file_ids": [file_id],
        });
        let id = submit(api, &token, &body).await?;
        Ok((id.clone(), format!("job {id} queued")))
    })
    .await?;

    let (job, statuses) = step(steps, STEPS[3], async {
        let (job, seen) = options.wait_final(api, &token, &job_id).await?;
        if job["status"] != "succeeded" {
            let mut detail = format!(
                "job {job_id} ended {} (exit code {}, error: {})",
                job["status"],
                job["exit_code"],
                job["error"].as_str().unwrap_or("none")
            );
            if let Some(url) = job["links"]["stderr"].as_str() {
                if let Ok(stderr) = api.fetch(url).await {
                    detail.push_str(&format!("; stderr: {}", stderr.trim()));
                }
            }
            return Err(Failure {
                message: detail,
                status: Some(200),
                body: Some(job.to_string()),
            });
        }
        let summary = format!(
            "{} (ran {} ms in {}, attempts {})",
            seen.join(" → "),
            job["duration_ms"],
            job["image_digest"].as_str().unwrap_or("?"),
            job["attempts"]
        );
        Ok(((job, seen), summary))
    })
    .await?;

    let (stdout, plot) = step(steps, STEPS[4], async {
        let url = job["links"]["stdout"].as_str().ok_or_else(|| Failure {
            message: format!("job {job_id} has no stdout link"),
            status: None,
            body: Some(job.to_string()),
        })?;
        let stdout = api.fetch(url).await?;
        let plot_url = job["links"]["outputs"]
            .as_array()
            .and_then(|outputs| outputs.iter().find(|o| o["name"] == DEMO_PLOT))
            .and_then(|o| o["url"].as_str())
            .ok_or_else(|| Failure {
                message: format!("job {job_id} has no output {DEMO_PLOT}"),
                status: None,
                body: Some(job.to_string()),
            })?;
        let plot = api.fetch_bytes(plot_url).await?;
        if !plot.starts_with(PNG_SIGNATURE) {
            return Err(Failure {
                message: format!(
                    "{DEMO_PLOT} of job {job_id} is not a PNG ({} bytes)",
                    plot.len()
                ),
                status: Some(200),
                body: None,
            });
        }
        let summary = format!(
            "{} bytes; {DEMO_PLOT} {} bytes (PNG: the points and the fitted line)",
            stdout.len(),
            plot.len()
        );
        Ok(((stdout, plot), summary))
    })
    .await?;

    step(steps, STEPS[5], async {
        let rule = alices_rule(api, &token).await?;
        let name = format!("auto-{}", &filename["tensile-".len()..]);
        let uploaded_at = Instant::now();
        let reply = api.upload(&token, &name, "text/csv", &demo_csv()).await?;
        let file = reply.expect(201)?;
        let file_id = file["id"].as_str().unwrap_or_default().to_string();
        let deadline = uploaded_at + options.job_deadline;
        let job_id = loop {
            let page = api.get("/compute?limit=20", Some(&token)).await?.expect(200)?;
            let found = page["items"].as_array().and_then(|jobs| {
                jobs.iter()
                    .find(|j| j["upload_file_id"] == file_id.as_str())
                    .and_then(|j| j["id"].as_str().map(str::to_string))
            });
            if let Some(id) = found {
                break id;
            }
            if Instant::now() > deadline {
                return Err(Failure::new(format!(
                    "no job started by rule {rule} for {name} (file {file_id}) within {:?}",
                    options.job_deadline
                )));
            }
            tokio::time::sleep(options.poll_interval).await;
        };
        let accepted = uploaded_at.elapsed();
        let (job, _) = options.wait_final(api, &token, &job_id).await?;
        if job["status"] != "succeeded" || job["rule_id"] != rule.as_str() {
            return Err(Failure {
                message: format!("the rule's job {job_id} ended {}", job["status"]),
                status: Some(200),
                body: Some(job.to_string()),
            });
        }
        let started = chrono::DateTime::parse_from_rfc3339(job["started_at"].as_str().unwrap_or(""))
            .ok()
            .zip(chrono::DateTime::parse_from_rfc3339(job["created_at"].as_str().unwrap_or("")).ok())
            .map(|(s, c)| (s - c).num_milliseconds());
        Ok((
            (),
            format!(
                "{name} → job {job_id} (rule {rule}) seen {} ms after the upload, started {} ms after it was queued, succeeded",
                accepted.as_millis(),
                started.map_or("?".into(), |ms| ms.to_string())
            ),
        ))
    })
    .await?;

    Some(DemoResult {
        user: session.user,
        access_token: token,
        file_id,
        filename,
        job_id,
        job,
        statuses,
        stdout,
        plot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_data_lies_on_the_expected_line() {
        let text = String::from_utf8(demo_csv()).unwrap();
        let rows: Vec<(f64, f64)> = text
            .lines()
            .skip(1)
            .map(|l| {
                let (x, y) = l.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert_eq!(rows.len(), 10);
        for (x, y) in rows {
            assert_eq!(y, DEMO_SLOPE * x + DEMO_INTERCEPT);
        }
        assert_eq!(
            demo_expected_stdout(),
            "points=10 slope=2.5000 intercept=1.0000"
        );
    }

    #[test]
    fn the_demo_code_passes_the_static_validation() {
        let code = demo_code("x.csv");
        // The python tool's list (migrations/0007_matplotlib.sql): the default one and matplotlib.
        let mut policy = mecapy_shared::validation::Policy::default_python();
        policy.allowed_imports.push("matplotlib".to_string());
        let findings = mecapy_shared::validation::validate(&code, &policy);
        assert!(findings.is_empty(), "{findings:?}");
        assert!(code.contains("\"inputs/x.csv\""));
        assert!(code.contains("fig.savefig(\"out/plot.png\""));
    }
}
