//! The state a function builds once per cold start: configuration, pool, S3, OIDC and the key cache.

use std::sync::Arc;

use lambda_http::Request;

use crate::auth::{self, Claims, OidcClient, TokenValidator};
use crate::bus::EventBus;
use crate::config::{Config, ConfigError};
use crate::db::{self, users::User, DbError, Pool};
use crate::http::{ApiError, RequestMeta};
use crate::storage::Storage;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Cheap to clone: every field is a handle.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Pool,
    pub storage: Storage,
    pub oidc: Arc<OidcClient>,
    pub tokens: Arc<TokenValidator>,
    /// The stack's event bus (`EVENT_BUS_NAME`); without one, events stay in the outbox.
    pub bus: Option<EventBus>,
    /// The AWS SDK's configuration, loaded once per cold start (see [`AppState::aws`]).
    pub sdk: Option<aws_config::SdkConfig>,
}

impl AppState {
    pub async fn from_env() -> Result<Self, StartupError> {
        Self::new(Config::from_env()?).await
    }

    /// Builds clients without contacting any service: a cold start never waits on one.
    pub async fn new(config: Config) -> Result<Self, StartupError> {
        let sdk = aws_config::load_from_env().await;
        let storage = Storage::new(&sdk, &config.upload_bucket);
        let bus = config
            .event_bus_name
            .as_ref()
            .map(|name| EventBus::new(&sdk, name));
        let mut state = Self::with_storage(config, storage)?.with_bus(bus);
        state.sdk = Some(sdk);
        Ok(state)
    }

    /// The AWS SDK configuration for a function's other clients (SQS, ECS): the one loaded at
    /// start-up, or loaded now for a state built with [`AppState::with_storage`].
    pub async fn aws(&self) -> aws_config::SdkConfig {
        match &self.sdk {
            Some(sdk) => sdk.clone(),
            None => aws_config::load_from_env().await,
        }
    }

    /// With an S3 client built by the caller (tests point it at their own endpoint).
    pub fn with_storage(config: Config, storage: Storage) -> Result<Self, StartupError> {
        let db = db::pool(&config.database()?, 4)?;
        let oidc = Arc::new(OidcClient::new(config.oidc.clone()));
        let tokens = Arc::new(TokenValidator::new(oidc.clone()));
        Ok(AppState {
            config: Arc::new(config),
            db,
            storage,
            oidc,
            tokens,
            bus: None,
            sdk: None,
        })
    }

    pub fn with_bus(mut self, bus: Option<EventBus>) -> Self {
        self.bus = bus;
        self
    }

    /// Sends the outbox's due events to the bus. Never fails the caller: what could not be sent
    /// stays in the outbox for the next drain (the next request, or the dispatcher's sweep).
    pub async fn publish_events(&self) {
        let Some(bus) = &self.bus else { return };
        match bus.drain(&self.db).await {
            Ok(d) if d.failed > 0 => {
                tracing::warn!(
                    published = d.published,
                    failed = d.failed,
                    "some events not published yet"
                )
            }
            Ok(d) if d.published > 0 => {
                tracing::debug!(published = d.published, "events published")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "events not published (outbox unreachable)"),
        }
    }

    /// The bearer token's claims (401 when missing or invalid).
    pub async fn authenticate(&self, req: &Request) -> Result<Claims, ApiError> {
        let header = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = auth::bearer_token(header)?;
        let claims = self.tokens.validate(token).await?;
        if let Some(meta) = RequestMeta::of(req) {
            meta.set_user(&claims.sub);
        }
        Ok(claims)
    }

    /// The authenticated caller's user row, created on first sight.
    pub async fn current_user(&self, req: &Request) -> Result<User, ApiError> {
        let claims = self.authenticate(req).await?;
        let client = self.db.get().await.map_err(DbError::from)?;
        let user = db::users::ensure(&**client, &claims).await?;
        if let Some(meta) = RequestMeta::of(req) {
            meta.set_user(user.id.to_string());
        }
        Ok(user)
    }
}
