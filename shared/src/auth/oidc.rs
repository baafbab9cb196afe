//! The identity provider as a client sees it: discovery, JWKS download and the PKCE code exchange.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::AuthError;
use crate::config::OidcConfig;

/// The parts of `/.well-known/openid-configuration` the API uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

/// The token endpoint's answer, passed on to the client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default = "bearer")]
    pub token_type: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

fn bearer() -> String {
    "Bearer".into()
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    error_description: Option<String>,
}

pub struct OidcClient {
    config: OidcConfig,
    http: reqwest::Client,
    discovery: OnceCell<Discovery>,
}

impl OidcClient {
    pub fn new(config: OidcConfig) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        OidcClient {
            config,
            http,
            discovery: OnceCell::new(),
        }
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The provider's metadata, fetched once per warm Lambda (a failed fetch is retried next time).
    #[tracing::instrument(skip(self))]
    pub async fn discovery(&self) -> Result<&Discovery, AuthError> {
        self.discovery
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/openid-configuration", self.config.issuer);
                let doc: Discovery = self.get_json(&url).await?;
                if doc.issuer.trim_end_matches('/') != self.config.issuer {
                    return Err(AuthError::ProviderMisconfigured(format!(
                        "discovery names issuer {} but {} is configured",
                        doc.issuer, self.config.issuer
                    )));
                }
                Ok(doc)
            })
            .await
    }

    /// The raw JWKS document.
    #[tracing::instrument(skip(self))]
    pub async fn fetch_jwks(&self) -> Result<serde_json::Value, AuthError> {
        let uri = self.discovery().await?.jwks_uri.clone();
        self.get_json(&uri).await
    }

    /// Exchanges an authorization code with its PKCE verifier (public client, no secret).
    #[tracing::instrument(skip_all)]
    pub async fn exchange_code(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<TokenResponse, AuthError> {
        let endpoint = self.discovery().await?.token_endpoint.clone();
        let response = self
            .http
            .post(&endpoint)
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("client_id", self.config.client_id.as_str()),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .map_err(|e| AuthError::ProviderUnavailable(format!("token endpoint: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return response.json().await.map_err(|e| {
                AuthError::ProviderMisconfigured(format!("token response unreadable: {e}"))
            });
        }
        if status.is_client_error() {
            let body: Option<OAuthError> = response.json().await.ok();
            return Err(match body {
                Some(b) => AuthError::CodeRejected {
                    error: b.error,
                    description: b.error_description,
                },
                None => AuthError::CodeRejected {
                    error: format!("http_{}", status.as_u16()),
                    description: None,
                },
            });
        }
        Err(AuthError::ProviderUnavailable(format!(
            "token endpoint answered {status}"
        )))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, AuthError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| AuthError::ProviderUnavailable(format!("{url}: {e}")))?;
        if !response.status().is_success() {
            return Err(AuthError::ProviderUnavailable(format!(
                "{url} answered {}",
                response.status()
            )));
        }
        response
            .json()
            .await
            .map_err(|e| AuthError::ProviderMisconfigured(format!("{url}: {e}")))
    }
}
