//! `make demo` (and the end of `make up`): the demo journey through the deployed stack.
//! Prints each step with its duration, then the computation's result (its stdout, and the plot it
//! drew, `plot.png`, checked to be a PNG); on failure, the step that
//! failed, what the stack answered and where to look; exit code 1.
//!
//! Environment: `DEMO_USER` / `DEMO_PASSWORD` (default alice / alice-password),
//! `DEMO_JOB_DEADLINE_SECONDS` (default 120).

use std::process::ExitCode;
use std::time::Duration;

use mecapy_e2e::api::clip;
use mecapy_e2e::journey::DEMO_PLOT;
use mecapy_e2e::{demo_journey, DemoOptions, StackEnv};

fn ms(d: Duration) -> String {
    if d >= Duration::from_secs(10) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let env = match StackEnv::ready().await {
        Ok(env) => env,
        Err(e) => {
            eprintln!("demo: the stack is not ready.\n  {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut options = DemoOptions::default();
    if let Ok(user) = std::env::var("DEMO_USER") {
        options.username = user;
    }
    if let Ok(password) = std::env::var("DEMO_PASSWORD") {
        options.password = password;
    }
    if let Some(secs) = std::env::var("DEMO_JOB_DEADLINE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        options.job_deadline = Duration::from_secs(secs);
    }

    println!(
        "MecaPy demo through stack {} (API {})",
        env.stack_name, env.api_url
    );
    let journey = demo_journey(&env, &options).await;
    let width = journey
        .steps
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    for (i, step) in journey.steps.iter().enumerate() {
        let mark = if step.outcome.is_ok() { "ok  " } else { "FAIL" };
        let detail = match &step.outcome {
            Ok(summary) => summary.clone(),
            Err(failure) => clip(failure.message.lines().next().unwrap_or(""), 160),
        };
        println!(
            "  {mark} {}. {:<width$}  {:>8}  {detail}",
            i + 1,
            step.name,
            ms(step.duration)
        );
    }

    match (&journey.result, journey.failed_step()) {
        (Some(result), _) => {
            println!(
                "  total {} for {} steps",
                ms(journey.total()),
                journey.steps.len()
            );
            println!(
                "\nResult of job {} (least-squares line through {}):",
                result.job_id, result.filename
            );
            for line in result.stdout.lines() {
                println!("  {line}");
            }
            println!(
                "  {DEMO_PLOT}: {} bytes, the points and the fitted line (links.outputs of GET /compute/{})",
                result.plot.len(),
                result.job_id
            );
            ExitCode::SUCCESS
        }
        (None, Some(step)) => {
            let failure = step.outcome.as_ref().expect_err("failed step");
            eprintln!("\ndemo FAILED at step \"{}\":", step.name);
            eprintln!("  {}", failure.message);
            if let Some(status) = failure.status {
                eprintln!("  HTTP status: {status}");
            }
            match &failure.body {
                Some(page)
                    if page
                        .trim_start()
                        .to_ascii_lowercase()
                        .starts_with("<!doctype html") =>
                {
                    eprintln!("  body: an HTML page of {} bytes", page.len())
                }
                Some(body) => eprintln!("  body: {}", clip(body, 1500)),
                None => {}
            }
            eprintln!("  where to look: {}", env.where_to_look());
            ExitCode::FAILURE
        }
        (None, None) => {
            eprintln!("demo: no step ran");
            ExitCode::FAILURE
        }
    }
}
