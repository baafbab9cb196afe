//! What the init reads from its environment (set by LocalStack on the container) and the
//! environment it gives the function's bootstrap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::http::Endpoint;

/// Where the Runtime API listens for the bootstrap (`AWS_LAMBDA_RUNTIME_API`).
pub const RUNTIME_API_ADDR: &str = "127.0.0.1:9001";
/// Default port of LocalStack's `POST /invoke` (`INVOCATION_PORT` in executor_endpoint.py).
pub const DEFAULT_INTEROP_PORT: u16 = 9563;
/// AWS's sandbox user, and the uid/gid LocalStack's own init gives it.
pub const DEFAULT_USER: &str = "sbx_user1051";
pub const DEFAULT_UID: u32 = 993;
pub const DEFAULT_GID: u32 = 990;
/// Where AWS looks for a custom runtime's bootstrap, in order.
pub const BOOTSTRAP_CANDIDATES: [&str; 3] = [
    "/var/runtime/bootstrap",
    "/var/task/bootstrap",
    "/opt/bootstrap",
];
/// Default response size limit (LocalStack's LAMBDA_LIMITS_MAX_FUNCTION_PAYLOAD_SIZE_BYTES).
pub const DEFAULT_MAX_PAYLOAD: usize = 6 * 1024 * 1024 + 100;

/// LocalStack-internal variables the function must not see (as LocalStack's own init does), plus
/// the container's HOSTNAME and HOME.
const UNSET_FOR_FUNCTION: [&str; 17] = [
    "LOCALSTACK_RUNTIME_ENDPOINT",
    "LOCALSTACK_RUNTIME_ID",
    "LOCALSTACK_INTEROP_PORT",
    "LOCALSTACK_RUNTIME_TRACING_PORT",
    "LOCALSTACK_USER",
    "LOCALSTACK_CODE_ARCHIVES",
    "LOCALSTACK_HOT_RELOADING_PATHS",
    "LOCALSTACK_ENABLE_XRAY_TELEMETRY",
    "LOCALSTACK_INIT_LOG_LEVEL",
    "LOCALSTACK_POST_INVOKE_WAIT_MS",
    "LOCALSTACK_FUNCTION_ACCOUNT_ID",
    "LOCALSTACK_MAX_PAYLOAD_SIZE",
    "LOCALSTACK_CHMOD_PATHS",
    "LOCALSTACK_INIT_PHASE_TIMEOUT",
    "LOCALSTACK_FILE_WATCHER_STRATEGY",
    "HOSTNAME",
    "HOME",
];

#[derive(Debug, Clone)]
pub struct Config {
    pub runtime_id: String,
    pub endpoint: Endpoint,
    pub interop_port: u16,
    pub timeout: Duration,
    pub timeout_secs: u64,
    pub function_version: String,
    pub memory_mb: String,
    pub user: String,
    pub verbose: bool,
    pub post_invoke_wait: Duration,
    pub max_payload: usize,
    /// `LOCALSTACK_CHMOD_PATHS`: (path, mode).
    pub chmod_paths: Vec<(PathBuf, u32)>,
    /// The environment for the bootstrap.
    pub function_env: BTreeMap<String, String>,
}

