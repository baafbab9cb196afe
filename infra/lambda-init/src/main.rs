//! `/var/rapid/init` for LocalStack's Lambda containers, offline. See README.md.
//!
//! LocalStack starts the container with this binary as its entrypoint. It serves the AWS Lambda
//! Runtime API to the function's `bootstrap` on 127.0.0.1:9001, takes invocations from LocalStack
//! on `POST :9563/invoke`, and reports readiness, logs and results back to
//! `$LOCALSTACK_RUNTIME_ENDPOINT`.

mod config;
mod http;
mod messages;
mod runtime;
mod user;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;

use config::Config;
use runtime::Init;

fn main() {
    let env: BTreeMap<String, String> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("mecapy-lambda-init {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    let cfg = match Config::from_env(&env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("[lambda-init] ERROR: {e}");
            std::process::exit(2);
        }
    };

    // SIGTERM/SIGINT are taken by a dedicated thread (as PID 1 the init has no default handlers:
    // without this `docker stop` would wait its whole grace period). The bootstrap gets a clean
    // signal mask back in `pre_exec`.
    let signals = block_signals(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP]);

    let warn = |m: String| eprintln!("[lambda-init] WARNING: {m}");
    let run_as = user::prepare(&cfg.user, &cfg.chmod_paths, &warn);

    let bootstrap = config::find_bootstrap();
    let runtime_listener = TcpListener::bind(config::RUNTIME_API_ADDR);
    let invoke_listener = TcpListener::bind(("0.0.0.0", cfg.interop_port));
    let init = Init::new(
        cfg.clone(),
        run_as.clone(),
        bootstrap.clone().unwrap_or_default(),
    );
    init.info(format!(
        "runtime id {}, user {} (uid {}, gid {}, groups {:?}), timeout {} s",
        cfg.runtime_id, run_as.name, run_as.uid, run_as.gid, run_as.groups, cfg.timeout_secs
    ));

    let (runtime_listener, invoke_listener) = match (runtime_listener, invoke_listener) {
        (Ok(r), Ok(i)) => (r, i),
        (r, i) => {
            let msg = format!(
                "cannot listen: runtime API {}: {:?}, invoke port {}: {:?}",
                config::RUNTIME_API_ADDR,
                r.err(),
                cfg.interop_port,
                i.err()
            );
            init.fail_startup(&messages::error_json("Runtime.Unknown", &msg));
        }
    };
    if bootstrap.is_none() {
        let msg = format!(
            "Couldn't find valid bootstrap(s): [{}]",
            config::BOOTSTRAP_CANDIDATES.join(" ")
        );
        init.fail_startup(&messages::error_json("Runtime.InvalidEntrypoint", &msg));
    }

    {
        let init = init.clone();
        thread::spawn(move || {
            let mut sig: libc::c_int = 0;
            // SAFETY: `signals` is an initialised set; sigwait only writes `sig`.
            while unsafe { libc::sigwait(&signals, &mut sig) } != 0 {}
            init.info(format!("signal {sig}: stopping"));
            init.exit(0);
        });
    }
    spawn(&init, Init::reap);
    spawn(&init, Init::watch_timeouts);
    spawn(&init, Init::supervise);
    {
        let init = init.clone();
        thread::spawn(move || init.serve_runtime_api(runtime_listener));
    }
    init.serve_invokes(invoke_listener);
}

fn spawn(init: &Arc<Init>, f: fn(Arc<Init>)) {
    let init = init.clone();
    thread::spawn(move || f(init));
}

/// Blocks `sigs` in this thread (and so in every thread started after) and returns the set.
fn block_signals(sigs: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: plain libc signal-set manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in sigs {
            libc::sigaddset(&mut set, *s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}
