//! Checks a [`JobSpec`] before anything is created in the engine, so that a bad job is refused
//! as [`SandboxError::InvalidJob`] (permanent) instead of failing half-way.

use std::collections::BTreeSet;

use super::{JobSpec, Limits, SandboxError};

const MIB: u64 = 1024 * 1024;
const MAX_PATH_BYTES: usize = 1024;
const MAX_COMPONENT_BYTES: usize = 255;
const MIN_MEMORY_MB: i64 = 32;
const MIN_PIDS: i64 = 16;

fn invalid(message: impl Into<String>) -> SandboxError {
    SandboxError::InvalidJob(message.into())
}

/// Validates the whole spec: image, command, files, environment, labels and limits.
pub(crate) fn check(spec: &JobSpec) -> Result<(), SandboxError> {
    if spec.image.trim().is_empty() {
        return Err(invalid("the image is empty"));
    }
    if spec.command.is_empty() || spec.command[0].is_empty() {
        return Err(invalid("the command is empty"));
    }
    if spec.command.iter().any(|arg| arg.contains('\0')) {
        return Err(invalid("the command contains a NUL byte"));
    }
    check_limits(&spec.limits)?;
    check_files(&spec.files, &spec.limits)?;
    for (key, value) in &spec.env {
        if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
            return Err(invalid(format!(
                "invalid environment variable name {key:?}"
            )));
        }
    }
    if spec.labels.iter().any(|(key, _)| key.is_empty()) {
        return Err(invalid("a label has an empty key"));
    }
    Ok(())
}

fn check_limits(limits: &Limits) -> Result<(), SandboxError> {
    // The engine's start-up (runc init, a Go program) runs inside the container's limits:
    // below these it fails at random, under load, before the job even starts.
    if limits.memory_mb < MIN_MEMORY_MB {
        return Err(invalid(format!(
            "memory_mb must be at least {MIN_MEMORY_MB}"
        )));
    }
    if !limits.cpus.is_finite() || limits.cpus < 0.01 {
        return Err(invalid("cpus must be at least 0.01"));
    }
    if limits.timeout.is_zero() {
        return Err(invalid("the timeout must be positive"));
    }
    if limits.pids_limit < MIN_PIDS {
        return Err(invalid(format!("pids_limit must be at least {MIN_PIDS}")));
    }
    if limits.tmp_mb < 1 || limits.work_mb < 1 {
        return Err(invalid("tmp_mb and work_mb must be positive"));
    }
    Ok(())
}

/// A safe relative path: no absolute path, no `.` or `..`, no empty component, no NUL.
pub(crate) fn relative_path(path: &str) -> Result<(), SandboxError> {
    if path.is_empty() || path.len() > MAX_PATH_BYTES {
        return Err(invalid(format!("file path {path:?} is empty or too long")));
    }
    if path.starts_with('/') {
        return Err(invalid(format!("file path {path:?} is absolute")));
    }
    if path.contains('\0') {
        return Err(invalid(format!("file path {path:?} contains a NUL byte")));
    }
    for component in path.split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return Err(invalid(format!(
                "file path {path:?} must be relative and must not contain `.`, `..` or `//`"
            )));
        }
        if component.len() > MAX_COMPONENT_BYTES {
            return Err(invalid(format!(
                "file path {path:?} has a component too long"
            )));
        }
    }
    Ok(())
}

/// The directories the input archive must create: every file's parents, and `out`.
pub(crate) fn parent_dirs(files: &[(String, bytes::Bytes)]) -> BTreeSet<String> {
    let mut dirs = BTreeSet::from(["out".to_string()]);
    for (path, _) in files {
        let mut end = 0;
        while let Some(pos) = path[end..].find('/') {
            end += pos;
            dirs.insert(path[..end].to_string());
            end += 1;
        }
    }
    dirs
}

fn check_files(files: &[(String, bytes::Bytes)], limits: &Limits) -> Result<(), SandboxError> {
    let mut seen = BTreeSet::new();
    let mut total: u64 = 0;
    for (path, data) in files {
        relative_path(path)?;
        if !seen.insert(path.as_str()) {
            return Err(invalid(format!("file path {path:?} appears twice")));
        }
        total = total.saturating_add(data.len() as u64);
    }
    let dirs = parent_dirs(files);
    if let Some(clash) = seen.iter().find(|path| dirs.contains(**path)) {
        return Err(invalid(format!("file path {clash:?} is also a directory")));
    }
    // `work_mb` is positive here (checked with the limits).
    let capacity = u64::try_from(limits.work_mb)
        .unwrap_or(0)
        .saturating_mul(MIB);
    if total >= capacity {
        return Err(invalid(format!(
            "the input files ({total} bytes) do not fit in /work ({} MiB)",
            limits.work_mb
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn spec(files: &[&str]) -> JobSpec {
        JobSpec {
            image: "img".into(),
            command: vec!["python3".into(), "/work/main.py".into()],
            files: files
                .iter()
                .map(|p| (p.to_string(), Bytes::from_static(b"x")))
                .collect(),
            env: vec![],
            limits: Limits::default(),
            labels: vec![],
        }
    }

    #[test]
    fn relative_paths_are_accepted() {
        check(&spec(&[
            "main.py",
            "inputs/data.csv",
            "a/b/c.txt",
            "out/seed.txt",
        ]))
        .unwrap();
    }

    #[test]
    fn escaping_or_odd_paths_are_refused() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "",
            "a//b",
            "./x",
            "a/.",
            "a/..",
            "x\0y",
            "out",
        ] {
            let err = check(&spec(&[bad])).unwrap_err();
            assert!(matches!(err, SandboxError::InvalidJob(_)), "{bad:?}: {err}");
        }
        assert!(
            check(&spec(&["a", "a/b"])).is_err(),
            "a file that is also a directory"
        );
        assert!(check(&spec(&["a", "a"])).is_err(), "duplicates");
    }

    #[test]
    fn parents_are_listed_once_with_out() {
        let files = spec(&["a/b/c", "a/d", "e"]).files;
        let dirs: Vec<_> = parent_dirs(&files).into_iter().collect();
        assert_eq!(dirs, ["a", "a/b", "out"]);
    }

    #[test]
    fn bad_limits_env_and_oversized_inputs_are_refused() {
        let mut s = spec(&["main.py"]);
        s.limits.pids_limit = 0;
        assert!(check(&s).is_err());
        let mut s = spec(&["main.py"]);
        s.limits.cpus = f64::NAN;
        assert!(check(&s).is_err());
        let mut s = spec(&["main.py"]);
        s.env = vec![("A=B".into(), "c".into())];
        assert!(check(&s).is_err());
        let mut s = spec(&[]);
        s.limits.work_mb = 1;
        s.files = vec![("big".into(), Bytes::from(vec![0u8; 1024 * 1024]))];
        assert!(check(&s).is_err());
        let mut s = spec(&[]);
        s.command.clear();
        assert!(check(&s).is_err());
    }
}
