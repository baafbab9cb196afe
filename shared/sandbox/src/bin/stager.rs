//! The staging containers of a job's ECS task: `stager stage-in` and `stager stage-out`, with
//! the stage document's presigned URL in `MECAPY_STAGE_URL` and the task volume at `/work`;
//! `stager hold` keeps that volume mounted for the task's life.
//! Exit 0 when done, else the refusal's exit code (`mecapy_sandbox::stager::Refusal`).

use std::path::Path;
use std::process::ExitCode;

use mecapy_sandbox::ecs::{HOLD_CONTAINER, STAGE_IN_CONTAINER, STAGE_OUT_CONTAINER, STAGE_URL_ENV};
use mecapy_sandbox::stager::{self, Refusal, StageError, WORK_DIR};

async fn run(mode: &str) -> Result<(), StageError> {
    let usage = |detail: String| StageError {
        refusal: Refusal::Usage,
        detail,
    };
    if mode == HOLD_CONTAINER {
        // Keeps the task's /work mounted until the task stops it (SIGTERM from the agent).
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
    }
    let url =
        std::env::var(STAGE_URL_ENV).map_err(|_| usage(format!("{STAGE_URL_ENV} is unset")))?;
    let http = stager::http_client();
    let document = stager::fetch_document(&http, &url).await?;
    let work = Path::new(WORK_DIR);
    match mode {
        STAGE_IN_CONTAINER => {
            stager::stage_in(&http, &document, work).await?;
            tracing::info!(job_id = %document.job_id, files = document.files.len(), "staged in");
        }
        STAGE_OUT_CONTAINER => {
            let report = stager::stage_out(&http, &document, work).await?;
            tracing::info!(
                job_id = %document.job_id,
                outputs = report.outputs.len(),
                outputs_truncated = report.outputs_truncated,
                "staged out"
            );
        }
        other => return Err(usage(format!("unknown mode {other:?}"))),
    }
    Ok(())
}

fn main() -> ExitCode {
    mecapy_adapters::telemetry::init("stager");
    let mode = std::env::args().nth(1).unwrap_or_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "no async runtime");
            return ExitCode::from(Refusal::Io.exit_code() as u8);
        }
    };
    match runtime.block_on(run(&mode)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(mode, refusal = ?e.refusal, error = %e, "refused");
            ExitCode::from(e.refusal.exit_code() as u8)
        }
    }
}
