//! PKCE (RFC 7636): the verifier kept by the client and its S256 challenge sent to the provider.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};

/// Random URL-safe string from `bytes` bytes of entropy.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A fresh code verifier: 32 random bytes give 43 characters, the RFC's minimum length.
pub fn new_verifier() -> String {
    random_token(48)
}

/// `BASE64URL(SHA256(verifier))`, the S256 challenge.
pub fn challenge_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The RFC's grammar: 43 to 128 characters of `[A-Za-z0-9-._~]`.
pub fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_example_matches() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            challenge_s256(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn generated_verifier_is_valid_and_unique() {
        let a = new_verifier();
        assert!(is_valid_verifier(&a), "{a}");
        assert_ne!(a, new_verifier());
    }

    #[test]
    fn verifier_with_forbidden_characters_is_refused() {
        assert!(!is_valid_verifier(&format!("{}!", "a".repeat(50))));
        assert!(!is_valid_verifier("short"));
    }
}
