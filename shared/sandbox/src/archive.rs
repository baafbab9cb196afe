//! Bytes in and out of the sandbox: the tar archive of input files, the capped capture of
//! stdout/stderr from the attached streams, and the capped collection of output files from the
//! engine's tar stream.

use std::io::{self, Read};
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::container::LogOutput;
use bollard::errors::Error as EngineError;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{validate, SandboxError};

/// The sandbox user: files put into `/work` belong to it so that the job can change them.
pub(crate) const UID: u64 = 1000;

/// Builds the archive extracted at `/work`: the parent directories, an empty `out/`, then the
/// files, all owned by the sandbox user. Paths must have been validated.
pub(crate) fn input_tar(files: &[(String, Bytes)]) -> Result<Bytes, SandboxError> {
    let build = || -> io::Result<Vec<u8>> {
        let mtime = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = |kind: tar::EntryType, mode: u32, size: u64| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(UID);
            h.set_gid(UID);
            h.set_mtime(mtime);
            h.set_size(size);
            h
        };
        let mut builder = tar::Builder::new(Vec::new());
        for dir in validate::parent_dirs(files) {
            let mut h = header(tar::EntryType::Directory, 0o755, 0);
            builder.append_data(&mut h, format!("{dir}/"), io::empty())?;
        }
        for (path, data) in files {
            let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
            builder.append_data(&mut h, path, data.as_ref())?;
        }
        builder.into_inner()
    };
    build()
        .map(Bytes::from)
        .map_err(|e| SandboxError::InvalidJob(format!("cannot archive the input files: {e}")))
}

/// A byte sink that keeps the first `max` bytes and remembers whether more came.
#[derive(Debug)]
pub(crate) struct Capped {
    data: BytesMut,
    max: usize,
    truncated: bool,
}

impl Capped {
    pub(crate) fn new(max: u64) -> Self {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        Self {
            data: BytesMut::with_capacity(max.min(64 * 1024)),
            max,
            truncated: false,
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        let room = self.max - self.data.len();
        if chunk.len() > room {
            self.truncated = true;
        }
        self.data.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    pub(crate) fn finish(self) -> (Bytes, bool) {
        (self.data.freeze(), self.truncated)
    }
}

/// Files collected from `/work/out`.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub(crate) files: Vec<(String, Bytes)>,
    pub(crate) truncated: bool,
}

/// Reads the engine's tar stream of a directory (entries named `<prefix>/...`) and keeps its
/// regular files within the caps. Symlinks, hard links, devices and the like are skipped. Once
/// the count cap is reached the stream is abandoned, so a huge output costs no more reading.
pub(crate) async fn collect_outputs<S, E>(
    stream: S,
    prefix: &str,
    max_files: usize,
    max_bytes: u64,
) -> Result<Collected, SandboxError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let (tx, rx) = mpsc::channel::<Result<Bytes, String>>(8);
    let prefix = format!("{prefix}/");
    let parser = tokio::task::spawn_blocking(move || {
        read_outputs(ChannelReader::new(rx), &prefix, max_files, max_bytes)
    });
    let pump = async move {
        futures_util::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            let item = item.map_err(|e| e.to_string());
            let failed = item.is_err();
            // A closed channel means the parser has all it wants.
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    };
    let ((), parsed) = tokio::join!(pump, parser);
    parsed
        .map_err(|e| SandboxError::Failed(format!("output collection stopped: {e}")))?
        .map_err(|e| SandboxError::Failed(format!("cannot read the output files: {e}")))
}

/// The synchronous side of [`collect_outputs`], also used on in-memory archives in tests.
pub(crate) fn read_outputs<R: Read>(
    reader: R,
    prefix: &str,
    max_files: usize,
    max_bytes: u64,
) -> io::Result<Collected> {
    let mut collected = Collected::default();
    let mut budget = OutputBudget::new(max_files, max_bytes);
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?;
        let Some(name) = path.to_str().and_then(|p| p.strip_prefix(prefix)) else {
            continue;
        };
        if validate::relative_path(name).is_err() {
            continue;
        }
        let name = name.to_string();
        let size = entry.size();
        match budget.admit(size) {
            Admit::Stop => break,
            Admit::Skip => continue,
            Admit::Take => {}
        }
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        (&mut entry).take(size).read_to_end(&mut data)?;
        collected.files.push((name, Bytes::from(data)));
    }
    collected.truncated = budget.truncated;
    Ok(collected)
}

/// What the output caps allow of the next file.
#[derive(Debug, PartialEq)]
pub(crate) enum Admit {
    Take,
    /// Too large for what is left: skipped, and the outputs are truncated.
    Skip,
    /// The count cap is reached: nothing more is read.
    Stop,
}

