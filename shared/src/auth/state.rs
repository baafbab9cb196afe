//! The login `state`: a signed, expiring token binding the redirect URI and the PKCE challenge,
//! so `callback` can check it without any server-side storage (Lambdas are stateless).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::pkce;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("state is malformed")]
    Malformed,
    #[error("state signature does not match")]
    BadSignature,
    #[error("state has expired; start the login again")]
    Expired,
    #[error("code_verifier does not belong to this login")]
    VerifierMismatch,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Payload {
    /// Redirect URI the authorization request used; the token request must repeat it.
    r: String,
    /// S256 challenge of the verifier handed to the client.
    c: String,
    /// Expiry, seconds since the epoch.
    e: u64,
    /// Random nonce so two logins never share a state.
    n: String,
}

/// What a verified state proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginState {
    pub redirect_uri: String,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn mac(secret: &[u8], data: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac
}

/// Signs a new state for a login that will return to `redirect_uri` with `challenge`.
pub fn issue(secret: &[u8], redirect_uri: &str, challenge: &str, ttl: Duration) -> String {
    let payload = Payload {
        r: redirect_uri.to_string(),
        c: challenge.to_string(),
        e: now() + ttl.as_secs(),
        n: pkce::random_token(12),
    };
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap_or_default());
    let sig = URL_SAFE_NO_PAD.encode(mac(secret, body.as_bytes()).finalize().into_bytes());
    format!("{body}.{sig}")
}

/// Checks the signature, the expiry and that `verifier` is the one this login was started with.
pub fn verify(secret: &[u8], state: &str, verifier: &str) -> Result<LoginState, StateError> {
    let (body, sig) = state.split_once('.').ok_or(StateError::Malformed)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| StateError::Malformed)?;
    mac(secret, body.as_bytes())
        .verify_slice(&sig)
        .map_err(|_| StateError::BadSignature)?;
    let payload: Payload = URL_SAFE_NO_PAD
        .decode(body)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(StateError::Malformed)?;
    if payload.e < now() {
        return Err(StateError::Expired);
    }
    if pkce::challenge_s256(verifier) != payload.c {
        return Err(StateError::VerifierMismatch);
    }
    Ok(LoginState {
        redirect_uri: payload.r,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// A new verifier and the state issued for its challenge, valid for a minute.
    fn issued() -> (String, String) {
        let v = pkce::new_verifier();
        let s = issue(
            SECRET,
            "http://x/cb",
            &pkce::challenge_s256(&v),
            Duration::from_secs(60),
        );
        (v, s)
    }

    #[test]
    fn issued_state_verifies_with_its_verifier() {
        let (v, s) = issued();
        assert_eq!(verify(SECRET, &s, &v).unwrap().redirect_uri, "http://x/cb");
    }

    #[test]
    fn other_verifier_is_refused() {
        let (_, s) = issued();
        assert_eq!(
            verify(SECRET, &s, &pkce::new_verifier()),
            Err(StateError::VerifierMismatch)
        );
    }

    #[test]
    fn tampered_state_is_refused() {
        let (v, s) = issued();
        let (body, sig) = s.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(
            String::from_utf8(URL_SAFE_NO_PAD.decode(body).unwrap())
                .unwrap()
                .replace("http://x/cb", "http://evil/cb"),
        );
        assert_eq!(
            verify(SECRET, &format!("{forged}.{sig}"), &v),
            Err(StateError::BadSignature)
        );
        assert_eq!(
            verify(b"another-secret-another-secret-xx", &s, &v),
            Err(StateError::BadSignature)
        );
        assert_eq!(verify(SECRET, "garbage", &v), Err(StateError::Malformed));
    }

    #[test]
    fn expired_state_is_refused() {
        let v = pkce::new_verifier();
        let payload = Payload {
            r: "http://x/cb".into(),
            c: pkce::challenge_s256(&v),
            e: now() - 1,
            n: "n".into(),
        };
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
        let sig = URL_SAFE_NO_PAD.encode(mac(SECRET, body.as_bytes()).finalize().into_bytes());
        assert_eq!(
            verify(SECRET, &format!("{body}.{sig}"), &v),
            Err(StateError::Expired)
        );
    }
}
