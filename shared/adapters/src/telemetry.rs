//! JSON logs with the seed's fields: timestamp, level, service, request_id, user_id, endpoint,
//! method, status_code, duration_ms, message; and one `aws call` line for each AWS operation a
//! function calls or presigns, with the resources its request names (what the least-privilege
//! test reads back from the deployed stack and holds against each function's policies).

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The message of the line [`init`] writes for each AWS operation.
pub const AWS_CALL: &str = "aws call";

/// Where [`AwsResources`] reports a request's resources to the `aws call` line.
const RESOURCES_TARGET: &str = "mecapy::aws_resources";

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
    // The SDK opens a span for each operation (`S3.PutObject`, with `rpc.service` and
    // `rpc.method`), presigned ones included, and [`AwsResources`] reports inside it what the
    // request names; the line is written when the span closes. `RUST_LOG` hides none of it.
    let calls = AwsCalls { service }.with_filter(filter_fn(|m| {
        (m.is_span() && m.target().starts_with("aws_sdk_")) || m.target() == RESOURCES_TARGET
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

/// A client of an AWS SDK crate (`aws_sdk_sqs`, `aws_sdk_ecs`, …) from the shared configuration,
/// carrying [`AwsResources`]: `sdk_client!(aws_sdk_sqs, &config)`. The one way the adapters and
/// the sandbox build their clients (S3's needs its own settings: `Storage::new`).
#[macro_export]
macro_rules! sdk_client {
    ($sdk:ident, $config:expr) => {
        $sdk::Client::from_conf(
            $sdk::config::Builder::from($config)
                .interceptor($crate::telemetry::AwsResources)
                .build(),
        )
    };
}

/// An SDK interceptor that reports the resources each request names (see [`named_resources`])
/// to the `aws call` line of its operation. Every client the adapters build carries it.
#[derive(Debug, Default, Clone, Copy)]
pub struct AwsResources;

impl Intercept for AwsResources {
    fn name(&self) -> &'static str {
        "AwsResources"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        use aws_smithy_runtime_api::client::orchestrator::Metadata;
        let service = cfg.load::<Metadata>().map(|m| m.service().to_string());
        let request = context.request();
        let named = named_resources(
            service.as_deref().unwrap_or_default(),
            request.uri(),
            request.body().bytes(),
        );
        let resources = Value::Object(named).to_string();
        tracing::trace!(target: RESOURCES_TARGET, resources = resources.as_str());
        Ok(())
    }
}

/// The fields of the JSON services' requests (SQS, EventBridge, ECS) that name a resource.
const NAMING_FIELDS: &[&str] = &[
    "QueueUrl",
    "QueueName",
    "EventBusName",
    "cluster",
    "taskDefinition",
    "task",
    "tasks",
    "containerInstance",
    "resourceArn",
];

/// The resources a request names, as it names them: S3's `Bucket` and `Key` from its address
/// (path-style or virtual-hosted, presigned or not) and a listing's `Prefix`; for the JSON services, the [`NAMING_FIELDS`]
/// of the body (each entry's `EventBusName` for `PutEvents`, `default` when it has none). Each
/// field maps to the list of its values. Nothing else of the request is kept.
pub fn named_resources(service: &str, uri: &str, body: Option<&[u8]>) -> Map<String, Value> {
    let mut out = Map::new();
    let mut add = |field: &str, value: &str| {
        let list = out
            .entry(field.to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = list {
            if !values.iter().any(|v| v == value) {
                values.push(Value::String(value.to_string()));
            }
        }
    };
    if service.eq_ignore_ascii_case("s3") {
        let Ok(uri) = uri.parse::<http::Uri>() else {
            return out;
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let host = uri.host().unwrap_or_default();
        let path = uri.path().strip_prefix('/').unwrap_or(uri.path());
        // Virtual-hosted: `{bucket}.s3.{region}.amazonaws.com/{key}`; otherwise path-style.
        let virtual_host = [".s3.", ".s3-"]
            .iter()
            .filter_map(|marker| host.find(marker))
            .min()
            .filter(|at| *at > 0);
        let (bucket, key) = match virtual_host {
            Some(at) => (&host[..at], path),
            None => path.split_once('/').unwrap_or((path, "")),
        };
        if !bucket.is_empty() {
            add("Bucket", &decode(bucket));
        }
        if !key.is_empty() {
            add("Key", &decode(key));
        }
        // A listing's prefix (`s3:prefix` in a policy's condition).
        let query = uri.query().unwrap_or_default();
        if let Some(prefix) = query.split('&').find_map(|p| p.strip_prefix("prefix=")) {
            add("Prefix", &decode(prefix));
        }
        return out;
    }
    let Some(Ok(Value::Object(fields))) = body.map(serde_json::from_slice::<Value>) else {
        return out;
    };
    for name in NAMING_FIELDS {
        match fields.get(*name) {
            Some(Value::String(v)) => add(name, v),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .for_each(|v| add(name, v)),
            _ => {}
        }
    }
    if let Some(Value::Array(entries)) = fields.get("Entries") {
        for entry in entries {
            add(
                "EventBusName",
                entry["EventBusName"].as_str().unwrap_or("default"),
            );
        }
    }
    out
}

struct AwsCalls {
    service: &'static str,
}

/// An operation under way: what its `aws call` line will say.
struct Call {
    service: String,
    operation: String,
    resources: Option<Value>,
}

#[derive(Default)]
struct Rpc {
    service: Option<String>,
    method: Option<String>,
    resources: Option<Value>,
}

impl Visit for Rpc {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "rpc.service" => self.service = Some(value.to_string()),
            "rpc.method" => self.method = Some(value.to_string()),
            "resources" => self.resources = serde_json::from_str(value).ok(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, format!("{value:?}").trim_matches('"'));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for AwsCalls {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut rpc = Rpc::default();
        attrs.record(&mut rpc);
        if let (Some(service), Some(operation), Some(span)) =
            (rpc.service, rpc.method, ctx.span(id))
        {
            span.extensions_mut().insert(Call {
                service,
                operation,
                resources: None,
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut rpc = Rpc::default();
        event.record(&mut rpc);
        let Some(resources) = rpc.resources else {
            return;
        };
        // The nearest operation span above the interceptor's event.
        for span in ctx.event_scope(event).into_iter().flatten() {
            if let Some(call) = span.extensions_mut().get_mut::<Call>() {
                call.resources = Some(resources);
                return;
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(call) = ctx
            .span(&id)
            .and_then(|s| s.extensions_mut().remove::<Call>())
        else {
            return;
        };
        println!(
            "{}",
            serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "INFO",
                "message": AWS_CALL,
                "service": self.service,
                "aws_service": call.service,
                "aws_operation": call.operation,
                "aws_resources": call.resources,
            })
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn named(service: &str, uri: &str, body: &str) -> Value {
        Value::Object(named_resources(service, uri, Some(body.as_bytes())))
    }

    #[test]
    fn s3_names_its_bucket_and_key_in_either_addressing() {
        let key = json!({"Bucket": ["b.1"], "Key": ["u/résultat 1.csv"]});
        for uri in [
            "http://localhost.localstack.cloud:4566/b.1/u/r%C3%A9sultat%201.csv?X-Amz-Signature=x",
            "https://b.1.s3.eu-west-3.amazonaws.com/u/r%C3%A9sultat%201.csv",
            "https://s3.eu-west-3.amazonaws.com/b.1/u/r%C3%A9sultat%201.csv",
        ] {
            assert_eq!(named("S3", uri, ""), key, "{uri}");
        }
        assert_eq!(
            named(
                "S3",
                "http://127.0.0.1:4566/b?list-type=2&prefix=results%2F",
                ""
            ),
            json!({"Bucket": ["b"], "Prefix": ["results/"]})
        );
    }

    #[test]
    fn json_services_name_their_queue_bus_or_task_and_nothing_else() {
        let body =
            r#"{"QueueUrl":"http://q/000000000000/jobs","MessageBody":"secret","DelaySeconds":3}"#;
        assert_eq!(
            named("SQS", "http://sqs.local/", body),
            json!({"QueueUrl": ["http://q/000000000000/jobs"]})
        );
        let body = r#"{"Entries":[{"EventBusName":"bus","Detail":"{}"},{"EventBusName":"bus"},{"Detail":"{}"}]}"#;
        assert_eq!(
            named("EventBridge", "http://events.local/", body),
            json!({"EventBusName": ["bus", "default"]})
        );
        let body = r#"{"cluster":"c","tasks":["arn:t/1","arn:t/2"],"include":["TAGS"]}"#;
        assert_eq!(
            named("ECS", "http://ecs.local/", body),
            json!({"cluster": ["c"], "tasks": ["arn:t/1", "arn:t/2"]})
        );
        assert_eq!(named("SQS", "http://sqs.local/", "not json"), json!({}));
    }
}
