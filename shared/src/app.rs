//! The state an API function builds once per cold start: the use cases' [`Context`] (the
//! configuration, the pool, S3, the bus), and the edge's own: its CORS and body settings, the
//! OIDC client, the key cache and, for `callback`, the login flow's settings. Queue consumers
//! build a [`Context`] alone.

use std::convert::Infallible;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use lambda_http::{Body, Request, Response};
use mecapy_usecases::config::{EdgeConfig, LoginConfig, OidcConfig};
pub use mecapy_usecases::{Context, StartupError};

use crate::auth::{self, Claims, OidcClient, TokenValidator};
use crate::db::{self, users::User, DbError};
use crate::http::{ApiError, Edge, RequestMeta};

/// Cheap to clone: every field is a handle. Dereferences to its [`Context`].
#[derive(Clone)]
pub struct AppState {
    pub context: Context,
    /// What the edge reads (CORS, the JSON body limit).
    pub edge: Arc<EdgeConfig>,
    pub oidc: Arc<OidcClient>,
    pub tokens: Arc<TokenValidator>,
    /// The login flow's settings, for the one function with a database that needs them
    /// (`callback`, see [`AppState::with_login`]).
    pub login: Option<Arc<LoginConfig>>,
}

impl Deref for AppState {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.context
    }
}

impl DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut Context {
        &mut self.context
    }
}

impl AppState {
    pub async fn from_env() -> Result<Self, StartupError> {
        let edge = EdgeConfig::from_env()?;
        let oidc = OidcConfig::from_env()?;
        Ok(Self::of(Context::from_env().await?, edge, oidc))
    }

    /// The edge's part around a context: its settings and the identity provider it trusts.
    pub fn of(context: Context, edge: EdgeConfig, oidc: OidcConfig) -> Self {
        let oidc = Arc::new(OidcClient::new(oidc));
        let tokens = Arc::new(TokenValidator::new(oidc.clone()));
        AppState {
            context,
            edge: Arc::new(edge),
            oidc,
            tokens,
            login: None,
        }
    }

    /// A state whose context is `context` and whose edge is this one's (tests change the
    /// configuration or a client).
    pub fn with_context(&self, context: Context) -> Self {
        AppState {
            context,
            ..self.clone()
        }
    }

    pub fn with_bus(mut self, bus: Option<crate::bus::EventBus>) -> Self {
        self.context = self.context.with_bus(bus);
        self
    }

    pub fn with_login(mut self, login: LoginConfig) -> Self {
        self.login = Some(Arc::new(login));
        self
    }

    /// The login flow's settings; a 500 for a function built without them.
    pub fn login(&self) -> Result<&LoginConfig, ApiError> {
        self.login
            .as_deref()
            .ok_or_else(|| ApiError::Internal("this function has no login configuration".into()))
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

impl Edge for AppState {
    fn edge(&self) -> &EdgeConfig {
        &self.edge
    }
}

/// An API function's whole `main`: its telemetry, its state from the environment (once per cold
/// start) and the Lambda runtime calling `handler` for each request.
pub async fn run_api<F, Fut>(service: &'static str, handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(AppState, Request) -> Fut + Send,
    Fut: Future<Output = Result<Response<Body>, Infallible>> + Send,
{
    crate::telemetry::init(service);
    let state = AppState::from_env().await?;
    crate::http::run_with(state, handler).await
}
