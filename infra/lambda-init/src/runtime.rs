//! The init's state machine: the bootstrap process (spawn, exit, kill, restart), the invocation
//! queue fed by LocalStack's `/invoke`, the Runtime API handlers the bootstrap calls, the timeout
//! watcher, log capture, and the reports to LocalStack.

use std::collections::VecDeque;
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::http::{self, Request};
use crate::messages::{self, InvokeRequest};
use crate::user::RunAs;

const RUNTIME_PREFIX: &str = "/2018-06-01/runtime";
/// Function output kept for the next `/logs` report when no invocation collects it.
const MAX_LOG_BUFFER: usize = 4 * 1024 * 1024;
const LOCALSTACK_TIMEOUT: Duration = Duration::from_secs(30);

/// An invocation received from LocalStack and not yet answered.
#[derive(Debug)]
struct Invocation {
    req: InvokeRequest,
    received: Instant,
    deadline: Instant,
    deadline_epoch_ms: u128,
}

/// The invocation handed to the bootstrap by `/next`.
#[derive(Debug)]
struct Current {
    inv: Invocation,
    generation: u64,
    handed_out: Instant,
    init_duration: Option<Duration>,
}

enum Outcome {
    Response(Vec<u8>),
    Error(Vec<u8>),
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Invocation>,
    current: Option<Current>,
    /// Incremented at every bootstrap start.
    generation: u64,
    pid: Option<i32>,
    /// The init killed the running bootstrap (timeout, init error): its exit is not a crash.
    killed: bool,
    /// The current bootstrap has called `/next` at least once.
    initialized: bool,
    init_started: Instant,
    init_duration: Option<Duration>,
    ready_reported: bool,
    /// Start a bootstrap when none runs.
    want_running: bool,
    shutting_down: bool,
}

