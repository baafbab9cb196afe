//! Tokens for the deployed stack: a development user's real login (the API's login, the
//! provider's form, the API's callback), tokens signed by the provider's own key through its
//! loopback admin API, and forged tokens the API must refuse.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::api::{client, Api, Failure};
use crate::env::StackEnv;

/// What `POST /auth/callback` answered.
#[derive(Debug, Clone)]
pub struct Session {
    pub access_token: String,
    pub user: Value,
}

/// Logs `username` in as a browser does: `POST /auth/login` → the provider's login form, filled
/// and submitted → the code → `POST /auth/callback`.
pub async fn login(api: &Api, username: &str, password: &str) -> Result<Session, Failure> {
    let start = api.post_json("/auth/login", None, &json!({})).await?;
    let start = start.expect(200)?;
    let field = |name: &str| {
        start[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Failure::new(format!("POST /auth/login: no {name} in {start}")))
    };
    let (authorization_url, redirect_uri) = (field("authorization_url")?, field("redirect_uri")?);
    let browser =
        mecapy_testkit::browser_login(&authorization_url, &redirect_uri, username, password)
            .await
            .map_err(|e| form_failure(&e))?;
    let code = browser.code.ok_or_else(|| {
        Failure::new(format!(
            "the provider redirected without a code: {}",
            browser.redirected_to
        ))
    })?;
    let body = json!({
        "code": code,
        "code_verifier": field("code_verifier")?,
        "state": browser.state.unwrap_or_default(),
    });
    let session = api
        .post_json("/auth/callback", None, &body)
        .await?
        .expect(200)?;
    let access_token = session["access_token"]
        .as_str()
        .ok_or_else(|| Failure::new(format!("POST /auth/callback: no access_token in {session}")))?
        .to_string();
    Ok(Session {
        access_token,
        user: session["user"].clone(),
    })
}

/// A failed login form, readable: the page's alert (e.g. "Invalid username or password.") in
/// the message, the page itself as the body.
fn form_failure(error: &str) -> Failure {
    let Some(at) = error.find('<') else {
        return Failure::new(format!("the provider's login form: {error}"));
    };
    let (head, page) = error.split_at(at);
    let alert = page
        .split_once("role=\"alert\">")
        .and_then(|(_, rest)| rest.split_once('<'))
        .map(|(text, _)| format!(": {}", text.trim()))
        .unwrap_or_default();
    Failure {
        message: format!("the provider's login form: {}{alert}", head.trim()),
        status: None,
        body: Some(page.to_string()),
    }
}

/// The identity provider: its issuer and audience, and its loopback admin API.
#[derive(Clone)]
pub struct Provider {
    pub issuer: String,
    pub audience: String,
    pub admin_url: String,
    http: reqwest::Client,
}

impl Provider {
    pub fn new(env: &StackEnv) -> Self {
        Provider {
            issuer: env.var("OIDC_ISSUER").to_string(),
            audience: env.var("OIDC_AUDIENCE").to_string(),
            admin_url: env.var("OIDC_ADMIN_URL").trim_end_matches('/').to_string(),
            http: client(Duration::from_secs(20)),
        }
    }

    /// Claims the provider itself puts in an access token for `sub`, valid for 5 minutes.
    pub fn claims_for(&self, sub: &str) -> Value {
        mecapy_testkit::access_token_claims(
            &self.issuer,
            &self.audience,
            sub,
            "e2e.mecapy.test",
            "E2E",
        )
    }

    /// A JWT signed RS256 by the provider's current key, with exactly these claims.
    pub async fn sign(&self, claims: Value, header: Value) -> Result<String, Failure> {
        let url = format!("{}/admin/sign", self.admin_url);
        let r = self
            .http
            .post(&url)
            .json(&json!({"claims": claims, "header": header}))
            .send()
            .await
            .map_err(|e| {
                Failure::new(format!(
                    "the OIDC admin API is not reachable at {url} ({e}): `make up`"
                ))
            })?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        body["token"]
            .as_str()
            .filter(|_| status.is_success())
            .map(str::to_string)
            .ok_or_else(|| Failure {
                message: format!("POST {url}: no token"),
                status: Some(status.as_u16()),
                body: Some(body.to_string()),
            })
    }

    /// A valid access token for `sub` (the user is created on its first request).
    pub async fn token_for(&self, sub: &str) -> Result<String, Failure> {
        self.sign(self.claims_for(sub), json!({})).await
    }

    async fn get_json(&self, url: &str) -> Result<Value, Failure> {
        let failed = |e: reqwest::Error| Failure::new(format!("GET {url}: {e}"));
        self.http
            .get(url)
            .send()
            .await
            .map_err(failed)?
            .json()
            .await
            .map_err(failed)
    }

    /// The `kid` the provider signs with now.
    pub async fn current_kid(&self) -> Result<String, Failure> {
        let url = format!("{}/admin/health", self.admin_url);
        let body = self.get_json(&url).await?;
        body["kid"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Failure::new(format!("GET {url}: no kid in {body}")))
    }

