//! Test support against the REAL local services (a dev-dependency only): each [`TestContext`]
//! gets its own PostgreSQL database (migrated) and its own S3 bucket, so tests run in parallel.
//! A service that is not running makes the test fail with its name and the command that starts
//! it; nothing is mocked and nothing is skipped.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::Credentials;
use lambda_http::http::{header, Method};
use lambda_http::{Body, Request, Response};
use serde_json::Value;

use mecapy_shared::config::{Config, EdgeConfig, LoginConfig, OidcConfig};
use mecapy_shared::db;
use mecapy_shared::storage::Storage;
use mecapy_usecases::Context;

pub mod ecs_agent;
pub mod ecs_task;
pub mod moto;
pub mod receiver;
pub use ecs_agent::{LocalAgent, LOCAL_STAGER_IMAGE};
use mecapy_shared::AppState;

const START_HINT: &str = "start the local services with `make up` (or `infra/services.sh up`)";

/// `infra/local.env`, overridden by the process environment.
pub fn local_env() -> HashMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/local.env");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let mut vars: HashMap<String, String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    for (k, v) in vars.iter_mut() {
        if let Ok(value) = std::env::var(k) {
            *v = value;
        }
    }
    vars
}

/// AWS SDK configuration bound to an explicit endpoint and the local test credentials, so a
/// test never reaches the real AWS.
pub async fn sdk_config_at(endpoint: &str, env: &HashMap<String, String>) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(env["AWS_REGION"].clone()))
        .credentials_provider(Credentials::new(
            env["AWS_ACCESS_KEY_ID"].clone(),
            env["AWS_SECRET_ACCESS_KEY"].clone(),
            None,
            None,
            "mecapy-tests",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// An S3 client bound to an explicit endpoint (never the real AWS from a test).
pub async fn storage_at(endpoint: &str, bucket: &str, env: &HashMap<String, String>) -> Storage {
    Storage::new(&sdk_config_at(endpoint, env).await, bucket)
}

/// Creates the queue `name` in LocalStack with `attrs`: its URL (panics naming the queue).
pub async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attrs: Vec<(aws_sdk_sqs::types::QueueAttributeName, String)>,
) -> String {
    let mut req = sqs.create_queue().queue_name(name);
    for (k, v) in attrs {
        req = req.attributes(k, v);
    }
    req.send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot create queue {name} in LocalStack: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        })
        .queue_url()
        .expect("queue url")
        .to_string()
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// How to reach the database at `url`, with the CA variables of `env` (`PGSSLROOTCERT`,
/// `DATABASE_CA_CERT`).
pub fn database_config(url: &str, env: &HashMap<String, String>) -> db::DatabaseConfig {
    db::DatabaseConfig::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.to_string()),
        _ => env.get(k).cloned(),
    })
    .unwrap_or_else(|e| {
        panic!("PostgreSQL cannot be configured ({e}): {START_HINT}; it also creates the CA of PostgreSQL's certificate")
    })
}

async fn require_postgres(url: &str, env: &HashMap<String, String>) -> tokio_postgres::Client {
    match database_config(url, env).connect().await {
        Ok(client) => client,
        Err(e) => panic!(
            "PostgreSQL is not reachable at {url} ({}): {START_HINT}",
            mecapy_shared::http::error_chain(&e)
        ),
    }
}

async fn require_http(service: &str, url: &str) {
    match http_client().get(url).send().await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => panic!("{service} at {url} answered {}: {START_HINT}", r.status()),
        Err(e) => panic!("{service} is not reachable at {url} ({e}): {START_HINT}"),
    }
}

/// One test's private slice of the real stack.
pub struct TestContext {
    pub env: HashMap<String, String>,
    pub config: Config,
    /// The edge's settings from local.env (CORS, the JSON body limit).
    pub edge: EdgeConfig,
    /// The identity provider the test's state trusts (local.env's, refetch interval zero).
    pub oidc: OidcConfig,
    /// The login flow's settings from local.env (`login` and `callback` read them).
    pub login: LoginConfig,
    pub state: AppState,
    pub database: String,
    pub bucket: String,
    /// The test's own event bus (its state publishes there).
    pub bus: String,
}