impl Config {
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Config, String> {
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        let need = |k: &str| get(k).ok_or_else(|| format!("{k} is not set"));
        let runtime_id = need("LOCALSTACK_RUNTIME_ID")?;
        let endpoint = Endpoint::parse(&need("LOCALSTACK_RUNTIME_ENDPOINT")?)?;
        let interop_port = match get("LOCALSTACK_INTEROP_PORT") {
            Some(p) => p
                .parse()
                .map_err(|_| format!("LOCALSTACK_INTEROP_PORT={p:?} is not a port"))?,
            None => DEFAULT_INTEROP_PORT,
        };
        let timeout_secs: u64 = match get("AWS_LAMBDA_FUNCTION_TIMEOUT") {
            Some(t) => t.parse().ok().filter(|t| *t > 0).ok_or_else(|| {
                format!("AWS_LAMBDA_FUNCTION_TIMEOUT={t:?} is not a positive integer")
            })?,
            None => 3,
        };
        let level = get("LOCALSTACK_INIT_LOG_LEVEL")
            .unwrap_or_else(|| "warn".into())
            .to_ascii_lowercase();
        let post_invoke_wait = Duration::from_millis(
            get("LOCALSTACK_POST_INVOKE_WAIT_MS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        );
        let max_payload = get("LOCALSTACK_MAX_PAYLOAD_SIZE")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_PAYLOAD);
        let chmod_paths = match get("LOCALSTACK_CHMOD_PATHS") {
            Some(json) => parse_chmod_paths(&json)?,
            None => Vec::new(),
        };
        Ok(Config {
            runtime_id,
            endpoint,
            interop_port,
            timeout: Duration::from_secs(timeout_secs),
            timeout_secs,
            function_version: get("AWS_LAMBDA_FUNCTION_VERSION")
                .unwrap_or_else(|| "$LATEST".into()),
            memory_mb: get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").unwrap_or_else(|| "128".into()),
            user: get("LOCALSTACK_USER").unwrap_or_else(|| DEFAULT_USER.into()),
            verbose: matches!(level.as_str(), "trace" | "debug" | "info"),
            post_invoke_wait,
            max_payload,
            chmod_paths,
            function_env: function_env(env),
        })
    }
}

/// The bootstrap's environment: the container's, minus LocalStack's internals, plus the
/// Runtime API address and a PATH if the image has none.
pub fn function_env(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = env
        .iter()
        .filter(|(k, _)| !UNSET_FOR_FUNCTION.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.insert("AWS_LAMBDA_RUNTIME_API".into(), RUNTIME_API_ADDR.into());
    out.entry("PATH".into())
        .or_insert_with(|| "/usr/local/bin:/usr/bin:/bin:/opt/bin".into());
    out.entry("LAMBDA_TASK_ROOT".into())
        .or_insert_with(|| "/var/task".into());
    out.entry("LAMBDA_RUNTIME_DIR".into())
        .or_insert_with(|| "/var/runtime".into());
    out
}

/// `[{"path": "/tmp", "mode": "0700"}, ...]` (LocalStack's ChmodPath list).
pub fn parse_chmod_paths(json: &str) -> Result<Vec<(PathBuf, u32)>, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("LOCALSTACK_CHMOD_PATHS: {e}"))?;
    let items = v.as_array().ok_or("LOCALSTACK_CHMOD_PATHS is not a list")?;
    items
        .iter()
        .map(|item| {
            let path = item
                .get("path")
                .and_then(|p| p.as_str())
                .ok_or("LOCALSTACK_CHMOD_PATHS: entry without path")?;
            let mode = item
                .get("mode")
                .and_then(|m| m.as_str())
                .ok_or("LOCALSTACK_CHMOD_PATHS: entry without mode")?;
            let mode = u32::from_str_radix(mode, 8)
                .map_err(|_| format!("LOCALSTACK_CHMOD_PATHS: bad mode {mode:?}"))?;
            Ok((PathBuf::from(path), mode))
        })
        .collect()
}

/// The first existing bootstrap candidate.
pub fn find_bootstrap() -> Option<PathBuf> {
    BOOTSTRAP_CANDIDATES
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_localstack_environment() {
        let e = env(&[
            ("LOCALSTACK_RUNTIME_ID", "abc"),
            (
                "LOCALSTACK_RUNTIME_ENDPOINT",
                "http://172.17.0.1:4566/_localstack_lambda/abc",
            ),
            ("AWS_LAMBDA_FUNCTION_TIMEOUT", "7"),
            (
                "LOCALSTACK_CHMOD_PATHS",
                r#"[{"path": "/tmp", "mode": "0700"}]"#,
            ),
            ("LOCALSTACK_USER", "root"),
            ("HOSTNAME", "c0ffee"),
            ("MY_VAR", "x"),
        ]);
        let c = Config::from_env(&e).unwrap();
        assert_eq!(c.runtime_id, "abc");
        assert_eq!(c.endpoint.authority, "172.17.0.1:4566");
        assert_eq!(c.interop_port, 9563);
        assert_eq!(c.timeout_secs, 7);
        assert_eq!(c.user, "root");
        assert_eq!(c.chmod_paths, vec![(PathBuf::from("/tmp"), 0o700)]);
        assert_eq!(
            c.function_env.get("AWS_LAMBDA_RUNTIME_API").unwrap(),
            "127.0.0.1:9001"
        );
        assert_eq!(c.function_env.get("MY_VAR").unwrap(), "x");
        assert!(!c.function_env.contains_key("LOCALSTACK_RUNTIME_ID"));
        assert!(!c.function_env.contains_key("HOSTNAME"));
    }

    #[test]
    fn defaults_and_errors() {
        let e = env(&[
            ("LOCALSTACK_RUNTIME_ID", "a"),
            ("LOCALSTACK_RUNTIME_ENDPOINT", "http://h:1/p"),
        ]);
        let c = Config::from_env(&e).unwrap();
        assert_eq!(
            (c.timeout_secs, c.user.as_str(), c.memory_mb.as_str()),
            (3, "sbx_user1051", "128")
        );
        assert!(Config::from_env(&env(&[("LOCALSTACK_RUNTIME_ID", "a")])).is_err());
        let mut bad = e.clone();
        bad.insert("AWS_LAMBDA_FUNCTION_TIMEOUT".into(), "0".into());
        assert!(Config::from_env(&bad).is_err());
        assert!(parse_chmod_paths(r#"[{"path": "/tmp", "mode": "9"}]"#).is_err());
    }
}
