//! Authentication: OIDC discovery and code exchange, PKCE, the login state, and access-token
//! validation against the issuer's JWKS. Knows no HTTP request types.

pub mod jwt;
pub mod oidc;
pub mod pkce;
pub mod state;

pub use jwt::{Claims, TokenValidator};
pub use oidc::{OidcClient, TokenResponse};

/// Why a request could not be authenticated, or a login could not complete.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    MissingToken,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("identity provider unavailable: {0}")]
    ProviderUnavailable(String),
    #[error("identity provider misconfigured: {0}")]
    ProviderMisconfigured(String),
    #[error("the identity provider refused the code: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    CodeRejected {
        error: String,
        description: Option<String>,
    },
}

/// Extracts the token from an `Authorization: Bearer <token>` header value.
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::MissingToken)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::MissingToken)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token(Some("bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(Some("Bearer  abc ")).unwrap(), "abc");
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_missing() {
        for h in [
            None,
            Some(""),
            Some("Basic abc"),
            Some("Bearer"),
            Some("Bearer   "),
        ] {
            assert!(
                matches!(bearer_token(h), Err(AuthError::MissingToken)),
                "{h:?}"
            );
        }
    }
}