pub struct Init {
    cfg: Config,
    function_name: Option<String>,
    run_as: RunAs,
    bootstrap: PathBuf,
    state: Mutex<State>,
    cond: Condvar,
    logs: Mutex<Vec<u8>>,
    /// Held while spawning, and by the reaper while it reaps, so that `Command::spawn` always
    /// collects its own child when exec fails.
    spawn_lock: Mutex<()>,
    /// Read ends of the bootstrap's stdout/stderr pipes, for draining before a report.
    pump_fds: Mutex<Vec<RawFd>>,
    pumps_busy: AtomicUsize,
    stdout_lock: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Init {
    pub fn new(cfg: Config, run_as: RunAs, bootstrap: PathBuf) -> Arc<Init> {
        Arc::new(Init {
            function_name: cfg.function_env.get("AWS_LAMBDA_FUNCTION_NAME").cloned(),
            cfg,
            run_as,
            bootstrap,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                current: None,
                generation: 0,
                pid: None,
                killed: false,
                initialized: false,
                init_started: Instant::now(),
                init_duration: None,
                ready_reported: false,
                want_running: true,
                shutting_down: false,
            }),
            cond: Condvar::new(),
            logs: Mutex::new(Vec::new()),
            spawn_lock: Mutex::new(()),
            pump_fds: Mutex::new(Vec::new()),
            pumps_busy: AtomicUsize::new(0),
            stdout_lock: Mutex::new(()),
        })
    }

    pub fn info(&self, msg: impl AsRef<str>) {
        if self.cfg.verbose {
            eprintln!("[lambda-init] {}", msg.as_ref());
        }
    }

    pub fn warn(&self, msg: impl AsRef<str>) {
        eprintln!("[lambda-init] WARNING: {}", msg.as_ref());
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    // ------------------------------------------------------------------ reports to LocalStack

    fn post(&self, path: &str, body: &[u8]) -> bool {
        match http::post(
            &self.cfg.endpoint,
            path,
            "application/json",
            body,
            LOCALSTACK_TIMEOUT,
        ) {
            Ok(status) if (200..300).contains(&status) => {
                self.info(format!("POST {path}: {status}"));
                true
            }
            Ok(status) => {
                self.warn(format!("POST {path}: LocalStack answered {status}"));
                false
            }
            Err(e) => {
                self.warn(format!("POST {path}: {e}"));
                false
            }
        }
    }

    fn report_ready(&self) {
        let path = format!("/status/{}/ready", self.cfg.runtime_id);
        for attempt in 0..3 {
            if self.post(&path, b"") {
                return;
            }
            thread::sleep(Duration::from_millis(200 << attempt));
        }
        self.warn("LocalStack did not take the ready status: exiting");
        self.exit(1);
    }

    /// Reports a failed first init to LocalStack and exits, as LocalStack's own init does; the
    /// pending invoke then fails with this payload.
    pub fn fail_startup(&self, error: &[u8]) -> ! {
        self.warn(format!("init failed: {}", String::from_utf8_lossy(error)));
        let logs = std::mem::take(&mut *lock(&self.logs));
        if !logs.is_empty() {
            self.warn(format!(
                "bootstrap output:\n{}",
                String::from_utf8_lossy(&logs)
            ));
        }
        self.post(&format!("/status/{}/error", self.cfg.runtime_id), error);
        self.exit(1)
    }

    /// Stops the bootstrap (its whole process group) and exits.
    pub fn exit(&self, code: i32) -> ! {
        let pid = {
            let mut st = self.state();
            st.shutting_down = true;
            st.pid
        };
        if let Some(pid) = pid {
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = std::io::stdout().flush();
        std::process::exit(code)
    }

    /// `complete` for the invocation handed out to the bootstrap (not timed out).
    fn complete_current(&self, cur: &Current, outcome: Outcome) {
        self.complete(
            &cur.inv.req.id,
            cur.handed_out,
            cur.init_duration,
            outcome,
            false,
        );
    }

    /// Sends the invocation's logs, then its result, to LocalStack.
    fn complete(
        &self,
        id: &str,
        started: Instant,
        init_duration: Option<Duration>,
        outcome: Outcome,
        timed_out: bool,
    ) {
        self.drain_pumps();
        let mut text = std::mem::take(&mut *lock(&self.logs));
        if timed_out {
            text.extend_from_slice(
                messages::timeout_message(SystemTime::now(), id, self.cfg.timeout_secs).as_bytes(),
            );
            text.push(b'\n');
        }
        let tail = messages::end_report_lines(
            id,
            started.elapsed(),
            &self.cfg.memory_mb,
            messages::max_memory_used_mb(),
            init_duration,
            timed_out,
        );
        text.extend_from_slice(tail.as_bytes());
        self.echo(tail.as_bytes());
        if !self.cfg.post_invoke_wait.is_zero() {
            thread::sleep(self.cfg.post_invoke_wait);
        }
        let logs = serde_json::json!({ "logs": String::from_utf8_lossy(&text) }).to_string();
        self.post(&format!("/invocations/{id}/logs"), logs.as_bytes());
        match outcome {
            Outcome::Response(body) => self.post(&format!("/invocations/{id}/response"), &body),
            Outcome::Error(body) => self.post(&format!("/invocations/{id}/error"), &body),
        };
    }

    // ------------------------------------------------------------------ logs

    /// Writes to the container's stdout (`docker logs`).
    fn echo(&self, bytes: &[u8]) {
        let _g = lock(&self.stdout_lock);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }

    fn append_log(&self, bytes: &[u8]) {
        let mut logs = lock(&self.logs);
        logs.extend_from_slice(bytes);
        if logs.len() > MAX_LOG_BUFFER {
            let cut = logs.len() - MAX_LOG_BUFFER;
            logs.drain(..cut);
        }
    }

    /// Copies one of the bootstrap's output pipes to stdout and to the log buffer.
    fn pump(self: Arc<Self>, mut pipe: impl Read + AsRawFd + Send + 'static) {
        let fd = pipe.as_raw_fd();
        lock(&self.pump_fds).push(fd);
        thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        self.pumps_busy.fetch_add(1, Ordering::SeqCst);
                        self.echo(&buf[..n]);
                        self.append_log(&buf[..n]);
                        self.pumps_busy.fetch_sub(1, Ordering::SeqCst);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            lock(&self.pump_fds).retain(|f| *f != fd);
            drop(pipe);
        });
    }

    /// Waits (at most 50 ms) until what the bootstrap wrote before answering has been collected.
    fn drain_pumps(&self) {
        let deadline = Instant::now() + Duration::from_millis(50);
        loop {
            let pending = self.pumps_busy.load(Ordering::SeqCst) > 0
                || lock(&self.pump_fds).iter().any(|fd| {
                    let mut n: libc::c_int = 0;
                    let rc = unsafe { libc::ioctl(*fd, libc::FIONREAD, &mut n) };
                    rc == 0 && n > 0
                });
            if !pending || Instant::now() >= deadline {
                return;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    // ------------------------------------------------------------------ bootstrap process

    /// Starts the bootstrap whenever none runs and one is wanted.
    pub fn supervise(self: Arc<Self>) {
        loop {
            {
                let mut st = self.state();
                while st.shutting_down || st.pid.is_some() || !st.want_running {
                    st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            }
            let _spawning = lock(&self.spawn_lock);
            let mut st = self.state();
            st.generation += 1;
            st.initialized = false;
            st.killed = false;
            st.init_started = Instant::now();
            match self.spawn() {
                Ok((child, output)) => {
                    let pid = child.id() as i32;
                    st.pid = Some(pid);
                    self.info(format!(
                        "started {} (pid {pid}, generation {})",
                        self.bootstrap.display(),
                        st.generation
                    ));
                    drop(st);
                    self.clone().pump(std::fs::File::from(output));
                    // The reaper collects the exit status; dropping `Child` neither waits nor kills.
                    drop(child);
                }
                Err(e) => {
                    let msg = format!("Couldn't start {}: {e}", self.bootstrap.display());
                    let error = messages::error_json("Runtime.InvalidEntrypoint", &msg);
                    self.bootstrap_failed(st, error);
                }
            }
        }
    }

    /// Starts the bootstrap with stdout and stderr on one pipe (one ordered stream, as in
    /// CloudWatch); returns the child and the pipe's read end.
    fn spawn(&self) -> std::io::Result<(std::process::Child, OwnedFd)> {
        let (read_end, write_end) = pipe()?;
        let mut cmd = Command::new(&self.bootstrap);
        let cwd = if std::path::Path::new("/var/task").is_dir() {
            "/var/task"
        } else {
            "/"
        };
        cmd.env_clear()
            .envs(&self.cfg.function_env)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(write_end.try_clone()?))
            .stderr(Stdio::from(write_end))
            .process_group(0);
        let run_as = self.run_as.clone();
        // SAFETY: only async-signal-safe calls, no allocation.
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                if !run_as.is_root()
                    && (libc::setgroups(run_as.groups.len(), run_as.groups.as_ptr()) != 0
                        || libc::setgid(run_as.gid) != 0
                        || libc::setuid(run_as.uid) != 0)
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        // `cmd` holds the write ends: drop it so that the pipe ends with the bootstrap.
        drop(cmd);
        Ok((child, read_end))
    }

    /// Collects exited children (the init is PID 1 in its container) and handles the bootstrap's exit.
    pub fn reap(self: Arc<Self>) {
        loop {
            {
                let _g = lock(&self.spawn_lock);
                loop {
                    let mut status: libc::c_int = 0;
                    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                    if pid <= 0 {
                        break;
                    }
                    let st = self.state();
                    if st.pid == Some(pid) {
                        self.bootstrap_exited(st, status);
                    }
                }
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn bootstrap_exited(&self, mut st: MutexGuard<'_, State>, status: i32) {
        st.pid = None;
        let killed = std::mem::replace(&mut st.killed, false);
        let desc = messages::describe_wait_status(status);
        self.info(format!(
            "bootstrap exited: {desc}{}",
            if killed { " (killed by the init)" } else { "" }
        ));
        if st.shutting_down {
            return;
        }
        if killed {
            self.cond.notify_all();
            return;
        }
        let error = messages::error_json(
            "Runtime.ExitError",
            &format!("Runtime exited with error: {desc}"),
        );
        if let Some(cur) = st.current.take() {
            // Crashed while handling an invocation: that invocation fails, the next one gets a
            // fresh bootstrap.
            st.want_running = true;
            self.cond.notify_all();
            drop(st);
            let id = cur.inv.req.id.clone();
            let msg = format!("RequestId: {id} Error: Runtime exited with error: {desc}");
            let error = messages::error_json("Runtime.ExitError", &msg);
            self.append_log(format!("{msg}\nRuntime.ExitError\n").as_bytes());
            self.complete_current(&cur, Outcome::Error(error));
        } else if !st.initialized {
            self.bootstrap_failed(st, error);
        } else {
            // Exited between invocations: start it again.
            st.want_running = true;
            self.cond.notify_all();
        }
    }

    /// The bootstrap could not start or failed its init (exit or `/runtime/init/error`).
    fn bootstrap_failed(&self, mut st: MutexGuard<'_, State>, error: Vec<u8>) {
        if !st.ready_reported {
            drop(st);
            self.fail_startup(&error);
        }
        // A re-init (after a timeout or a crash) failed: the waiting invocation gets the error,
        // and the next invocation tries again.
        st.want_running = false;
        if let Some(pid) = st.pid {
            st.killed = true;
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let failed = st.queue.pop_front();
        self.cond.notify_all();
        drop(st);
        if let Some(inv) = failed {
            self.complete(
                &inv.req.id,
                inv.received,
                None,
                Outcome::Error(error),
                false,
            );
        }
    }

    // ------------------------------------------------------------------ timeouts

    /// Fails invocations that pass their deadline, and restarts the bootstrap that ran them.
    pub fn watch_timeouts(self: Arc<Self>) {
        loop {
            let mut st = self.state();
            let expired = loop {
                let earliest = st
                    .current
                    .as_ref()
                    .map(|c| c.inv.deadline)
                    .into_iter()
                    .chain(st.queue.iter().map(|i| i.deadline))
                    .min();
                match earliest {
                    _ if st.shutting_down => return,
                    None => st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            break d;
                        }
                        st = self
                            .cond
                            .wait_timeout(st, d - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                }
            };
            let (inv, started, init_duration) =
                match st.current.take_if(|c| c.inv.deadline <= expired) {
                    Some(c) => (c.inv, c.handed_out, c.init_duration),
                    None => {
                        let Some(pos) = st.queue.iter().position(|i| i.deadline <= expired) else {
                            continue;
                        };
                        let inv = st.queue.remove(pos).expect("position is valid");
                        let received = inv.received;
                        (inv, received, None)
                    }
                };
            if let Some(pid) = st.pid {
                st.killed = true;
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            st.want_running = true;
            self.cond.notify_all();
            drop(st);
            let id = inv.req.id.clone();
            self.info(format!(
                "invocation {id} timed out after {} s",
                self.cfg.timeout_secs
            ));
            let msg = messages::timeout_message(SystemTime::now(), &id, self.cfg.timeout_secs);
            let error = messages::error_json("Sandbox.Timedout", &msg);
            self.complete(&id, started, init_duration, Outcome::Error(error), true);
        }
    }

    // ------------------------------------------------------------------ LocalStack's /invoke

    /// Accepts the connections of `listener`, each served by `connection` on its own thread.
    fn accept(self: Arc<Self>, listener: TcpListener, connection: fn(&Self, TcpStream)) {
        for conn in listener.incoming() {
            let Ok(stream) = conn else { continue };
            let init = self.clone();
            thread::spawn(move || connection(&init, stream));
        }
    }

    /// Reads the requests of one keep-alive connection, each handed to `handle` (false: close
    /// it). A request that does not parse is logged (`what`), answered 400 `bad_request`, and
    /// closes the connection.
    fn serve_connection(
        &self,
        stream: &TcpStream,
        what: &str,
        bad_request: &[u8],
        mut handle: impl FnMut(Request) -> bool,
    ) {
        let _ = stream.set_nodelay(true);
        let mut reader = BufReader::new(stream);
        let mut writer = stream;
        loop {
            let req = match http::read_request(&mut reader, &mut writer) {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    self.info(format!("{what}: {e}"));
                    let _ = http::write_response(&mut writer, 400, &[], bad_request, false);
                    return;
                }
            };
            if !handle(req) {
                return;
            }
        }
    }

    pub fn serve_invokes(self: Arc<Self>, listener: TcpListener) {
        self.accept(listener, Self::invoke_connection);
    }

    fn invoke_connection(&self, stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
        self.serve_connection(&stream, "/invoke connection", b"bad request", |req| {
            let mut writer = &stream;
            let (status, body): (u16, Vec<u8>) = match (req.method.as_str(), req.path.as_str()) {
                ("POST", "/invoke") => match messages::parse_invoke(&req.body) {
                    Ok(inv) if !messages::arn_matches(&inv.arn, self.function_name.as_deref()) => {
                        // A container address reused by Docker after another function's container
                        // died: refuse, LocalStack then fails that invocation at once.
                        let msg = format!(
                            "invocation {} is for {}, not for this function",
                            inv.id, inv.arn
                        );
                        self.warn(&msg);
                        (409, msg.into_bytes())
                    }
                    Ok(inv) => {
                        self.enqueue(inv);
                        (200, b"OK".to_vec())
                    }
                    Err(e) => {
                        self.warn(&e);
                        (400, e.into_bytes())
                    }
                },
                _ => (404, b"not found".to_vec()),
            };
            http::write_response(
                &mut writer,
                status,
                &[("Content-Type", "text/plain")],
                &body,
                req.keep_alive,
            )
            .is_ok()
                && req.keep_alive
        });
    }

    fn enqueue(&self, req: InvokeRequest) {
        let now = Instant::now();
        let deadline_epoch_ms = (SystemTime::now() + self.cfg.timeout)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        self.info(format!("invoke {}", req.id));
        let start = messages::start_line(&req.id, &self.cfg.function_version);
        self.append_log(start.as_bytes());
        self.echo(start.as_bytes());
        let mut st = self.state();
        st.queue.push_back(Invocation {
            req,
            received: now,
            deadline: now + self.cfg.timeout,
            deadline_epoch_ms,
        });
        st.want_running = true;
        self.cond.notify_all();
    }

    // ------------------------------------------------------------------ the Runtime API

    pub fn serve_runtime_api(self: Arc<Self>, listener: TcpListener) {
        self.accept(listener, Self::runtime_connection);
    }

    fn runtime_connection(&self, stream: TcpStream) {
        self.serve_connection(&stream, "runtime API connection", b"", |req| {
            let keep_alive = req.keep_alive;
            self.runtime_request(req, &stream) && keep_alive
        });
    }

    /// Handles one Runtime API request; false when the connection must close.
    fn runtime_request(&self, req: Request, stream: &TcpStream) -> bool {
        let mut w = stream;
        let ka = req.keep_alive;
        let json = [("Content-Type", "application/json")];
        let Some(route) = req.path.strip_prefix(RUNTIME_PREFIX) else {
            return http::write_response(
                &mut w,
                404,
                &json,
                br#"{"errorMessage":"not found","errorType":"NotFound"}"#,
                ka,
            )
            .is_ok();
        };
        let segments: Vec<&str> = route.trim_start_matches('/').split('/').collect();
        match (req.method.as_str(), segments.as_slice()) {
            ("GET", ["invocation", "next"]) => self.next(stream, ka),
            ("POST", ["invocation", id, kind @ ("response" | "error")]) => {
                let (status, body) = self.invocation_result(id, kind, &req);
                http::write_response(&mut w, status, &json, body.as_bytes(), ka).is_ok()
            }
            ("POST", ["init", "error"]) => {
                let (status, body) = self.init_error(&req);
                http::write_response(&mut w, status, &json, body.as_bytes(), ka).is_ok()
            }
            _ => http::write_response(
                &mut w,
                404,
                &json,
                br#"{"errorMessage":"unknown Runtime API path","errorType":"NotFound"}"#,
                ka,
            )
            .is_ok(),
        }
    }

    /// `GET /runtime/invocation/next`: reports ready after the first call of the first bootstrap,
    /// then blocks until an invocation is queued.
    fn next(&self, stream: &TcpStream, keep_alive: bool) -> bool {
        let mut st = self.state();
        let generation = st.generation;
        if st.pid.is_none() {
            return false;
        }
        let mut report_ready = false;
        if !st.initialized {
            st.initialized = true;
            let took = st.init_started.elapsed();
            st.init_duration = Some(took);
            self.info(format!(
                "bootstrap initialized in {:.1} ms",
                took.as_secs_f64() * 1000.0
            ));
            if !st.ready_reported {
                st.ready_reported = true;
                report_ready = true;
            }
        }
        if let Some(cur) = st.current.take_if(|c| c.generation == generation) {
            // The runtime asked for more work without answering: that invocation fails.
            drop(st);
            let id = cur.inv.req.id.clone();
            let error = messages::error_json("Runtime.NoResponse", &format!("RequestId: {id} Error: the runtime asked for the next invocation without answering this one"));
            self.complete_current(&cur, Outcome::Error(error));
            st = self.state();
        }
        if report_ready {
            drop(st);
            self.report_ready();
            st = self.state();
        }
        let inv = loop {
            if st.shutting_down || st.generation != generation || st.pid.is_none() {
                return false;
            }
            if st.current.is_none() {
                if let Some(inv) = st.queue.pop_front() {
                    break inv;
                }
            }
            st = self
                .cond
                .wait_timeout(st, Duration::from_millis(500))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if peer_closed(stream) {
                return false;
            }
        };
        let mut owned: Vec<(&str, String)> = vec![
            ("Content-Type", "application/json".into()),
            ("Lambda-Runtime-Aws-Request-Id", inv.req.id.clone()),
            (
                "Lambda-Runtime-Deadline-Ms",
                inv.deadline_epoch_ms.to_string(),
            ),
            ("Lambda-Runtime-Invoked-Function-Arn", inv.req.arn.clone()),
            ("Lambda-Runtime-Trace-Id", inv.req.trace_id.clone()),
        ];
        if let Some(cc) = &inv.req.client_context {
            owned.push(("Lambda-Runtime-Client-Context", cc.clone()));
        }
        if let Some(ci) = &inv.req.cognito_identity {
            owned.push(("Lambda-Runtime-Cognito-Identity", ci.clone()));
        }
        let headers: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let payload = inv.req.payload.clone();
        let id = inv.req.id.clone();
        let init_duration = st.init_duration.take();
        st.current = Some(Current {
            inv,
            generation,
            handed_out: Instant::now(),
            init_duration,
        });
        drop(st);
        let mut w = stream;
        let written = http::write_response(&mut w, 200, &headers, &payload, keep_alive).is_ok();
        if !written {
            // The bootstrap went away: the invocation waits for the next one.
            let mut st = self.state();
            if let Some(cur) = st.current.take_if(|c| c.inv.req.id == id) {
                st.init_duration = cur.init_duration;
                st.queue.push_front(cur.inv);
                self.cond.notify_all();
            }
        }
        written
    }

    /// `POST /runtime/invocation/{id}/response` and `.../error`.
    fn invocation_result(&self, id: &str, kind: &str, req: &Request) -> (u16, String) {
        let mut st = self.state();
        let Some(cur) = st.current.take_if(|c| c.inv.req.id == id) else {
            return (
                400,
                r#"{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}"#.into(),
            );
        };
        self.cond.notify_all();
        drop(st);
        let (status, outcome) = if kind == "error" {
            (
                202,
                Outcome::Error(messages::runtime_error_body(
                    &req.body,
                    req.header("lambda-runtime-function-error-type"),
                )),
            )
        } else if req.body.len() > self.cfg.max_payload {
            let msg = format!(
                "Response payload size ({} bytes) exceeded maximum allowed payload size ({} bytes).",
                req.body.len(),
                self.cfg.max_payload
            );
            (
                413,
                Outcome::Error(messages::error_json("Function.ResponseSizeTooLarge", &msg)),
            )
        } else {
            (202, Outcome::Response(req.body.clone()))
        };
        // Report to LocalStack (logs, then the result) before answering the runtime: the caller
        // gets its result as early as possible, and LocalStack sends no new invocation before.
        self.complete(id, cur.handed_out, cur.init_duration, outcome, false);
        let body = if status == 202 {
            r#"{"status":"OK"}"#
        } else {
            r#"{"errorMessage":"payload too large","errorType":"RequestEntityTooLarge"}"#
        };
        (status, body.into())
    }

    /// `POST /runtime/init/error`.
    fn init_error(&self, req: &Request) -> (u16, String) {
        let st = self.state();
        if st.initialized {
            return (
                403,
                r#"{"errorMessage":"init already completed","errorType":"Runtime.InvalidState"}"#
                    .into(),
            );
        }
        let error = messages::runtime_error_body(
            &req.body,
            req.header("lambda-runtime-function-error-type"),
        );
        self.bootstrap_failed(st, error);
        (202, r#"{"status":"OK"}"#.into())
    }
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills both descriptors on success; each is then owned exactly once.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Whether the peer closed its end (the bootstrap exited while waiting on `/next`).
fn peer_closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut b = [0u8; 1];
    let closed = match stream.peek(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    let _ = stream.set_nonblocking(false);
    closed
}
