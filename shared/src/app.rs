//! The state a function builds once per cold start: configuration, pool, S3, OIDC and the key cache.

use std::sync::Arc;

use lambda_http::Request;

use crate::auth::{self, Claims, OidcClient, TokenValidator};
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
}

impl AppState {
    pub async fn from_env() -> Result<Self, StartupError> {
        Self::new(Config::from_env()?).await
    }

    /// Builds clients without contacting any service: a cold start never waits on one.
    pub async fn new(config: Config) -> Result<Self, StartupError> {
        let storage = Storage::from_env(&config.upload_bucket).await;
        Self::with_storage(config, storage)
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
        })
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