impl TestContext {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// Like [`TestContext::new`], with a chance to change the configuration first.
    pub async fn with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::configured(adjust, |_| {}).await
    }

    /// Like [`TestContext::new`], with a chance to change the identity provider's settings.
    pub async fn with_oidc(adjust: impl FnOnce(&mut OidcConfig)) -> Self {
        Self::configured(|_| {}, adjust).await
    }

    async fn configured(
        adjust: impl FnOnce(&mut Config),
        adjust_oidc: impl FnOnce(&mut OidcConfig),
    ) -> Self {
        mecapy_shared::telemetry::init("tests");
        let env = local_env();
        let admin_url = env["DATABASE_URL"].clone();
        let endpoint = env["AWS_ENDPOINT_URL"].clone();
        require_http("LocalStack", &format!("{endpoint}/_localstack/health")).await;
        require_http(
            "the OIDC provider",
            &format!("{}/.well-known/openid-configuration", env["OIDC_ISSUER"]),
        )
        .await;

        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let database = format!("mecapy_test_{suffix}");
        let admin = require_postgres(&admin_url, &env).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {database}: {e}"));
        let mut url = url::Url::parse(&admin_url).expect("DATABASE_URL is a URL");
        url.set_path(&format!("/{database}"));
        let database_url = url.to_string();
        let mut client = require_postgres(&database_url, &env).await;
        db::migrate::run(&mut client)
            .await
            .unwrap_or_else(|e| panic!("migrations failed on {database}: {e}"));

        let bucket = format!("mecapy-test-{}", &suffix[..20]);
        let mut vars = env.clone();
        vars.insert("DATABASE_URL".into(), database_url);
        vars.insert("UPLOAD_BUCKET".into(), bucket.clone());
        let mut config =
            Config::from_lookup(|k| vars.get(k).cloned()).expect("local.env is a valid config");
        let login = LoginConfig::from_lookup(|k| vars.get(k).cloned())
            .expect("local.env has the login settings");
        let edge = EdgeConfig::from_lookup(|k| vars.get(k).cloned())
            .expect("local.env has ALLOWED_ORIGINS");
        let mut oidc = OidcConfig::from_lookup(|k| vars.get(k).cloned())
            .expect("local.env has the OIDC settings");
        // Tests run in parallel and one of them rotates the provider's key: each context may
        // refetch the JWKS at once. The rotation test sets the production interval back.
        oidc.jwks_refetch_interval = Duration::ZERO;
        adjust(&mut config);
        adjust_oidc(&mut oidc);

        let storage = storage_at(&endpoint, &bucket, &env).await;
        storage
            .client()
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot create bucket {bucket} in LocalStack: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
        let bus = format!("{bucket}-bus");
        let events = aws_sdk_eventbridge::Client::new(&sdk_config_at(&endpoint, &env).await);
        events
            .create_event_bus()
            .name(&bus)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot create event bus {bus} in LocalStack (is `events` in its SERVICES?): {}",
                    aws_sdk_eventbridge::error::DisplayErrorContext(e)
                )
            });
        config.event_bus_name = Some(bus.clone());
        let storage = storage_at(&endpoint, &config.upload_bucket, &env).await;
        let context = Context::with_storage(config.clone(), storage).expect("context");
        let state = AppState::of(context, edge.clone(), oidc.clone())
            .with_login(login.clone())
            .with_bus(Some(mecapy_shared::bus::EventBus::with_client(
                events, &bus,
            )));
        TestContext {
            env,
            config,
            edge,
            oidc,
            login,
            state,
            database,
            bucket,
            bus,
        }
    }

    /// A state whose database is a closed port: every query is "PostgreSQL down".
    pub fn state_without_database(&self) -> AppState {
        let mut config = self.config.clone();
        config.database_url = "postgres://mecapy:mecapy@127.0.0.1:9/mecapy".into();
        self.state_of(config, self.state.storage.clone())
    }

    /// A state of this test's settings around a context of `config` and `storage`, with no bus.
    pub fn state_of(&self, config: Config, storage: Storage) -> AppState {
        let context = Context::with_storage(config, storage).expect("context");
        AppState::of(context, self.edge.clone(), self.oidc.clone()).with_login(self.login.clone())
    }

    /// A state whose S3 endpoint is a closed port: every object call is "S3 down".
    pub async fn state_without_s3(&self) -> AppState {
        let storage = storage_at("http://127.0.0.1:9", &self.bucket, &self.env).await;
        self.state_of(self.config.clone(), storage)
    }

    /// A direct connection to this test's database, to check what was (not) written.
    pub async fn db(&self) -> deadpool_postgres::Object {
        self.state.db.get().await.expect("test database")
    }

    /// The first column of the one row `sql` (with `params`) answers.
    pub async fn query_value<T: tokio_postgres::types::FromSqlOwned>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> T {
        self.db()
            .await
            .query_one(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// The bytes of the object `key` in this test's bucket.
    pub async fn object_bytes(&self, key: &str) -> Vec<u8> {
        let object = self
            .state
            .storage
            .client()
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {key}: {e}"));
        object.body.collect().await.expect("object body").to_vec()
    }

    /// Keys present in this test's bucket.
    pub async fn object_keys(&self) -> Vec<String> {
        let out = self
            .state
            .storage
            .client()
            .list_objects_v2()
            .bucket(&self.bucket)
            .send()
            .await
            .expect("list objects");
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }

    pub fn admin_url(&self) -> String {
        self.env["OIDC_ADMIN_URL"].clone()
    }

    /// A JWT signed by the provider's CURRENT key with exactly these claims (and header fields).
    pub async fn sign_with_provider_key(&self, claims: Value, header: Value) -> String {
        let r = http_client()
            .post(format!("{}/admin/sign", self.admin_url()))
            .json(&serde_json::json!({"claims": claims, "header": header}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("OIDC admin API unreachable ({e}): {START_HINT}"));
        assert!(r.status().is_success(), "admin sign: {}", r.status());
        let body: Value = r.json().await.expect("admin sign answer");
        body["token"].as_str().expect("token").to_string()
    }

    /// Rotates the provider's signing key; returns the new `kid`.
    pub async fn rotate_provider_key(&self) -> String {
        let r = http_client()
            .post(format!("{}/admin/rotate", self.admin_url()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("OIDC admin API unreachable ({e}): {START_HINT}"));
        assert!(r.status().is_success(), "admin rotate: {}", r.status());
        let body: Value = r.json().await.expect("admin rotate answer");
        body["kid"].as_str().expect("kid").to_string()
    }

    /// Claims the provider itself would put in an access token for `sub`, valid for 5 minutes.
    pub fn claims_for(&self, sub: &str) -> Value {
        access_token_claims(
            &self.oidc.issuer,
            &self.oidc.audience,
            sub,
            "example.test",
            "User",
        )
    }

    /// A valid access token for a fresh user, without going through the login form.
    pub async fn token_for(&self, sub: &str) -> String {
        self.sign_with_provider_key(self.claims_for(sub), serde_json::json!({}))
            .await
    }
}

/// Claims the provider puts in an access token for `sub` (issuer `iss`, audience `aud`), valid
/// for 5 minutes: the user's email is `{sub}@{email_domain}`, its name `{name_prefix} {sub}`.
pub fn access_token_claims(
    iss: &str,
    aud: &str,
    sub: &str,
    email_domain: &str,
    name_prefix: &str,
) -> Value {
    let now = chrono::Utc::now().timestamp();
    serde_json::json!({
        "iss": iss,
        "aud": aud,
        "sub": sub,
        "iat": now,
        "exp": now + 300,
        "email": format!("{sub}@{email_domain}"),
        "name": format!("{name_prefix} {sub}"),
        "scope": "openid profile email",
    })
}

/// What a browser brings back from the provider's login form.
#[derive(Debug, Clone)]
pub struct BrowserResult {
    /// The redirect URI the provider sent the browser to, with its query.
    pub redirected_to: url::Url,
    pub code: Option<String>,
    pub state: Option<String>,
}

/// Follows `authorization_url` as a browser would: redirects with cookies, the login form filled
/// with `username`/`password` and submitted, then redirects until the provider sends the browser
/// to `redirect_uri`. Panics with the page if the flow stops elsewhere.
pub async fn browser_login(
    authorization_url: &str,
    redirect_uri: &str,
    username: &str,
    password: &str,
) -> Result<BrowserResult, String> {
    let target = redirect_uri.to_string();
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.url().as_str().starts_with(&target) || attempt.previous().len() > 10 {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .map_err(|e| e.to_string())?;
    let page = client
        .get(authorization_url)
        .send()
        .await
        .map_err(|e| format!("authorization URL: {e}"))?;
    let page_url = page.url().clone();
    let status = page.status();
    let html = page.text().await.map_err(|e| e.to_string())?;
    let action = form_action(&html)
        .ok_or_else(|| format!("no login form at {page_url} ({status}): {html}"))?;
    let action = page_url.join(&action).map_err(|e| e.to_string())?;
    let answer = client
        .post(action)
        .form(&[
            ("username", username),
            ("password", password),
            ("login", "Sign In"),
        ])
        .send()
        .await
        .map_err(|e| format!("login form: {e}"))?;
    let location = answer
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(location) = location.filter(|l| l.starts_with(redirect_uri)) else {
        let status = answer.status();
        let body = answer.text().await.unwrap_or_default();
        return Err(format!(
            "login did not redirect to {redirect_uri}: {status} {body}"
        ));
    };
    let url = url::Url::parse(&location).map_err(|e| e.to_string())?;
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    Ok(BrowserResult {
        code: param("code"),
        state: param("state"),
        redirected_to: url.clone(),
    })
}

/// The `action` of the page's first form, HTML entities decoded.
fn form_action(html: &str) -> Option<String> {
    let form = &html[html.find("<form")?..];
    let rest = &form[form.find("action=\"")? + 8..];
    let raw = &rest[..rest.find('"')?];
    Some(
        raw.replace("&amp;", "&")
            .replace("&#x2F;", "/")
            .replace("&#47;", "/")
            .replace("&quot;", "\"")
            .replace("&#39;", "'"),
    )
}

/// A request as API Gateway would hand it to the function.
pub fn request(method: Method, path: &str, token: Option<&str>, body: Body) -> Request {
    let mut builder = lambda_http::http::Request::builder()
        .method(method)
        .uri(path);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(body).expect("request")
}

/// A GET of `path` by the bearer of `token`, without a body.
pub fn get_request(path: &str, token: &str) -> Request {
    request(Method::GET, path, Some(token), Body::Empty)
}

/// `POST /files/presign` of `body` (filename, content type, size, sha256) by the bearer of
/// `token`.
pub fn presign_request(token: &str, body: &Value) -> Request {
    json_request(Method::POST, "/files/presign", Some(token), body)
}

/// The body of `POST /files/presign` for `data` named `filename`: its size and sha256 declared.
pub fn presign_body(filename: &str, content_type: &str, data: &[u8]) -> Value {
    use sha2::Digest as _;
    serde_json::json!({
        "filename": filename,
        "content_type": content_type,
        "size": data.len(),
        "sha256": hex::encode(sha2::Sha256::digest(data)),
    })
}

/// PUTs `data` to the presigned URL of `grant` (what `POST /files/presign` answers) with the
/// headers it names, as a browser does (which sets `Content-Length` from the body itself): the
/// storage's status and body.
pub async fn put_to_grant(grant: &Value, data: &[u8]) -> (reqwest::StatusCode, String) {
    let mut put = reqwest::Client::new().put(
        grant["upload"]["url"]
            .as_str()
            .expect("the grant's upload URL"),
    );
    for (name, value) in grant["upload"]["headers"]
        .as_object()
        .expect("the grant's upload headers")
    {
        if !name.eq_ignore_ascii_case("content-length") {
            put = put.header(name, value.as_str().expect("a header value"));
        }
    }
    let reply = put
        .body(data.to_vec())
        .send()
        .await
        .unwrap_or_else(|e| panic!("presigned PUT: {e}"));
    let status = reply.status();
    (status, reply.text().await.unwrap_or_default())
}

/// [`put_to_grant`], asserting that S3 took it.
pub async fn put_presigned(grant: &Value, data: &[u8]) {
    let (status, body) = put_to_grant(grant, data).await;
    assert!(status.is_success(), "presigned PUT: {status}: {body}");
}

/// A JSON request.
pub fn json_request(method: Method, path: &str, token: Option<&str>, body: &Value) -> Request {
    let mut req = request(method, path, token, Body::from(body.to_string()));
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("header"),
    );
    req
}

/// A multipart/form-data request carrying one `file` field.
pub fn multipart_request(
    path: &str,
    token: Option<&str>,
    filename: &str,
    content_type: &str,
    data: &[u8],
) -> Request {
    let disposition = format!("form-data; name=\"file\"; filename=\"{filename}\"");
    multipart_request_with(path, token, disposition.as_bytes(), content_type, data)
}

/// A multipart/form-data request whose one part has this raw Content-Disposition value.
pub fn multipart_request_with(
    path: &str,
    token: Option<&str>,
    disposition: &[u8],
    content_type: &str,
    data: &[u8],
) -> Request {
    let boundary = "mecapy-test-boundary-7d1f";
    let mut body = Vec::with_capacity(data.len() + disposition.len() + 256);
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: ").as_bytes());
    body.extend_from_slice(disposition);
    body.extend_from_slice(format!("\r\nContent-Type: {content_type}\r\n\r\n").as_bytes());
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut req = request(Method::POST, path, token, Body::from(body));
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        format!("multipart/form-data; boundary={boundary}")
            .parse()
            .expect("header"),
    );
    req
}

/// Asserts `response` is an RFC 9457 problem with `status` and a request id; returns its body.
pub fn assert_problem(response: &Response<Body>, status: lambda_http::http::StatusCode) -> Value {
    assert_eq!(
        response.status(),
        status,
        "{}",
        String::from_utf8_lossy(response.body().as_ref())
    );
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let body = body_json(response);
    assert!(
        body["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    body
}

/// Asserts `response` is a `201 Created`; returns its JSON body.
pub fn assert_created(response: &Response<Body>) -> Value {
    assert_eq!(
        response.status(),
        lambda_http::http::StatusCode::CREATED,
        "{:?}",
        response.body()
    );
    body_json(response)
}

/// The response body as JSON (panics with the body if it is not).
pub fn body_json(response: &Response<Body>) -> Value {
    let bytes: &[u8] = response.body().as_ref();
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "response is not JSON ({e}): {}",
            String::from_utf8_lossy(bytes)
        )
    })
}

/// The compute plumbing of one test: a jobs queue with its dead-letter queue fed by the test
/// bucket's REAL S3 notification (ObjectCreated, prefix `jobs/`, suffix `manifest.json`), and an
/// events queue.
pub struct ComputeQueues {
    pub sqs: aws_sdk_sqs::Client,
    pub jobs_url: String,
    pub dlq_url: String,
    pub events_url: String,
}

impl TestContext {
    /// Creates the queues and the bucket notification; messages become visible again after
    /// `visibility_seconds` and move to the DLQ after `max_receives` receives.
    pub async fn compute_queues(
        &self,
        max_receives: u32,
        visibility_seconds: u32,
    ) -> ComputeQueues {
        use aws_sdk_s3::types::{
            Event, FilterRule, FilterRuleName, NotificationConfiguration,
            NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
        };
        use aws_sdk_sqs::types::QueueAttributeName;
        let shared = sdk_config_at(&self.env["AWS_ENDPOINT_URL"], &self.env).await;
        let sqs = aws_sdk_sqs::Client::new(&shared);
        let create = |name: String, attrs: Vec<(QueueAttributeName, String)>| {
            let sqs = sqs.clone();
            async move { create_queue(&sqs, &name, attrs).await }
        };
        let base = &self.bucket;
        let dlq_url = create(format!("{base}-dlq"), vec![]).await;
        let dlq_arn = queue_arn(&sqs, &dlq_url).await;
        let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives.to_string()});
        let jobs_url = create(
            format!("{base}-jobs"),
            vec![
                (
                    QueueAttributeName::VisibilityTimeout,
                    visibility_seconds.to_string(),
                ),
                (QueueAttributeName::RedrivePolicy, redrive.to_string()),
            ],
        )
        .await;
        let events_url = self.events_queue(&sqs, &format!("{base}-events")).await;
        let jobs_arn = queue_arn(&sqs, &jobs_url).await;
        let rule = |name: FilterRuleName, value: &str| {
            FilterRule::builder().name(name).value(value).build()
        };
        let notification = NotificationConfiguration::builder()
            .queue_configurations(
                QueueConfiguration::builder()
                    .queue_arn(jobs_arn)
                    .events(Event::S3ObjectCreated)
                    .filter(
                        NotificationConfigurationFilter::builder()
                            .key(
                                S3KeyFilter::builder()
                                    .filter_rules(rule(FilterRuleName::Prefix, "jobs/"))
                                    .filter_rules(rule(FilterRuleName::Suffix, "manifest.json"))
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
                    .expect("queue configuration"),
            )
            .build();
        self.state
            .storage
            .client()
            .put_bucket_notification_configuration()
            .bucket(&self.bucket)
            .notification_configuration(notification)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot set the bucket notification: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
        ComputeQueues {
            sqs,
            jobs_url,
            dlq_url,
            events_url,
        }
    }
}

impl TestContext {
    /// An SQS client of LocalStack's, as the tests' queues need.
    pub async fn sqs_client(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&sdk_config_at(&self.env["AWS_ENDPOINT_URL"], &self.env).await)
    }

    /// The name of the test's queue for `purpose` (`events`, `uploads`, ...): unique to the
    /// test, as its bucket is.
    pub fn queue_name(&self, purpose: &str) -> String {
        format!("{}-{purpose}", self.bucket)
    }

    /// A queue `name` that receives every event of the test's bus (a rule matching `mecapy`):
    /// what a subscriber of the stack's bus sees, envelope and all. Its URL.
    pub async fn events_queue(&self, sqs: &aws_sdk_sqs::Client, name: &str) -> String {
        let pattern = serde_json::json!({"source": [mecapy_shared::events::SOURCE]});
        self.rule_to_queue(sqs, name, &self.bus, &pattern).await
    }

    /// A queue `name` receiving the test bucket's S3 "Object Created" events for the users'
    /// keys, as the stack's `UploadEventsQueue` does: the bucket sends its events to
    /// EventBridge (its other notifications kept), and a rule on the default bus matches them.
    pub async fn upload_events_queue(&self, sqs: &aws_sdk_sqs::Client, name: &str) -> String {
        use aws_sdk_s3::types::{EventBridgeConfiguration, NotificationConfiguration};
        let s3 = self.state.storage.client();
        let fail = |what: &str, e: String| -> ! {
            panic!("cannot {what} of bucket {} in LocalStack: {e}", self.bucket)
        };
        let now = s3
            .get_bucket_notification_configuration()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap_or_else(|e| {
                fail(
                    "read the notifications",
                    aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
                )
            });
        let notification = NotificationConfiguration::builder()
            .set_queue_configurations(now.queue_configurations)
            .event_bridge_configuration(EventBridgeConfiguration::builder().build())
            .build();
        s3.put_bucket_notification_configuration()
            .bucket(&self.bucket)
            .notification_configuration(notification)
            .send()
            .await
            .unwrap_or_else(|e| {
                fail(
                    "send the events to EventBridge",
                    aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
                )
            });
        let pattern = mecapy_shared::uploads::object_created_pattern(&self.bucket);
        self.rule_to_queue(sqs, name, "default", &pattern).await
    }

    /// A queue `name` receiving the test bus's CalculationFinished events, as the stack's
    /// `WebhooksQueue` does (the webhooks function's retries go there too). Its URL.
    pub async fn webhooks_queue(&self, sqs: &aws_sdk_sqs::Client, name: &str) -> String {
        let pattern = serde_json::json!({
            "source": [mecapy_shared::events::SOURCE],
            "detail-type": ["CalculationFinished"],
        });
        self.rule_to_queue(sqs, name, &self.bus, &pattern).await
    }

    /// A new queue `name` and a rule on `bus` sending the events matching `pattern` to it.
    async fn rule_to_queue(
        &self,
        sqs: &aws_sdk_sqs::Client,
        name: &str,
        bus: &str,
        pattern: &Value,
    ) -> String {
        let url = create_queue(sqs, name, vec![]).await;
        let arn = queue_arn(sqs, &url).await;
        let events = aws_sdk_eventbridge::Client::new(
            &sdk_config_at(&self.env["AWS_ENDPOINT_URL"], &self.env).await,
        );
        let fail = |what: &str, e: String| -> ! {
            panic!("cannot {what} on the event bus {bus} in LocalStack: {e}")
        };
        events
            .put_rule()
            .name(name)
            .event_bus_name(bus)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .unwrap_or_else(|e| {
                fail(
                    "create a rule",
                    aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string(),
                )
            });
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id("queue")
            .arn(arn)
            .build()
            .expect("target");
        events
            .put_targets()
            .rule(name)
            .event_bus_name(bus)
            .targets(target)
            .send()
            .await
            .unwrap_or_else(|e| {
                fail(
                    "add a target",
                    aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string(),
                )
            });
        url
    }
}