    /// The provider's published signing key of `kid`, as a JWK.
    pub async fn public_jwk(&self, kid: &str) -> Result<Value, Failure> {
        let url = format!("{}/protocol/openid-connect/certs", self.issuer);
        let jwks = self.get_json(&url).await?;
        jwks["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|k| k["kid"] == kid)
            .cloned()
            .ok_or_else(|| Failure::new(format!("GET {url}: no key {kid}")))
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_json(value: &Value) -> String {
    b64(value.to_string().as_bytes())
}

/// An RSA key that is NOT the provider's: what an attacker signs with.
pub struct ForeignKey(aws_lc_rs::signature::RsaKeyPair);

impl ForeignKey {
    pub fn generate() -> Self {
        use aws_lc_rs::rsa::KeySize;
        ForeignKey(
            aws_lc_rs::signature::RsaKeyPair::generate(KeySize::Rsa2048)
                .expect("RSA key generation"),
        )
    }

    /// A compact JWS of `claims`, signed RS256 (`alg` set in `header`).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::RSA_PKCS1_SHA256;
        let mut header = header.clone();
        header["alg"] = json!("RS256");
        let signing_input = format!("{}.{}", b64_json(&header), b64_json(claims));
        let mut signature = vec![0u8; self.0.public_modulus_len()];
        self.0
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .expect("RSA signature");
        format!("{signing_input}.{}", b64(&signature))
    }
}

/// A compact JWS signed RS256 by a fresh key that is not the provider's.
pub fn sign_with_foreign_key(header: &Value, claims: &Value) -> String {
    ForeignKey::generate().sign(header, claims)
}

/// A compact JWS signed HS256 with `secret`.
pub fn sign_hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    use hmac::{KeyInit, Mac, SimpleHmac};
    let mut header = header.clone();
    header["alg"] = json!("HS256");
    let signing_input = format!("{}.{}", b64_json(&header), b64_json(claims));
    let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&mac.finalize().into_bytes()))
}

/// One way of presenting a token the API must refuse: the `Authorization` header to send
/// (`None`: no header at all).
#[derive(Debug, Clone)]
pub struct Forged {
    pub name: &'static str,
    pub authorization: Option<String>,
}

/// Every refused presentation: missing, malformed, signed by another key (with the provider's
/// `kid` and with an unknown one), `alg: none`, HS256 keyed with the provider's public key, a
/// tampered payload, expired, not yet valid, wrong audience, wrong issuer.
pub async fn forged_tokens(provider: &Provider, sub: &str) -> Result<Vec<Forged>, Failure> {
    let kid = provider.current_kid().await?;
    let claims = provider.claims_for(sub);
    let now = chrono::Utc::now().timestamp();
    let header = json!({"typ": "at+jwt", "kid": kid});
    let bearer = |token: String| Some(format!("Bearer {token}"));
    let foreign = ForeignKey::generate();

    let valid = provider.sign(claims.clone(), json!({})).await?;
    let parts: Vec<&str> = valid.split('.').collect();
    let mut tampered_claims = claims.clone();
    tampered_claims["sub"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], b64_json(&tampered_claims), parts[2]);

    let mut none_header = header.clone();
    none_header["alg"] = json!("none");
    let alg_none = format!("{}.{}.", b64_json(&none_header), b64_json(&claims));

    let jwk = provider.public_jwk(&kid).await?;
    let hs256 = sign_hs256(&header, &claims, jwk.to_string().as_bytes());

    let mut expired = claims.clone();
    expired["iat"] = json!(now - 900);
    expired["exp"] = json!(now - 600);
    let mut not_yet = claims.clone();
    not_yet["nbf"] = json!(now + 600);
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!("another-api");
    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = json!(format!("{}-other", provider.issuer));

    let mut forged = vec![
        Forged {
            name: "no Authorization header",
            authorization: None,
        },
        Forged {
            name: "Basic credentials instead of a bearer token",
            authorization: Some(format!("Basic {}", b64(b"alice:alice-password"))),
        },
        Forged {
            name: "malformed token",
            authorization: bearer("not.a.jwt".into()),
        },
        Forged {
            name: "RS256 signed by a foreign key under the provider's kid",
            authorization: bearer(foreign.sign(&header, &claims)),
        },
        Forged {
            name: "RS256 signed by a foreign key under an unknown kid",
            authorization: bearer(
                foreign.sign(&json!({"typ": "at+jwt", "kid": "e2e-foreign-key"}), &claims),
            ),
        },
        Forged {
            name: "alg none",
            authorization: bearer(alg_none),
        },
        Forged {
            name: "HS256 keyed with the provider's public key",
            authorization: bearer(hs256),
        },
        Forged {
            name: "tampered payload",
            authorization: bearer(tampered),
        },
    ];
    // Signed by the provider itself, with one claim off.
    for (name, claims) in [
        ("expired", expired),
        ("not valid yet", not_yet),
        ("wrong audience", wrong_aud),
        ("wrong issuer", wrong_iss),
    ] {
        forged.push(Forged {
            name,
            authorization: bearer(provider.sign(claims, json!({})).await?),
        });
    }
    Ok(forged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_signatures_are_genuine_rs256() {
        use aws_lc_rs::signature::{KeyPair as _, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
        let key = ForeignKey::generate();
        let token = key.sign(&json!({"kid": "k"}), &json!({"sub": "x"}));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap())
            .expect("header JSON");
        assert_eq!(header, json!({"kid": "k", "alg": "RS256"}));
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let public =
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.0.public_key().as_ref());
        public
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("verifies with its own public key");
    }

    #[test]
    fn a_refused_login_form_says_why() {
        let f = form_failure(
            "login did not redirect to http://x/cb: 401 Unauthorized <!DOCTYPE html><div role=\"alert\">Invalid username or password.</div>",
        );
        assert_eq!(
            f.message,
            "the provider's login form: login did not redirect to http://x/cb: 401 Unauthorized: Invalid username or password."
        );
        assert!(f.body.unwrap().starts_with("<!DOCTYPE"));
    }

    #[test]
    fn hs256_is_keyed() {
        let claims = json!({"a": 1});
        assert_eq!(
            sign_hs256(&json!({}), &claims, b"k1"),
            sign_hs256(&json!({}), &claims, b"k1")
        );
        assert_ne!(
            sign_hs256(&json!({}), &claims, b"k1"),
            sign_hs256(&json!({}), &claims, b"k2")
        );
    }
}
