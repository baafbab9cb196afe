//! Access-token validation: RS256 only, keys from the issuer's JWKS cached by `kid` for the life
//! of the warm Lambda, one rate-limited refetch on an unknown `kid` so key rotation needs no restart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::{Mutex, RwLock};

use super::{AuthError, OidcClient};

pub use mecapy_domain::identity::Claims;

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

pub struct TokenValidator {
    oidc: Arc<OidcClient>,
    cache: RwLock<KeyCache>,
    refresh: Mutex<()>,
    fetches: AtomicU64,
    validation: Validation,
}

impl TokenValidator {
    pub fn new(oidc: Arc<OidcClient>) -> Self {
        let cfg = oidc.config();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[cfg.issuer.as_str()]);
        validation.set_audience(&[cfg.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = cfg.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        TokenValidator {
            oidc,
            cache: RwLock::new(KeyCache::default()),
            refresh: Mutex::new(()),
            fetches: AtomicU64::new(0),
            validation,
        }
    }

    /// Number of usable keys currently cached (for diagnostics and tests).
    pub async fn cached_keys(&self) -> usize {
        self.cache.read().await.keys.len()
    }

    /// How many times the JWKS was downloaded (the cache and its rate limit are observable).
    pub fn jwks_fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Validates a compact JWT and returns its claims.
    pub async fn validate(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::InvalidToken(format!("malformed token ({e})")))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::InvalidToken(format!(
                "algorithm {:?} is not accepted, only RS256",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::InvalidToken("token has no kid".into()))?;
        let key = self.key(&kid).await?;
        jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| AuthError::InvalidToken(describe(e.kind())))
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        if let Some(key) = self.cache.read().await.keys.get(kid) {
            return Ok(key.clone());
        }
        // One refresh at a time; whoever waited re-reads what the first one fetched.
        let _guard = self.refresh.lock().await;
        {
            let cache = self.cache.read().await;
            if let Some(key) = cache.keys.get(kid) {
                return Ok(key.clone());
            }
            let interval = self.oidc.config().jwks_refetch_interval;
            if cache.fetched_at.is_some_and(|t| t.elapsed() < interval) {
                return Err(AuthError::InvalidToken(format!(
                    "unknown signing key {kid:?}"
                )));
            }
        }
        let jwks = self.oidc.fetch_jwks().await?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let keys = usable_keys(&jwks);
        tracing::info!(keys = keys.len(), "fetched the issuer's signing keys");
        let mut cache = self.cache.write().await;
        cache.keys = keys;
        cache.fetched_at = Some(Instant::now());
        cache
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| AuthError::InvalidToken(format!("unknown signing key {kid:?}")))
    }
}

/// RSA signature keys with a `kid`; everything else (encryption keys, EC, OKP, symmetric keys,
/// keys for another algorithm, malformed entries) is skipped, never fatal.
pub fn usable_keys(jwks: &serde_json::Value) -> HashMap<String, DecodingKey> {
    let Some(keys) = jwks.get("keys").and_then(|k| k.as_array()) else {
        return HashMap::new();
    };
    let str_field = |k: &serde_json::Value, name: &str| {
        k.get(name).and_then(|v| v.as_str()).map(str::to_string)
    };
    keys.iter()
        .filter_map(|k| {
            let kid = str_field(k, "kid")?;
            if str_field(k, "kty").as_deref() != Some("RSA") {
                return None;
            }
            if str_field(k, "use").is_some_and(|u| u != "sig") {
                return None;
            }
            if str_field(k, "alg").is_some_and(|a| a != "RS256") {
                return None;
            }
            let (n, e) = (str_field(k, "n")?, str_field(k, "e")?);
            match DecodingKey::from_rsa_components(&n, &e) {
                Ok(key) => Some((kid, key)),
                Err(err) => {
                    tracing::warn!(kid, error = %err, "skipping an unreadable RSA key");
                    None
                }
            }
        })
        .collect()
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "token has expired".into(),
        ErrorKind::ImmatureSignature => "token is not valid yet".into(),
        ErrorKind::InvalidAudience => "token audience is not accepted".into(),
        ErrorKind::InvalidIssuer => "token issuer is not accepted".into(),
        ErrorKind::InvalidSignature => "token signature does not verify".into(),
        ErrorKind::InvalidAlgorithm => "token algorithm is not accepted".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("token lacks the {c} claim"),
        ErrorKind::Json(e) => format!("token claims are unreadable: {e}"),
        _ => "malformed token".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_the_validator_cannot_use_are_skipped() {
        let jwks = json!({"keys": [
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "x", "y": "y"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "sXch", "e": "AQAB"},
            {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
            {"kty": "RSA", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "good", "use": "sig", "alg": "RS256", "n": "sXch", "e": "AQAB"},
            "not an object"
        ]});
        let keys = usable_keys(&jwks);
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["good"]);
    }

    #[test]
    fn document_without_keys_gives_no_keys() {
        assert!(usable_keys(&json!({"nope": 1})).is_empty());
    }
}
