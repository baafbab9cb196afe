//! `POST /auth/login`: starts an authorization-code + PKCE login, as the seed's sequence diagram
//! does: the verifier and its S256 challenge are made here, the browser goes to the provider.

use std::convert::Infallible;
use std::sync::Arc;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use mecapy_shared::api::{LoginRequest, LoginResponse};
use mecapy_shared::auth::{pkce, state as login_state, OidcClient};
use mecapy_shared::config::{ConfigError, EdgeConfig, LoginConfig, OidcConfig};
use mecapy_shared::http::{self, ApiError, Edge};

/// Scopes asked of the provider: the profile feeds the user row.
pub const SCOPES: &str = "openid profile email";

/// What `login` builds at cold start: no database, no object storage, no bus. It reads only
/// the edge's, the identity provider's and the login flow's variables.
#[derive(Clone)]
pub struct LoginState {
    pub edge: Arc<EdgeConfig>,
    pub login: Arc<LoginConfig>,
    pub oidc: Arc<OidcClient>,
}

impl LoginState {
    pub fn new(edge: EdgeConfig, login: LoginConfig, oidc: Arc<OidcClient>) -> Self {
        LoginState {
            edge: Arc::new(edge),
            login: Arc::new(login),
            oidc,
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::new(
            EdgeConfig::from_env()?,
            LoginConfig::from_env()?,
            Arc::new(OidcClient::new(OidcConfig::from_env()?)),
        ))
    }
}

impl Edge for LoginState {
    fn edge(&self) -> &EdgeConfig {
        &self.edge
    }
}

pub async fn handle(state: LoginState, req: Request) -> Result<Response<Body>, Infallible> {
    http::serve(state, req, "login", login).await
}

async fn login(state: LoginState, req: Request) -> Result<Response<Body>, ApiError> {
    http::require_method(&req, Method::POST)?;
    let body: LoginRequest = http::json_body(&req, state.edge.max_json_bytes)?;
    let redirect_uri = choose_redirect_uri(&state.login.allowed_redirect_uris, body.redirect_uri)?;

    let verifier = pkce::new_verifier();
    let challenge = pkce::challenge_s256(&verifier);
    let ttl = state.login.ttl;
    let signed_state =
        login_state::issue(&state.login.state_secret, &redirect_uri, &challenge, ttl);

    let discovery = state.oidc.discovery().await?;
    let mut url = url::Url::parse(&discovery.authorization_endpoint).map_err(|e| {
        ApiError::Internal(format!(
            "provider's authorization_endpoint is not a URL: {e}"
        ))
    })?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &state.oidc.config().client_id)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", SCOPES)
        .append_pair("state", &signed_state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");

    Ok(http::json(
        StatusCode::OK,
        &LoginResponse {
            authorization_url: url.to_string(),
            code_verifier: verifier,
            state: signed_state,
            redirect_uri,
            expires_in: ttl.as_secs(),
        },
    ))
}

/// The requested redirect URI if it is allowed, else the first allowed one.
pub fn choose_redirect_uri(
    allowed: &[String],
    requested: Option<String>,
) -> Result<String, ApiError> {
    match requested {
        None => allowed
            .first()
            .cloned()
            .ok_or_else(|| ApiError::Internal("no redirect URI is configured".into())),
        Some(uri) if allowed.contains(&uri) => Ok(uri),
        Some(_) => Err(ApiError::bad_field(
            "redirect_uri",
            "redirect_uri is not in the allow-list of this API",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uri_outside_allow_list_is_refused() {
        let allowed = vec!["http://localhost:3000/cb".to_string()];
        assert!(choose_redirect_uri(&allowed, Some("http://evil/cb".into())).is_err());
        assert!(choose_redirect_uri(&allowed, Some("http://localhost:3000/cb/".into())).is_err());
        assert_eq!(
            choose_redirect_uri(&allowed, None).unwrap(),
            "http://localhost:3000/cb"
        );
    }
}
