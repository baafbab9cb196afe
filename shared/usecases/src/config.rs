//! Every environment variable the functions read, read once at cold start and typed.
//! A missing or malformed variable fails start-up with its name.

use std::time::Duration;

use crate::db::tls::{self, DatabaseConfig};
use crate::webhooks::TargetPolicy;

pub use mecapy_adapters::ConfigError;

/// The identity provider the API trusts (Keycloak in production, the local provider here).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Exact `iss` of the tokens; discovery is read from `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// Required in the token's `aud`.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Shortest interval between two JWKS fetches triggered by an unknown `kid`.
    pub jwks_refetch_interval: Duration,
}

/// What the HTTP edge itself reads: every HTTP function has it.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Origins allowed by CORS (`ALLOWED_ORIGINS`); requests from other origins get no CORS
    /// headers.
    pub allowed_origins: Vec<String>,
    /// Largest JSON body accepted by any route (`MAX_JSON_BYTES`).
    pub max_json_bytes: usize,
}

/// The login flow's settings: `login` issues the signed `state`, `callback` verifies it.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// Redirect URIs `login` may send the browser back to; the first is the default
    /// (`ALLOWED_REDIRECT_URIS`).
    pub allowed_redirect_uris: Vec<String>,
    /// Key that signs the login `state` so `callback` can verify it without storage
    /// (`STATE_SECRET`, at least 32 bytes).
    pub state_secret: Vec<u8>,
    /// How long a login attempt (`state`) stays valid (`LOGIN_TTL_SECONDS`).
    pub ttl: Duration,
}

/// Reads typed variables through a lookup; every error names its variable.
struct Env<L>(L);

impl<L: Fn(&str) -> Option<String>> Env<L> {
    /// The trimmed value, `None` when unset or blank.
    fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    fn number(&self, name: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
                name,
                reason: format!("{v:?} is not a whole number"),
            }),
        }
    }

    fn seconds(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.number(name, default).map(Duration::from_secs)
    }

    /// A comma-separated list, at least one item.
    fn list(&self, name: &'static str) -> Result<Vec<String>, ConfigError> {
        let items: Vec<String> = self
            .required(name)?
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if items.is_empty() {
            return Err(ConfigError::Invalid {
                name,
                reason: "the list is empty".into(),
            });
        }
        Ok(items)
    }

    /// `true` or `false`, `false` when unset.
    fn flag(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.optional(name).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ConfigError::Invalid {
                name,
                reason: format!("{other:?} is neither true nor false"),
            }),
        }
    }

    /// A secret of at least 32 bytes.
    fn secret(&self, name: &'static str) -> Result<Option<Vec<u8>>, ConfigError> {
        let secret = self.optional(name).map(String::into_bytes);
        if secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(ConfigError::Invalid {
                name,
                reason: "must be at least 32 bytes".into(),
            });
        }
        Ok(secret)
    }

    fn url(&self, name: &'static str, value: &str) -> Result<(), ConfigError> {
        url::Url::parse(value)
            .map(drop)
            .map_err(|e| ConfigError::Invalid {
                name,
                reason: format!("{value:?}: {e}"),
            })
    }
}

impl EdgeConfig {
    /// Every variable [`EdgeConfig::from_lookup`] reads.
    pub const VARIABLES: &'static [&'static str] = &["ALLOWED_ORIGINS", "MAX_JSON_BYTES"];

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        Ok(EdgeConfig {
            allowed_origins: env.list("ALLOWED_ORIGINS")?,
            max_json_bytes: env.number("MAX_JSON_BYTES", 256 * 1024)? as usize,
        })
    }
}

impl OidcConfig {
    /// Every variable [`OidcConfig::from_lookup`] reads.
    pub const VARIABLES: &'static [&'static str] = &[
        "OIDC_ISSUER",
        "OIDC_CLIENT_ID",
        "OIDC_AUDIENCE",
        "OIDC_LEEWAY_SECONDS",
        "JWKS_REFETCH_INTERVAL_SECONDS",
    ];

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        let issuer = env
            .required("OIDC_ISSUER")?
            .trim_end_matches('/')
            .to_string();
        env.url("OIDC_ISSUER", &issuer)?;
        let client_id = env.required("OIDC_CLIENT_ID")?;
        Ok(OidcConfig {
            issuer,
            audience: env
                .optional("OIDC_AUDIENCE")
                .unwrap_or_else(|| client_id.clone()),
            client_id,
            leeway: env.seconds("OIDC_LEEWAY_SECONDS", 30)?,
            jwks_refetch_interval: env.seconds("JWKS_REFETCH_INTERVAL_SECONDS", 10)?,
        })
    }
}

