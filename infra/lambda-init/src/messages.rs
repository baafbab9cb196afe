//! Pure helpers: the JSON bodies and log lines the init produces, in the shapes LocalStack's own
//! init (and AWS) produce them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// One invocation as LocalStack sends it to `POST /invoke`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeRequest {
    pub id: String,
    pub arn: String,
    pub payload: Vec<u8>,
    pub trace_id: String,
    pub client_context: Option<String>,
    pub cognito_identity: Option<String>,
}

/// Parses `{"invoke-id", "invoked-function-arn", "payload", "trace-id"}` (executor_endpoint.py).
pub fn parse_invoke(body: &[u8]) -> Result<InvokeRequest, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("invoke body is not JSON: {e}"))?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let id = s("invoke-id")
        .filter(|i| !i.is_empty())
        .ok_or("invoke body has no invoke-id")?;
    // Tolerate a JSON value instead of the usual string, and a missing payload (an empty event).
    let payload = match v.get("payload") {
        Some(Value::String(p)) => p.clone().into_bytes(),
        Some(Value::Null) | None => b"{}".to_vec(),
        Some(other) => other.to_string().into_bytes(),
    };
    Ok(InvokeRequest {
        id,
        arn: s("invoked-function-arn").unwrap_or_default(),
        payload,
        trace_id: s("trace-id").unwrap_or_default(),
        client_context: s("client-context").filter(|c| !c.is_empty()),
        cognito_identity: s("cognito-identity").filter(|c| !c.is_empty()),
    })
}

/// Whether an invoked ARN (`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`) names this
/// function; anything unparsable, or an unknown own name, is accepted.
pub fn arn_matches(arn: &str, function_name: Option<&str>) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    match (function_name, parts.get(5), parts.get(6)) {
        (Some(own), Some(&"function"), Some(name)) => name == &own,
        _ => true,
    }
}

/// An error body `{"errorMessage", "errorType"}`.
pub fn error_json(error_type: &str, message: &str) -> Vec<u8> {
    json!({ "errorMessage": message, "errorType": error_type })
        .to_string()
        .into_bytes()
}

/// The body the runtime posted to `.../error` or `/runtime/init/error`: kept when it is a JSON
/// object (the runtime's own `{"errorMessage", "errorType", ...}`), else wrapped in one. The
/// `Lambda-Runtime-Function-Error-Type` header fills a missing `errorType`.
pub fn runtime_error_body(body: &[u8], error_type_header: Option<&str>) -> Vec<u8> {
    let error_type = error_type_header
        .filter(|t| !t.is_empty())
        .unwrap_or("Unhandled");
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut map)) => {
            if !map.contains_key("errorType") {
                map.insert("errorType".into(), Value::String(error_type.into()));
            }
            Value::Object(map).to_string().into_bytes()
        }
        _ => error_json(error_type, String::from_utf8_lossy(body).trim()),
    }
}

/// RFC 3339 UTC timestamp with milliseconds (no external time crate).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The timeout error, as LocalStack's init reports it (`<time> <request id> Task timed out after
/// N.00 seconds`), with AWS's `errorType`.
pub fn timeout_message(now: SystemTime, request_id: &str, timeout_secs: u64) -> String {
    format!(
        "{} {request_id} Task timed out after {timeout_secs}.00 seconds",
        rfc3339(now)
    )
}

/// How the bootstrap ended, in Go's words (`exit status 1`, `signal: killed`), which is how AWS and
/// LocalStack phrase `Runtime exited with error: ...`.
pub fn describe_wait_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        let name = match sig {
            libc::SIGKILL => "killed",
            libc::SIGSEGV => "segmentation fault",
            libc::SIGABRT => "aborted",
            libc::SIGTERM => "terminated",
            libc::SIGBUS => "bus error",
            libc::SIGILL => "illegal instruction",
            libc::SIGFPE => "floating point exception",
            _ => "",
        };
        if name.is_empty() {
            format!("signal: {sig}")
        } else {
            format!("signal: {name}")
        }
    } else {
        format!("wait status {status}")
    }
}

pub fn start_line(request_id: &str, version: &str) -> String {
    format!("START RequestId: {request_id} Version: {version}\n")
}