/// Sends `body` to the queue `url`.
pub async fn send_message(sqs: &aws_sdk_sqs::Client, url: &str, body: String) {
    sqs.send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .expect("send message");
}

/// Up to 10 messages of queue `url` as Lambda's SQS event source would hand them over.
pub async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    wait_seconds: i32,
) -> aws_lambda_events::event::sqs::SqsEvent {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait_seconds)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive from LocalStack SQS");
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    // As Lambda's event source mapping fills it in.
    let arn = if out.messages().is_empty() {
        String::new()
    } else {
        queue_arn(sqs, url).await
    };
    for m in out.messages() {
        let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
        record.event_source_arn = Some(arn.clone());
        record.event_source = Some("aws:sqs".into());
        record.message_id = m.message_id().map(str::to_string);
        record.receipt_handle = m.receipt_handle().map(str::to_string);
        record.body = m.body().map(str::to_string);
        if let Some(attrs) = m.attributes() {
            for (k, v) in attrs {
                record.attributes.insert(k.as_str().to_string(), v.clone());
            }
        }
        event.records.push(record);
    }
    event
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    use aws_sdk_sqs::types::QueueAttributeName;
    queue_attributes(sqs, url, &[QueueAttributeName::QueueArn])
        .await
        .remove(&QueueAttributeName::QueueArn)
        .unwrap_or_else(|| panic!("{url} has no ARN"))
}

