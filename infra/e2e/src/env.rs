//! Where the deployed stack is: `.run/stack.env` (written by `infra/deploy.sh outputs`) and
//! `infra/local.env` (overridden by the process environment), plus a readiness check that names
//! the service that is missing and the command that fixes it.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Command that starts the local services.
pub const UP: &str = "make up";
/// Command that builds and deploys the stack to LocalStack.
pub const DEPLOY: &str = "make deploy";

/// A service of the local stack is missing or unhealthy: which one, what was seen, how to fix it.
#[derive(Debug, Clone)]
pub struct SetupError {
    pub service: String,
    pub problem: String,
    pub fix: String,
}

impl SetupError {
    fn new(service: &str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        SetupError {
            service: service.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}. Fix: {}", self.service, self.problem, self.fix)
    }
}

impl std::error::Error for SetupError {}

/// The repository root (this crate lives in `infra/e2e`).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.join("../..")
        .canonicalize()
        .unwrap_or_else(|_| here.join("../.."))
}

/// `.run`, or `$MECAPY_RUN_DIR` as the Makefile and the scripts use it.
pub fn run_dir() -> PathBuf {
    std::env::var_os("MECAPY_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".run"))
}

/// `KEY=value` lines; blank lines and `#` comments skipped.
fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The deployed stack and the local configuration.
#[derive(Debug, Clone)]
pub struct StackEnv {
    pub root: PathBuf,
    pub stack_file: PathBuf,
    pub stack_name: String,
    /// `{endpoint}/restapis/{id}/{stage}/_user_request_`: routes are appended to it.
    pub api_url: String,
    pub api_id: String,
    pub bucket: String,
    pub compute_queue_url: String,
    pub compute_dlq_url: String,
    pub events_queue_url: String,
    pub dispatch_function: String,
    /// `infra/local.env`, each value overridden by the process environment.
    pub local: HashMap<String, String>,
}

impl StackEnv {
    /// Reads `.run/stack.env` and `infra/local.env`; no network.
    pub fn load() -> Result<Self, SetupError> {
        let root = repo_root();
        let local_file = root.join("infra/local.env");
        let mut local = parse_env(&std::fs::read_to_string(&local_file).map_err(|e| {
            SetupError::new(
                "the local configuration",
                format!("cannot read {} ({e})", local_file.display()),
                "run from a complete checkout of the repository",
            )
        })?);
        for (k, v) in local.iter_mut() {
            if let Ok(value) = std::env::var(k) {
                *v = value;
            }
        }
        let stack_file = run_dir().join("stack.env");
        let text = std::fs::read_to_string(&stack_file).map_err(|e| {
            SetupError::new(
                "the deployed stack",
                format!(
                    "{} is missing ({e}): nothing is deployed",
                    stack_file.display()
                ),
                format!("`{DEPLOY}` (or `infra/deploy.sh all`)"),
            )
        })?;
        let stack = parse_env(&text);
        let get = |key: &str| {
            stack
                .get(key)
                .cloned()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    SetupError::new(
                        "the deployed stack",
                        format!("{} has no {key}", stack_file.display()),
                        format!("`{DEPLOY}` (or `infra/deploy.sh outputs` to rewrite it)"),
                    )
                })
        };
        Ok(StackEnv {
            stack_name: get("STACK_NAME")?,
            api_url: get("API_URL")?.trim_end_matches('/').to_string(),
            api_id: get("API_ID")?,
            bucket: get("STACK_BUCKET")?,
            compute_queue_url: get("COMPUTE_QUEUE_URL")?,
            compute_dlq_url: get("COMPUTE_DLQ_URL")?,
            events_queue_url: get("EVENTS_QUEUE_URL")?,
            dispatch_function: get("DISPATCH_FUNCTION")?,
            root,
            stack_file,
            local,
        })
    }

    /// [`StackEnv::load`] then [`StackEnv::check`].
    pub async fn ready() -> Result<Self, SetupError> {
        let env = Self::load()?;
        env.check().await?;
        Ok(env)
    }

    /// A value of `infra/local.env` (or the process environment); panics naming a missing one.
    pub fn var(&self, key: &str) -> &str {
        self.local
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{key} is not set in infra/local.env"))
    }

    /// LocalStack's endpoint on the host (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> &str {
        self.var("AWS_ENDPOINT_URL").trim_end_matches('/')
    }

    /// The full URL of an API route (`/files`, `/compute/{id}`, ...).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api_url)
    }

    /// Where to look when something failed inside the stack.
    pub fn where_to_look(&self) -> String {
        let logs = run_dir().join("logs");
        format!(
            "LocalStack: {}/localstack.log; the functions: `docker ps -a --filter name=localstack-lambda` then `docker logs <container>`; \
             the deployment: {}/sam-deploy.log; the identity provider: {}/oidc.log",
            logs.display(),
            logs.display(),
            logs.display()
        )
    }

    /// The services the journey needs answer, and the API of the deployed stack is there.
    pub async fn check(&self) -> Result<(), SetupError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let health = format!("{}/_localstack/health", self.endpoint());
        answers(
            &http,
            &health,
            "LocalStack",
            format!("`{UP}` (log: .run/logs/localstack.log)"),
            format!("`{UP}`, then `{DEPLOY}`"),
        )
        .await?;
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            self.var("OIDC_ISSUER")
        );
        answers(
            &http,
            &discovery,
            "the OIDC provider",
            format!("`{UP}` (log: .run/logs/oidc.log)"),
            format!("`{UP}`"),
        )
        .await?;
        // The cheapest real request: login answers without a token or the database.
        let login = self.url("/auth/login");
        let answer = http
            .post(&login)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                let body = crate::api::clip(&body, 400);
                if status == reqwest::StatusCode::NOT_FOUND {
                    Err(SetupError::new(
                        "the deployed API",
                        format!(
                            "POST {login} answered 404 ({body}): REST API {} of stack {} is not in LocalStack (was LocalStack restarted?)",
                            self.api_id, self.stack_name
                        ),
                        format!("`{DEPLOY}`"),
                    ))
                } else {
                    Err(SetupError::new(
                        "the login function of the deployed stack",
                        format!("POST {login} answered {status}: {body}"),
                        format!("look at {}; redeploy with `{DEPLOY}`", self.where_to_look()),
                    ))
                }
            }
            Err(e) => Err(SetupError::new(
                "the deployed API",
                format!("POST {login} failed ({e})"),
                format!("`{UP}` then `{DEPLOY}`"),
            )),
        }
    }
}

/// GET `url` answers a success; else the setup error of `service`, with the fix for an error
/// status (`fix_status`) or for no answer at all (`fix_unreachable`).
async fn answers(
    http: &reqwest::Client,
    url: &str,
    service: &str,
    fix_status: String,
    fix_unreachable: String,
) -> Result<(), SetupError> {
    match http.get(url).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(SetupError::new(
            service,
            format!("{url} answered {}", r.status()),
            fix_status,
        )),
        Err(e) => Err(SetupError::new(
            service,
            format!("not reachable at {url} ({e})"),
            fix_unreachable,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines_are_parsed_like_the_scripts_write_them() {
        let vars = parse_env("# comment\nA=1\n\nB = x=y \nnot a pair\n");
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "x=y");
        assert_eq!(vars.len(), 2);
    }
}