/// `END` and `REPORT` lines, as AWS prints them.
pub fn end_report_lines(
    request_id: &str,
    duration: Duration,
    memory_mb: &str,
    max_memory_used_mb: Option<u64>,
    init_duration: Option<Duration>,
    timed_out: bool,
) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    let billed = (ms.ceil() as u64).max(1);
    let mut report = format!("REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {billed} ms\tMemory Size: {memory_mb} MB\t");
    if let Some(used) = max_memory_used_mb {
        report.push_str(&format!("Max Memory Used: {used} MB\t"));
    }
    if let Some(init) = init_duration {
        report.push_str(&format!(
            "Init Duration: {:.2} ms\t",
            init.as_secs_f64() * 1000.0
        ));
    }
    if timed_out {
        report.push_str("Status: timeout\t");
    }
    format!("END RequestId: {request_id}\n{report}\n")
}

/// Peak memory of the container's cgroup (v1 or v2), in MB rounded up.
pub fn max_memory_used_mb() -> Option<u64> {
    [
        "/sys/fs/cgroup/memory/memory.max_usage_in_bytes",
        "/sys/fs/cgroup/memory.peak",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok())
    .map(|bytes| bytes.div_ceil(1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_localstack_invoke() {
        let body = br#"{"invoke-id": "r1", "invoked-function-arn": "arn:aws:lambda:us-east-1:000000000000:function:f", "payload": "{\"a\": 1}", "trace-id": "Root=1-2-3;Parent=4;Sampled=1"}"#;
        let inv = parse_invoke(body).unwrap();
        assert_eq!(inv.id, "r1");
        assert_eq!(inv.payload, br#"{"a": 1}"#);
        assert_eq!(inv.trace_id, "Root=1-2-3;Parent=4;Sampled=1");
        assert_eq!(inv.client_context, None);
        assert!(parse_invoke(b"{}").is_err());
        assert!(parse_invoke(b"nope").is_err());
        assert_eq!(
            parse_invoke(br#"{"invoke-id": "x", "payload": {"k": 2}}"#)
                .unwrap()
                .payload,
            br#"{"k":2}"#
        );
    }

    #[test]
    fn arns() {
        let arn = "arn:aws:lambda:us-east-1:000000000000:function:login";
        assert!(arn_matches(arn, Some("login")));
        assert!(arn_matches(&format!("{arn}:$LATEST"), Some("login")));
        assert!(!arn_matches(arn, Some("upload")));
        assert!(arn_matches(arn, None));
        assert!(arn_matches("", Some("login")));
    }

    #[test]
    fn runtime_errors_keep_or_wrap_the_body() {
        let kept = runtime_error_body(
            br#"{"errorType": "MyError", "errorMessage": "boom"}"#,
            Some("Other"),
        );
        let v: Value = serde_json::from_slice(&kept).unwrap();
        assert_eq!(
            (v["errorType"].as_str(), v["errorMessage"].as_str()),
            (Some("MyError"), Some("boom"))
        );
        let typed: Value =
            serde_json::from_slice(&runtime_error_body(br#"{"errorMessage": "m"}"#, Some("T")))
                .unwrap();
        assert_eq!(typed["errorType"], "T");
        let wrapped: Value =
            serde_json::from_slice(&runtime_error_body(b"plain text\n", None)).unwrap();
        assert_eq!(
            (
                wrapped["errorType"].as_str(),
                wrapped["errorMessage"].as_str()
            ),
            (Some("Unhandled"), Some("plain text"))
        );
    }

    #[test]
    fn timestamps_and_timeout_message() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_123); // 2024-02-29 12:34:56.123 UTC
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.123Z");
        assert_eq!(
            timeout_message(t, "r1", 3),
            "2024-02-29T12:34:56.123Z r1 Task timed out after 3.00 seconds"
        );
    }

    #[test]
    fn wait_statuses() {
        assert_eq!(describe_wait_status(1 << 8), "exit status 1");
        assert_eq!(describe_wait_status(0), "exit status 0");
        assert_eq!(describe_wait_status(libc::SIGKILL), "signal: killed");
        assert_eq!(
            describe_wait_status(libc::SIGUSR1),
            format!("signal: {}", libc::SIGUSR1)
        );
    }

    #[test]
    fn report_lines() {
        let s = end_report_lines(
            "r1",
            Duration::from_micros(2_130),
            "128",
            Some(12),
            Some(Duration::from_millis(5)),
            false,
        );
        assert_eq!(
            s,
            "END RequestId: r1\nREPORT RequestId: r1\tDuration: 2.13 ms\tBilled Duration: 3 ms\tMemory Size: 128 MB\tMax Memory Used: 12 MB\tInit Duration: 5.00 ms\t\n"
        );
        assert!(
            end_report_lines("r1", Duration::ZERO, "128", None, None, true)
                .ends_with("Billed Duration: 1 ms\tMemory Size: 128 MB\tStatus: timeout\t\n")
        );
    }
}
