//! Access-token validation against the REAL local OIDC provider and its JWKS: forged tokens are
//! refused, keys the library cannot use are skipped, and a key rotation needs no restart.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use mecapy_shared::auth::AuthError;
use mecapy_testkit::TestContext;
use serde_json::json;

fn refused(result: Result<mecapy_shared::auth::Claims, AuthError>, why: &str) {
    match result {
        Err(AuthError::InvalidToken(reason)) => {
            assert!(reason.contains(why), "expected {why:?}, got {reason:?}")
        }
        other => panic!("expected an invalid token ({why}), got {other:?}"),
    }
}

fn segments(token: &str) -> Vec<String> {
    token.split('.').map(str::to_string).collect()
}

#[tokio::test]
async fn token_signed_by_provider_is_accepted() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("valid-user").await;
    let claims = ctx.state.tokens.validate(&token).await.unwrap();
    assert_eq!(claims.sub, "valid-user");
    assert_eq!(claims.iss, ctx.oidc.issuer);
}

#[tokio::test]
async fn keys_the_library_cannot_use_are_skipped_not_fatal() {
    let ctx = TestContext::new().await;
    let token = ctx.token_for("jwks-user").await;
    ctx.state.tokens.validate(&token).await.unwrap();
    let jwks = ctx.state.oidc.fetch_jwks().await.unwrap();
    let published = jwks["keys"].as_array().unwrap();
    let unusable = published
        .iter()
        .filter(|k| k["kty"] != "RSA" || k["use"] == "enc")
        .count();
    assert!(
        unusable >= 2,
        "the provider publishes an EC and an enc key: {jwks}"
    );
    assert_eq!(
        ctx.state.tokens.cached_keys().await,
        published.len() - unusable
    );
}

#[tokio::test]
async fn alg_none_is_refused() {
    let ctx = TestContext::new().await;
    let valid = segments(&ctx.token_for("none-user").await);
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string());
    for forged in [
        format!("{header}.{}.", valid[1]),
        format!("{header}.{}", valid[1]),
    ] {
        assert!(matches!(
            ctx.state.tokens.validate(&forged).await,
            Err(AuthError::InvalidToken(_))
        ));
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let ctx = TestContext::new().await;
    let jwks = ctx.state.oidc.fetch_jwks().await.unwrap();
    let rsa = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "RSA" && k["use"] != "enc")
        .unwrap()
        .clone();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = rsa["kid"].as_str().map(str::to_string);
    // The classic confusion attack: the public key material as an HMAC secret.
    for secret in [rsa.to_string(), rsa["n"].as_str().unwrap().to_string()] {
        let token = jsonwebtoken::encode(
            &header,
            &ctx.claims_for("hs-user"),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        refused(ctx.state.tokens.validate(&token).await, "only RS256");
    }
}

#[tokio::test]
async fn wrong_audience_issuer_and_times_are_refused() {
    let ctx = TestContext::new().await;
    let now = chrono::Utc::now().timestamp();
    let mut wrong_aud = ctx.claims_for("u");
    wrong_aud["aud"] = json!("another-api");
    let mut wrong_iss = ctx.claims_for("u");
    wrong_iss["iss"] = json!("http://172.17.0.1:8180/realms/other");
    let mut expired = ctx.claims_for("u");
    expired["exp"] = json!(now - 120);
    let mut not_yet = ctx.claims_for("u");
    not_yet["nbf"] = json!(now + 600);
    let mut no_sub = ctx.claims_for("u");
    no_sub.as_object_mut().unwrap().remove("sub");
    let mut no_exp = ctx.claims_for("u");
    no_exp.as_object_mut().unwrap().remove("exp");
    for (claims, why) in [
        (wrong_aud, "audience"),
        (wrong_iss, "issuer"),
        (expired, "expired"),
        (not_yet, "not valid yet"),
        (no_sub, "sub"),
        (no_exp, "exp"),
    ] {
        let token = ctx.sign_with_provider_key(claims, json!({})).await;
        refused(ctx.state.tokens.validate(&token).await, why);
    }
}

#[tokio::test]
async fn expiry_within_the_leeway_is_accepted() {
    let ctx = TestContext::new().await;
    let mut claims = ctx.claims_for("leeway-user");
    claims["exp"] = json!(chrono::Utc::now().timestamp() - 5);
    let token = ctx.sign_with_provider_key(claims, json!({})).await;
    ctx.state.tokens.validate(&token).await.unwrap();
}

#[tokio::test]
async fn unknown_kid_and_tampered_payload_are_refused() {
    let ctx = TestContext::new().await;
    let unknown = ctx
        .sign_with_provider_key(ctx.claims_for("u"), json!({"kid": "no-such-key"}))
        .await;
    refused(
        ctx.state.tokens.validate(&unknown).await,
        "unknown signing key",
    );

    let valid = segments(&ctx.token_for("honest").await);
    let mut payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&valid[1]).unwrap()).unwrap();
    payload["sub"] = json!("admin");
    let forged = format!(
        "{}.{}.{}",
        valid[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        valid[2]
    );
    refused(ctx.state.tokens.validate(&forged).await, "signature");
    refused(ctx.state.tokens.validate("not.a.jwt").await, "malformed");
}

#[tokio::test]
async fn unknown_kid_refetch_is_rate_limited() {
    let ctx = TestContext::with_oidc(|c| c.jwks_refetch_interval = Duration::from_secs(60)).await;
    ctx.state
        .tokens
        .validate(&ctx.token_for("warm").await)
        .await
        .unwrap();
    let fetches = ctx.state.tokens.jwks_fetches();
    for i in 0..5 {
        let token = ctx
            .sign_with_provider_key(ctx.claims_for("u"), json!({"kid": format!("bogus-{i}")}))
            .await;
        assert!(ctx.state.tokens.validate(&token).await.is_err());
    }
    assert_eq!(
        ctx.state.tokens.jwks_fetches(),
        fetches,
        "no refetch inside the interval"
    );
}

#[tokio::test]
async fn key_rotation_is_accepted_without_restart() {
    let ctx = TestContext::with_oidc(|c| c.jwks_refetch_interval = Duration::from_secs(1)).await;
    let before = ctx.token_for("rotating-user").await;
    ctx.state.tokens.validate(&before).await.unwrap();
    let fetches = ctx.state.tokens.jwks_fetches();
    // Let the refetch interval pass, as it would between a warm start and a rotation.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let new_kid = ctx.rotate_provider_key().await;
    let after = ctx.token_for("rotating-user").await;
    let header = jsonwebtoken::decode_header(&after).unwrap();
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));

    ctx.state.tokens.validate(&after).await.unwrap();
    assert_eq!(
        ctx.state.tokens.jwks_fetches(),
        fetches + 1,
        "one refetch for the new kid"
    );
    // Tokens signed before the rotation stay valid while the old key is published.
    ctx.state.tokens.validate(&before).await.unwrap();
}