/// The output caps as files come, whoever collects them (the engine's archive on Docker, the
/// stage-out container on ECS): at most `max_files` files and `max_bytes` in all.
#[derive(Debug)]
pub(crate) struct OutputBudget {
    max_files: usize,
    max_bytes: u64,
    files: usize,
    bytes: u64,
    pub(crate) truncated: bool,
}

impl OutputBudget {
    pub(crate) fn new(max_files: usize, max_bytes: u64) -> Self {
        OutputBudget {
            max_files,
            max_bytes,
            files: 0,
            bytes: 0,
            truncated: false,
        }
    }

    pub(crate) fn admit(&mut self, size: u64) -> Admit {
        if self.files >= self.max_files {
            self.truncated = true;
            return Admit::Stop;
        }
        if size > self.max_bytes - self.bytes {
            self.truncated = true;
            return Admit::Skip;
        }
        self.files += 1;
        self.bytes += size;
        Admit::Take
    }
}

/// A blocking `Read` over chunks sent from async code.
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<Result<Bytes, String>>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// The attached output of a job, as the engine client decodes it.
pub(crate) type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, EngineError>> + Send>>;
/// The (unused) input side of an attach, kept open while reading.
pub(crate) type Stdin = Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

/// Reads the attached streams to the end, keeping each within its cap and dropping the rest, so
/// that a job printing without end is neither blocked nor able to exhaust memory.
pub(crate) async fn capture(
    mut output: Output,
    _stdin: Stdin,
    mut stdout: Capped,
    mut stderr: Capped,
    mut stop: oneshot::Receiver<()>,
) -> ((bytes::Bytes, bool), (bytes::Bytes, bool)) {
    loop {
        tokio::select! {
            item = output.next() => match item {
                Some(Ok(LogOutput::StdErr { message })) => stderr.push(&message),
                Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                    stdout.push(&message)
                }
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "job output stream broke");
                    break;
                }
                None => break,
            },
            _ = &mut stop => break,
        }
    }
    (stdout.finish(), stderr.finish())
}

/// Aborts the task when dropped (an early return must not leave the capture running).
pub(crate) struct AbortOnDrop<T>(pub(crate) JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine_like_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |kind: tar::EntryType, path: &str, data: &[u8], link: Option<&str>| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if let Some(target) = link {
                h.set_link_name(target).unwrap();
            }
            b.append_data(&mut h, path, data).unwrap();
        };
        add(tar::EntryType::Directory, "out/", b"", None);
        add(tar::EntryType::Regular, "out/a.json", b"{}", None);
        add(
            tar::EntryType::Symlink,
            "out/secret",
            b"",
            Some("/etc/shadow"),
        );
        add(tar::EntryType::Regular, "out/big.bin", &[7u8; 100], None);
        add(tar::EntryType::Directory, "out/sub/", b"", None);
        add(tar::EntryType::Regular, "out/sub/b.txt", b"b", None);
        add(tar::EntryType::Regular, "out/sub/c.txt", b"c", None);
        b.into_inner().unwrap()
    }

    #[test]
    fn regular_files_are_kept_and_links_skipped() {
        let got = read_outputs(&engine_like_tar()[..], "out/", 10, 1000).unwrap();
        let names: Vec<_> = got.files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a.json", "big.bin", "sub/b.txt", "sub/c.txt"]);
        assert!(!got.truncated);
    }

    #[test]
    fn count_and_size_caps_truncate() {
        let got = read_outputs(&engine_like_tar()[..], "out/", 2, 1000).unwrap();
        assert_eq!(got.files.len(), 2);
        assert!(got.truncated);
        let got = read_outputs(&engine_like_tar()[..], "out/", 10, 50).unwrap();
        let names: Vec<_> = got.files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["a.json", "sub/b.txt", "sub/c.txt"],
            "big.bin skipped"
        );
        assert!(got.truncated);
    }

    #[test]
    fn input_archive_has_dirs_out_and_owned_files() {
        let files = vec![
            ("main.py".to_string(), Bytes::from_static(b"print(1)")),
            ("inputs/data.csv".to_string(), Bytes::from_static(b"a,b")),
        ];
        let tar = input_tar(&files).unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let mut seen = vec![];
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            assert_eq!(entry.header().uid().unwrap(), UID);
            assert_eq!(entry.header().gid().unwrap(), UID);
            seen.push(entry.path().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(seen, ["inputs/", "out/", "main.py", "inputs/data.csv"]);
    }

    #[test]
    fn capped_keeps_the_head_and_flags_the_rest() {
        let mut c = Capped::new(5);
        c.push(b"abc");
        c.push(b"def");
        c.push(b"ghi");
        let (data, truncated) = c.finish();
        assert_eq!(&data[..], b"abcde");
        assert!(truncated);
        let mut c = Capped::new(3);
        c.push(b"abc");
        assert_eq!(c.finish(), (Bytes::from_static(b"abc"), false));
    }
}