/// The attributes `names` of queue `url`.
async fn queue_attributes(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    names: &[aws_sdk_sqs::types::QueueAttributeName],
) -> std::collections::HashMap<aws_sdk_sqs::types::QueueAttributeName, String> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .set_attribute_names(Some(names.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "attributes of {url}: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        })
        .attributes
        .unwrap_or_default()
}

impl ComputeQueues {
    /// Receives up to 10 messages (waiting up to `wait_seconds`) as the Lambda SQS event
    /// source would hand them to the function.
    pub async fn receive_batch(
        &self,
        wait_seconds: i32,
    ) -> aws_lambda_events::event::sqs::SqsEvent {
        self.receive_from(&self.jobs_url, wait_seconds).await
    }

    /// Receives until a batch carries `needle` (a job id) and returns it; panics after
    /// `within`. Batches without it (the bucket's `s3:TestEvent`) are acknowledged.
    pub async fn batch_with(
        &self,
        needle: &str,
        within: std::time::Duration,
    ) -> aws_lambda_events::event::sqs::SqsEvent {
        let deadline = std::time::Instant::now() + within;
        loop {
            let batch = self.receive_batch(1).await;
            if batch
                .records
                .iter()
                .any(|r| r.body.as_deref().unwrap_or("").contains(needle))
            {
                return batch;
            }
            let none = aws_lambda_events::event::sqs::SqsBatchResponse::default();
            self.acknowledge(&batch, &none).await;
            assert!(
                std::time::Instant::now() < deadline,
                "no message for {needle} within {within:?}"
            );
        }
    }

    /// How many messages queue `url` holds: visible, in flight and delayed.
    pub async fn depth(&self, url: &str) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let counts = [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
            A::ApproximateNumberOfMessagesDelayed,
        ];
        queue_attributes(&self.sqs, url, &counts)
            .await
            .values()
            .filter_map(|v| v.parse::<u64>().ok())
            .sum()
    }

    pub async fn receive_from(
        &self,
        url: &str,
        wait_seconds: i32,
    ) -> aws_lambda_events::event::sqs::SqsEvent {
        receive(&self.sqs, url, wait_seconds).await
    }

    /// Deletes the records the handler did not report as failed, as the event source does.
    pub async fn acknowledge(
        &self,
        event: &aws_lambda_events::event::sqs::SqsEvent,
        response: &aws_lambda_events::event::sqs::SqsBatchResponse,
    ) {
        for record in &event.records {
            let id = record.message_id.clone().unwrap_or_default();
            if response
                .batch_item_failures
                .iter()
                .any(|f| f.item_identifier == id)
            {
                continue;
            }
            if let Some(handle) = &record.receipt_handle {
                self.sqs
                    .delete_message()
                    .queue_url(&self.jobs_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .expect("delete message");
            }
        }
    }

    /// The events on the events queue (consumed) until one of `kind` about `subject` (its
    /// detail's `job_id` or `file_id`) has arrived, and whatever else follows within a second;
    /// sorted by `occurred_at`. Panics after `timeout`, naming what did arrive.
    pub async fn events_until(&self, kind: &str, subject: &str, timeout: Duration) -> Vec<Value> {
        let about =
            |e: &Value| e["detail"]["job_id"] == subject || e["detail"]["file_id"] == subject;
        let deadline = std::time::Instant::now() + timeout;
        let mut all: Vec<Value> = Vec::new();
        while !all.iter().any(|e| e["detail-type"] == kind && about(e)) {
            assert!(
                std::time::Instant::now() < deadline,
                "no {kind} event of {subject} on the bus within {timeout:?}; got {all:?}"
            );
            all.extend(self.drain_events().await);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        all.extend(self.drain_events().await);
        all.retain(about);
        all.sort_by(|a, b| {
            let at = |e: &Value| {
                e["detail"]["occurred_at"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            };
            at(a).cmp(&at(b))
        });
        all
    }

    /// The events on the events queue (consumed), as EventBridge delivers them: envelopes with
    /// `detail-type` and `detail`.
    pub async fn drain_events(&self) -> Vec<Value> {
        let mut all = Vec::new();
        loop {
            let batch = self.receive_from(&self.events_url, 0).await;
            if batch.records.is_empty() {
                return all;
            }
            for r in &batch.records {
                all.push(
                    serde_json::from_str(r.body.as_deref().unwrap_or("null"))
                        .unwrap_or(Value::Null),
                );
                if let Some(handle) = &r.receipt_handle {
                    let _ = self
                        .sqs
                        .delete_message()
                        .queue_url(&self.events_url)
                        .receipt_handle(handle)
                        .send()
                        .await;
                }
            }
        }
    }
}

/// A TCP relay in front of a real service (PostgreSQL) that a test stops and starts: stopping
/// closes every relayed connection and refuses new ones (the port is closed), as an outage does
/// for the clients behind it, without disturbing the other tests that use the service directly.
pub struct TcpRelay {
    pub port: u16,
    target: String,
    accept: Option<tokio::task::JoinHandle<()>>,
}

impl TcpRelay {
    /// Starts relaying a new loopback port to `target` (`host:port`).
    pub async fn start(target: &str) -> TcpRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a relay port");
        let port = listener.local_addr().expect("relay address").port();
        let mut relay = TcpRelay {
            port,
            target: target.to_string(),
            accept: None,
        };
        relay.serve(listener);
        relay
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let target = self.target.clone();
        self.accept = Some(tokio::spawn(async move {
            // Dropped with this task: every relayed connection is aborted with it.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    /// The outage: open connections are cut, new ones refused.
    pub async fn stop(&mut self) {
        if let Some(task) = self.accept.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// The service is back, on the same port.
    pub async fn resume(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("rebind the relay port");
        self.serve(listener);
    }

    /// `url` (a `postgres://` URL) pointed at the relay.
    pub fn url_through(&self, url: &str) -> String {
        let mut url = url::Url::parse(url).expect("a URL");
        url.set_host(Some("127.0.0.1")).expect("host");
        url.set_port(Some(self.port)).expect("port");
        url.to_string()
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        if let Some(task) = self.accept.take() {
            task.abort();
        }
    }
}