impl LoginConfig {
    /// Every variable [`LoginConfig::from_lookup`] reads.
    pub const VARIABLES: &'static [&'static str] =
        &["ALLOWED_REDIRECT_URIS", "STATE_SECRET", "LOGIN_TTL_SECONDS"];

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        let allowed_redirect_uris = env.list("ALLOWED_REDIRECT_URIS")?;
        for uri in &allowed_redirect_uris {
            env.url("ALLOWED_REDIRECT_URIS", uri)?;
        }
        Ok(LoginConfig {
            allowed_redirect_uris,
            state_secret: env
                .secret("STATE_SECRET")?
                .ok_or(ConfigError::Missing("STATE_SECRET"))?,
            ttl: env.seconds("LOGIN_TTL_SECONDS", 600)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`, with its `sslmode` and `sslrootcert` ([`Config::database`] reads it).
    pub database_url: String,
    /// `PGSSLROOTCERT`: the database's CA file when the URL names none.
    pub database_root_cert: Option<String>,
    /// `DATABASE_CA_CERT`: the database's CA as PEM text.
    pub database_ca_cert: Option<String>,
    pub upload_bucket: String,
    /// Largest file accepted through `POST /files` (the body must stay under Lambda's 6 MB).
    pub max_upload_bytes: u64,
    /// Largest file accepted through a presigned upload.
    pub max_presigned_bytes: u64,
    /// Lifetime of presigned PUT and GET URLs.
    pub presign_ttl: Duration,
    /// Largest code a job may submit.
    pub max_code_bytes: usize,
    /// The stack's EventBridge bus (`EVENT_BUS_NAME`): where the outbox's events are published.
    pub event_bus_name: Option<String>,
    /// The compute queue's `maxReceiveCount`: on the last receive a failing job is marked `error`
    /// before its message moves to the dead-letter queue.
    pub max_receives: u32,
    /// Image of the `python` tool when set (`COMPUTE_IMAGE`), instead of the tools table's.
    pub compute_image: Option<String>,
    /// compute-dispatch: a failed record is delivered again after `retry_base * 2^(n-1)`,
    /// at most `retry_max` (`RETRY_BASE_SECONDS`, `RETRY_MAX_SECONDS`).
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// compute-dispatch: time a dispatcher has, beyond a job's own limit and the sandbox's
    /// grace, to stage its files in and out (`DISPATCH_LEASE_MARGIN_SECONDS`). A job's lease is
    /// its limit + the grace + this; a job `running` past its lease was left by a dispatcher that
    /// died.
    pub dispatch_lease_margin: Duration,
    /// compute-dispatch: records of a batch run at once (`DISPATCH_CONCURRENCY`; none: two per
    /// engine CPU, see `sandbox::default_concurrency`).
    pub dispatch_concurrency: Option<usize>,
    /// compute-dispatch: claims of one job before it is given up as `error` when its
    /// dispatcher keeps dying (`MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// compute-dispatch: the compute queue, where the sweep puts back the jobs it requeues
    /// (`COMPUTE_QUEUE_URL`; none: the sweep only reports them).
    pub compute_queue_url: Option<String>,
    /// compute-dispatch: a job `queued` with no change for this long has lost its message
    /// (e.g. it went to the dead-letter queue while the database was down); the sweep sends a
    /// new one (`SWEEP_IDLE_QUEUED_SECONDS`).
    pub sweep_idle_queued: Duration,
    /// compute-dispatch: within one scheduled invocation (every minute), the sweep repeats this
    /// often (`SWEEP_INTERVAL_SECONDS`, 5 to 60).
    pub sweep_interval: Duration,
    /// compute-dispatch: where jobs run: none for the Docker engine (`COMPUTE_RUNTIME` unset or
    /// `docker`), else Amazon ECS (`COMPUTE_RUNTIME=ecs`).
    pub ecs: Option<EcsConfig>,
    /// Signed webhooks: the key each user's signing secret is derived from (`WEBHOOK_SECRET`,
    /// at least 32 bytes; none: `callback_url` is refused).
    pub webhook_secret: Option<Vec<u8>>,
    /// Where webhooks may go: https and public addresses only, unless the development settings
    /// `WEBHOOK_ALLOW_HTTP=true` and `WEBHOOK_ALLOWED_PRIVATE` (a comma-separated list of IP
    /// addresses, e.g. the docker bridge's 172.17.0.1) say otherwise.
    pub webhook_policy: TargetPolicy,
    /// webhooks: the queue a failed delivery's retry is put on, delayed by its backoff
    /// (`WEBHOOKS_QUEUE_URL`; none: the retry waits for the sweep).
    pub webhooks_queue_url: Option<String>,
}

/// Jobs on Amazon ECS (`COMPUTE_RUNTIME=ecs`).
#[derive(Debug, Clone)]
pub struct EcsConfig {
    /// `ECS_CLUSTER`.
    pub cluster: String,
    /// The python tool's task definition, family or ARN (`ECS_TASK_DEFINITION`).
    pub task_definition: String,
    /// How long a started task may wait for an instance (the capacity provider scales out from
    /// zero) before its lease runs out (`ECS_START_ALLOWANCE_SECONDS`).
    pub start_allowance: Duration,
}

fn database_config(
    url: &str,
    root_cert: Option<&str>,
    ca_cert: Option<&str>,
) -> Result<DatabaseConfig, ConfigError> {
    DatabaseConfig::from_lookup(|name| {
        match name {
            tls::URL_VAR => Some(url),
            tls::ROOT_CERT_VAR => root_cert,
            tls::CA_VAR => ca_cert,
            _ => None,
        }
        .map(str::to_string)
    })
}

/// Lambda's synchronous invocation payload limit; multipart and base64 overhead must fit under it.
pub const LAMBDA_PAYLOAD_LIMIT: u64 = 6 * 1024 * 1024;

impl Config {
    /// A `callback_url` as this deployment accepts it ([`crate::webhooks::accept_callback`]).
    pub async fn accept_callback(
        &self,
        raw: &str,
        resolve: bool,
    ) -> Result<String, mecapy_domain::error::DomainError> {
        let secret = self.webhook_secret.as_deref();
        crate::webhooks::accept_callback(secret, &self.webhook_policy, raw, resolve).await
    }

    /// Every variable [`Config::from_lookup`] reads.
    pub const VARIABLES: &'static [&'static str] = &[
        tls::URL_VAR,
        tls::ROOT_CERT_VAR,
        tls::CA_VAR,
        "UPLOAD_BUCKET",
        "MAX_UPLOAD_BYTES",
        "MAX_PRESIGNED_BYTES",
        "PRESIGN_TTL_SECONDS",
        "MAX_CODE_BYTES",
        "EVENT_BUS_NAME",
        "MAX_RECEIVES",
        "COMPUTE_IMAGE",
        "RETRY_BASE_SECONDS",
        "RETRY_MAX_SECONDS",
        "DISPATCH_LEASE_MARGIN_SECONDS",
        "DISPATCH_CONCURRENCY",
        "MAX_ATTEMPTS",
        "COMPUTE_QUEUE_URL",
        "SWEEP_IDLE_QUEUED_SECONDS",
        "SWEEP_INTERVAL_SECONDS",
        "COMPUTE_RUNTIME",
        "ECS_CLUSTER",
        "ECS_TASK_DEFINITION",
        "ECS_START_ALLOWANCE_SECONDS",
        "WEBHOOK_SECRET",
        "WEBHOOK_ALLOW_HTTP",
        "WEBHOOK_ALLOWED_PRIVATE",
        "WEBHOOKS_QUEUE_URL",
    ];

    /// How to reach PostgreSQL: the URL without `sslmode`/`sslrootcert`, and the TLS connector.
    pub fn database(&self) -> Result<DatabaseConfig, ConfigError> {
        database_config(
            &self.database_url,
            self.database_root_cert.as_deref(),
            self.database_ca_cert.as_deref(),
        )
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests can supply their own values.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(lookup);

        let max_upload_bytes = env.number("MAX_UPLOAD_BYTES", 4 * 1024 * 1024)?;
        // Multipart framing and API Gateway's base64 encoding must still fit in the payload.
        if max_upload_bytes == 0 || max_upload_bytes > LAMBDA_PAYLOAD_LIMIT * 3 / 4 - 64 * 1024 {
            return Err(ConfigError::Invalid {
                name: "MAX_UPLOAD_BYTES",
                reason: format!(
                    "{max_upload_bytes} must be between 1 and {} (Lambda's payload limit, base64-encoded)",
                    LAMBDA_PAYLOAD_LIMIT * 3 / 4 - 64 * 1024
                ),
            });
        }

        // sslmode, the CA file and text: a mistake fails start-up, not the first query.
        let database_url = env.required("DATABASE_URL")?;
        let database_root_cert = env.optional(tls::ROOT_CERT_VAR);
        let database_ca_cert = env.optional(tls::CA_VAR);
        database_config(
            &database_url,
            database_root_cert.as_deref(),
            database_ca_cert.as_deref(),
        )?;

        let webhook_policy = TargetPolicy {
            allow_http: env.flag("WEBHOOK_ALLOW_HTTP")?,
            allowed_private: env
                .optional("WEBHOOK_ALLOWED_PRIVATE")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<std::net::IpAddr>()
                        .map_err(|_| ConfigError::Invalid {
                            name: "WEBHOOK_ALLOWED_PRIVATE",
                            reason: format!("{s:?} is not an IP address"),
                        })
                })
                .collect::<Result<_, _>>()?,
        };

        Ok(Config {
            database_url,
            database_root_cert,
            database_ca_cert,
            upload_bucket: env.required("UPLOAD_BUCKET")?,
            max_upload_bytes,
            max_presigned_bytes: env.number("MAX_PRESIGNED_BYTES", 5 * 1024 * 1024 * 1024)?,
            presign_ttl: env.seconds("PRESIGN_TTL_SECONDS", 900)?,
            max_code_bytes: env.number("MAX_CODE_BYTES", 128 * 1024)? as usize,
            event_bus_name: env.optional("EVENT_BUS_NAME"),
            max_receives: env.number("MAX_RECEIVES", 3)?.clamp(1, 1000) as u32,
            compute_image: env.optional("COMPUTE_IMAGE"),
            retry_base: Duration::from_secs(env.number("RETRY_BASE_SECONDS", 10)?.max(1)),
            retry_max: Duration::from_secs(env.number("RETRY_MAX_SECONDS", 300)?.clamp(1, 43_199)),
            dispatch_lease_margin: Duration::from_secs(
                env.number("DISPATCH_LEASE_MARGIN_SECONDS", 60)?.max(5),
            ),
            dispatch_concurrency: match env.number("DISPATCH_CONCURRENCY", 0)? {
                0 => None,
                n => Some(n.min(64) as usize),
            },
            max_attempts: env.number("MAX_ATTEMPTS", 3)?.clamp(1, 100) as u32,
            compute_queue_url: env.optional("COMPUTE_QUEUE_URL"),
            sweep_idle_queued: Duration::from_secs(
                env.number("SWEEP_IDLE_QUEUED_SECONDS", 120)?.max(10),
            ),
            sweep_interval: Duration::from_secs(
                env.number("SWEEP_INTERVAL_SECONDS", 60)?.clamp(5, 60),
            ),
            ecs: match env.optional("COMPUTE_RUNTIME").as_deref() {
                None | Some("docker") => None,
                Some("ecs") => Some(EcsConfig {
                    cluster: env.required("ECS_CLUSTER")?,
                    task_definition: env.required("ECS_TASK_DEFINITION")?,
                    start_allowance: Duration::from_secs(
                        env.number("ECS_START_ALLOWANCE_SECONDS", 600)?
                            .clamp(30, 3600),
                    ),
                }),
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        name: "COMPUTE_RUNTIME",
                        reason: format!("{other:?} is neither docker nor ecs"),
                    })
                }
            },
            webhook_secret: env.secret("WEBHOOK_SECRET")?,
            webhook_policy,
            webhooks_queue_url: env.optional("WEBHOOKS_QUEUE_URL"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn base() -> HashMap<&'static str, String> {
        HashMap::from([
            ("DATABASE_URL", "postgres://u:p@127.0.0.1/db".to_string()),
            ("UPLOAD_BUCKET", "b".to_string()),
            (
                "OIDC_ISSUER",
                "http://127.0.0.1:8180/realms/mecapy/".to_string(),
            ),
            ("OIDC_CLIENT_ID", "mecapy-api".to_string()),
            ("ALLOWED_ORIGINS", "http://localhost:3000".to_string()),
            (
                "ALLOWED_REDIRECT_URIS",
                "http://localhost:3000/cb, http://x/cb".to_string(),
            ),
            ("STATE_SECRET", "x".repeat(32)),
        ])
    }

    fn load(vars: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn webhooks_are_off_and_strict_by_default() {
        let config = load(&base()).unwrap();
        assert_eq!(config.webhook_secret, None);
        assert_eq!(config.webhook_policy, TargetPolicy::default());

        let mut vars = base();
        vars.insert("WEBHOOK_SECRET", "w".repeat(32));
        vars.insert("WEBHOOK_ALLOW_HTTP", "true".into());
        vars.insert("WEBHOOK_ALLOWED_PRIVATE", " 172.17.0.1, ::1 ".into());
        let config = load(&vars).unwrap();
        assert_eq!(config.webhook_secret, Some(b"w".repeat(32)));
        assert!(config.webhook_policy.allow_http);
        assert_eq!(
            config.webhook_policy.allowed_private,
            vec![
                "172.17.0.1".parse::<std::net::IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );

        for (name, value) in [
            ("WEBHOOK_SECRET", "short"),
            ("WEBHOOK_ALLOW_HTTP", "yes"),
            ("WEBHOOK_ALLOWED_PRIVATE", "172.17.0.1,docker-host"),
        ] {
            let mut vars = base();
            vars.insert(name, value.into());
            let err = load(&vars).unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn complete_environment_loads_with_defaults() {
        let cfg = load(&base()).unwrap();
        let oidc = OidcConfig::from_lookup(|k| base().get(k).cloned()).unwrap();
        assert_eq!(oidc.issuer, "http://127.0.0.1:8180/realms/mecapy");
        assert_eq!(oidc.audience, "mecapy-api");
        let login = LoginConfig::from_lookup(|k| base().get(k).cloned()).unwrap();
        assert_eq!(login.allowed_redirect_uris.len(), 2);
        assert_eq!(login.ttl, Duration::from_secs(600));
        assert_eq!(cfg.max_upload_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn each_section_reads_only_its_own_variables() {
        // api-docs: the edge's two variables, nothing else.
        let only = |name: &str, value: &str| {
            let (name, value) = (name.to_string(), value.to_string());
            move |k: &str| (k == name).then(|| value.clone())
        };
        let edge = EdgeConfig::from_lookup(only("ALLOWED_ORIGINS", "http://a, http://b")).unwrap();
        assert_eq!(edge.allowed_origins, ["http://a", "http://b"]);
        assert_eq!(edge.max_json_bytes, 256 * 1024);
        let err = EdgeConfig::from_lookup(|_| None).unwrap_err().to_string();
        assert!(err.contains("ALLOWED_ORIGINS"), "{err}");

        // The functions with a database need no login, identity provider or CORS settings
        // (the queue consumers have none); login names what it lacks.
        let mut vars = base();
        for name in [
            "STATE_SECRET",
            "ALLOWED_REDIRECT_URIS",
            "OIDC_ISSUER",
            "OIDC_CLIENT_ID",
            "ALLOWED_ORIGINS",
        ] {
            vars.remove(name);
        }
        assert!(load(&vars).is_ok());
        let err = OidcConfig::from_lookup(|k| vars.get(k).cloned())
            .unwrap_err()
            .to_string();
        assert!(err.contains("OIDC_ISSUER"), "{err}");
        let err = LoginConfig::from_lookup(|k| vars.get(k).cloned())
            .unwrap_err()
            .to_string();
        assert!(err.contains("ALLOWED_REDIRECT_URIS"), "{err}");
        vars.insert("ALLOWED_REDIRECT_URIS", "http://x/cb".into());
        let err = LoginConfig::from_lookup(|k| vars.get(k).cloned())
            .unwrap_err()
            .to_string();
        assert!(err.contains("STATE_SECRET"), "{err}");
    }

    /// The names a section looks up, read from a complete environment.
    fn looked_up(read: impl Fn(&dyn Fn(&str) -> Option<String>)) -> Vec<String> {
        let mut vars = base();
        vars.insert("COMPUTE_RUNTIME", "ecs".into());
        vars.insert("ECS_CLUSTER", "jobs".into());
        vars.insert("ECS_TASK_DEFINITION", "python".into());
        let seen = std::cell::RefCell::new(Vec::new());
        read(&|name: &str| {
            seen.borrow_mut().push(name.to_string());
            vars.get(name).cloned()
        });
        let mut seen = seen.into_inner();
        seen.sort();
        seen.dedup();
        seen
    }

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn each_section_lists_the_variables_it_reads() {
        assert_eq!(
            looked_up(|l| drop(Config::from_lookup(l).unwrap())),
            sorted(Config::VARIABLES)
        );
        assert_eq!(
            looked_up(|l| drop(EdgeConfig::from_lookup(l).unwrap())),
            sorted(EdgeConfig::VARIABLES)
        );
        assert_eq!(
            looked_up(|l| drop(OidcConfig::from_lookup(l).unwrap())),
            sorted(OidcConfig::VARIABLES)
        );
        assert_eq!(
            looked_up(|l| drop(LoginConfig::from_lookup(l).unwrap())),
            sorted(LoginConfig::VARIABLES)
        );
    }

    #[test]
    fn missing_variable_is_named() {
        let mut vars = base();
        vars.remove("DATABASE_URL");
        let err = load(&vars).unwrap_err().to_string();
        assert!(err.contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn malformed_sslmode_or_ca_is_named() {
        let mut vars = base();
        vars.insert(
            "DATABASE_URL",
            "postgres://u:p@127.0.0.1/db?sslmode=verify".into(),
        );
        let err = load(&vars).unwrap_err().to_string();
        assert!(
            err.contains("DATABASE_URL") && err.contains("verify-full"),
            "{err}"
        );

        let mut vars = base();
        vars.insert("DATABASE_CA_CERT", "-----BEGIN nothing".into());
        let err = load(&vars).unwrap_err().to_string();
        assert!(err.contains("DATABASE_CA_CERT"), "{err}");
    }

    #[test]
    fn upload_limit_above_lambda_payload_is_refused() {
        let mut vars = base();
        vars.insert("MAX_UPLOAD_BYTES", (6 * 1024 * 1024).to_string());
        let err = load(&vars).unwrap_err().to_string();
        assert!(err.contains("MAX_UPLOAD_BYTES"), "{err}");
    }

    #[test]
    fn short_state_secret_is_refused() {
        let mut vars = base();
        vars.insert("STATE_SECRET", "short".into());
        assert!(LoginConfig::from_lookup(|k| vars.get(k).cloned())
            .unwrap_err()
            .to_string()
            .contains("STATE_SECRET"));
    }

    #[test]
    fn malformed_number_is_named() {
        let mut vars = base();
        vars.insert("PRESIGN_TTL_SECONDS", "soon".into());
        assert!(load(&vars)
            .unwrap_err()
            .to_string()
            .contains("PRESIGN_TTL_SECONDS"));
    }

    #[test]
    fn the_compute_runtime_is_docker_unless_ecs_is_configured_whole() {
        let mut vars = base();
        assert!(load(&vars).unwrap().ecs.is_none());
        vars.insert("COMPUTE_RUNTIME", "docker".into());
        assert!(load(&vars).unwrap().ecs.is_none());
        vars.insert("COMPUTE_RUNTIME", "ecs".into());
        let err = load(&vars).unwrap_err().to_string();
        assert!(err.contains("ECS_CLUSTER"), "{err}");
        vars.insert("ECS_CLUSTER", "jobs".into());
        vars.insert("ECS_TASK_DEFINITION", "mecapy-python".into());
        let ecs = load(&vars).unwrap().ecs.expect("ECS");
        assert_eq!(
            (ecs.cluster.as_str(), ecs.task_definition.as_str()),
            ("jobs", "mecapy-python")
        );
        assert_eq!(ecs.start_allowance, Duration::from_secs(600));
        vars.insert("COMPUTE_RUNTIME", "kubernetes".into());
        let err = load(&vars).unwrap_err().to_string();
        assert!(err.contains("COMPUTE_RUNTIME"), "{err}");
    }
}
