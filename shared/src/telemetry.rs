//! JSON logs with the seed's fields: timestamp, level, service, request_id, user_id, endpoint,
//! method, status_code, duration_ms, message.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber once (later calls are no-ops, so tests may call it freely).
/// `RUST_LOG` filters as usual; the default is `info`.
pub fn init(service: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let installed = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .try_init()
        .is_ok();
    if installed {
        tracing::debug!(service, "telemetry ready");
    }
}
