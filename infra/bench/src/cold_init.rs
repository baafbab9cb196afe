//! `mecapy-bench cold-init DIR [BEFORE_DIR]`: each function's release binary in `DIR` (and in
//! `BEFORE_DIR`, an older build, measured in the same run): its deployment zip, and its cold
//! init, from exec to its first `GET /runtime/invocation/next` on a local runtime API. Needs no
//! stack: the functions build their clients without contacting any service at start-up.

use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fmt;
use crate::stack::zip_size;

/// Every function of the stack, by its binary's name.
pub const FUNCTIONS: &[&str] = &[
    "login",
    "callback",
    "upload",
    "compute-submit",
    "compute-dispatch",
    "upload-events",
    "rules",
    "upload-rules",
    "webhooks",
    "api-docs",
];

/// Starts of each binary; the two builds' starts alternate so both see the same machine.
const RUNS: usize = 15;
/// A start that takes this long has failed.
const START_LIMIT: Duration = Duration::from_secs(10);

/// One start of `binary`: the time from exec to its first request to the runtime API.
fn start_once(
    name: &str,
    binary: &Path,
    env: &HashMap<String, String>,
) -> Result<Duration, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let api = listener.local_addr().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let outcome = loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let elapsed = started.elapsed();
                let mut head = [0u8; 64];
                let n = stream.read(&mut head).unwrap_or(0);
                let line = String::from_utf8_lossy(&head[..n]);
                break if line.contains("/runtime/invocation/next") {
                    Ok(elapsed)
                } else {
                    Err(format!("first request was not /next: {line:?}"))
                };
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut stderr = String::new();
                    if let Some(mut err) = child.stderr.take() {
                        let _ = err.read_to_string(&mut stderr);
                    }
                    break Err(format!("exited ({status}) before /next: {}", stderr.trim()));
                }
                if started.elapsed() > START_LIMIT {
                    break Err(format!("no /next within {START_LIMIT:?}"));
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(e) => break Err(e.to_string()),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The row of one build of a function: zip size and median cold init, or why not.
fn figures(name: &str, binary: &Path, starts: &[Duration]) -> String {
    let zips = std::env::temp_dir().join("mecapy-bench-zips");
    let _ = std::fs::create_dir_all(&zips);
    let tag = binary
        .parent()
        .map(|p| p.to_string_lossy().replace('/', "_"))
        .unwrap_or_default();
    let zip = zip_size(binary, &zips.join(format!("{name}{tag}.zip")))
        .map(|b| format!("{:.2} MB", b as f64 / 1e6))
        .unwrap_or_else(|e| format!("zip failed: {e}"));
    if starts.is_empty() {
        return format!("{zip} / no start");
    }
    format!("{zip} / {}", fmt(median(starts.to_vec())))
}

pub fn measure(dirs: &[PathBuf]) {
    let mut env = mecapy_testkit::local_env();
    for var in ["PATH", "HOME"] {
        if let Ok(v) = std::env::var(var) {
            env.insert(var.to_string(), v);
        }
    }
    let columns: Vec<String> = dirs
        .iter()
        .map(|d| format!("{}: zip / cold init (median of {RUNS})", d.display()))
        .collect();
    println!("| function | {} |", columns.join(" | "));
    println!("|---|{}", "---|".repeat(dirs.len()));
    for name in FUNCTIONS {
        let binaries: Vec<PathBuf> = dirs.iter().map(|d| d.join(name)).collect();
        let mut starts: Vec<Vec<Duration>> = vec![Vec::new(); binaries.len()];
        let mut errors: Vec<Option<String>> = vec![None; binaries.len()];
        for _ in 0..RUNS {
            for (i, binary) in binaries.iter().enumerate() {
                if !binary.exists() || errors[i].is_some() {
                    continue;
                }
                match start_once(name, binary, &env) {
                    Ok(d) => starts[i].push(d),
                    Err(e) => errors[i] = Some(e),
                }
            }
        }
        let cells: Vec<String> = binaries
            .iter()
            .enumerate()
            .map(|(i, binary)| match (&errors[i], binary.exists()) {
                (_, false) => format!("missing: {}", binary.display()),
                (Some(e), _) => format!("failed: {e}"),
                (None, true) => figures(name, binary, &starts[i]),
            })
            .collect();
        println!("| `{name}` | {} |", cells.join(" | "));
    }
}
