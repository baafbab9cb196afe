//! JSON logs with the seed's fields: timestamp, level, service, request_id, user_id, endpoint,
//! method, status_code, duration_ms, message; and one `aws call` line for each AWS operation a
//! function calls or presigns (what the least-privilege test reads back from the deployed stack).

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The message of the line [`init`] writes for each AWS operation.
pub const AWS_CALL: &str = "aws call";

/// Installs the JSON subscriber once (later calls are no-ops, so tests may call it freely).
/// `RUST_LOG` filters the function's own lines as usual; the default is `info`.
pub fn init(service: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_filter(filter);
    // The SDK opens a span named after each operation (`S3.PutObject`, with `rpc.service` and
    // `rpc.method`), presigned ones included; `RUST_LOG` does not hide these lines.
    let calls = AwsCalls { service }.with_filter(filter_fn(|m| {
        m.is_span() && m.target().starts_with("aws_sdk_")
    }));
    let installed = tracing_subscriber::registry()
        .with(lines)
        .with(calls)
        .try_init()
        .is_ok();
    if installed {
        tracing::debug!(service, "telemetry ready");
    }
}

struct AwsCalls {
    service: &'static str,
}

#[derive(Default)]
struct Rpc {
    service: Option<String>,
    method: Option<String>,
}

impl Visit for Rpc {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "rpc.service" => self.service = Some(value.to_string()),
            "rpc.method" => self.method = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, format!("{value:?}").trim_matches('"'));
    }
}

impl<S: Subscriber> Layer<S> for AwsCalls {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        let mut rpc = Rpc::default();
        attrs.record(&mut rpc);
        if let (Some(aws_service), Some(aws_operation)) = (rpc.service, rpc.method) {
            println!(
                "{}",
                serde_json::json!({
                    "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    "level": "INFO",
                    "message": AWS_CALL,
                    "service": self.service,
                    "aws_service": aws_service,
                    "aws_operation": aws_operation,
                })
            );
        }
    }
}
