//! Signed tokens with HMAC-SHA256 under `JWT_SECRET`: session JWTs (HS256, RFC 7519, through the
//! `jsonwebtoken` crate with the algorithm pinned: `none` and every other algorithm are refused)
//! and single-purpose links (approval), each bound to its purpose so one can never stand in for
//! the other. Verification is constant-time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &SecretSlice<u8>, purpose: &str, data: &[u8]) -> HmacSha256 {
    let mut m =
        HmacSha256::new_from_slice(key.expose_secret()).expect("HMAC accepts any key length");
    m.update(purpose.as_bytes());
    m.update(b"\0");
    m.update(data);
    m
}

/// The claims of a session token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionClaims {
    pub sub: String,
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
}

/// Signs a session JWT (HS256).
pub fn sign_jwt(key: &SecretSlice<u8>, claims: &SessionClaims) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key.expose_secret()),
    )
    .expect("HS256 signing of serialisable claims cannot fail")
}

/// Verifies a session JWT's signature (HS256 only) and expiry against `now_unix` (the
/// application's clock, so expiry is tested by moving it); `None` for anything else.
pub fn verify_jwt(key: &SecretSlice<u8>, token: &str, now_unix: i64) -> Option<SessionClaims> {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    // Expiry is checked below against our clock, not the system's.
    validation.validate_exp = false;
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<SessionClaims>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(key.expose_secret()),
        &validation,
    )
    .ok()?;
    (data.claims.exp > now_unix).then_some(data.claims)
}

/// Signs a single-purpose payload: `<base64 payload>.<base64 mac>`.
pub fn sign_link<T: Serialize>(key: &SecretSlice<u8>, purpose: &str, payload: &T) -> String {
    let data = B64.encode(serde_json::to_vec(payload).expect("payload serialises"));
    let tag = mac(key, purpose, data.as_bytes()).finalize().into_bytes();
    format!("{data}.{}", B64.encode(tag))
}

/// Verifies a link made by [`sign_link`] for the same purpose.
pub fn verify_link<T: DeserializeOwned>(
    key: &SecretSlice<u8>,
    purpose: &str,
    token: &str,
) -> Option<T> {
    if token.len() > 2048 {
        return None;
    }
    let (data, tag) = token.split_once('.')?;
    mac(key, purpose, data.as_bytes())
        .verify_slice(&B64.decode(tag).ok()?)
        .ok()?;
    serde_json::from_slice(&B64.decode(data).ok()?).ok()
}

/// A new random secret token with a recognisable prefix (`awt_…`), 256 bits of entropy.
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    format!("{prefix}{}", B64.encode(bytes))
}

/// A single-use link's token derived from the key, its purpose and the id of the row it opens:
/// `<prefix><base64 HMAC>`, 256 bits no one can compute without the key. The row keeps only the
/// token's hash; the e-mail that carries the link keeps only the row's id, and its sender derives
/// the same token again at send time (every retry sends the same link), so the token itself is
/// stored nowhere.
pub fn derived_token(key: &SecretSlice<u8>, purpose: &str, id: &str, prefix: &str) -> String {
    let tag = mac(key, &format!("link-token:{purpose}"), id.as_bytes())
        .finalize()
        .into_bytes();
    format!("{prefix}{}", B64.encode(tag))
}

/// 32 bytes derived from the key, a purpose and an id (an endpoint's webhook secret): no one can
/// compute them without the key, so they need not be stored.
pub fn derived_key(key: &SecretSlice<u8>, purpose: &str, id: &str) -> [u8; 32] {
    mac(key, &format!("derived-key:{purpose}"), id.as_bytes())
        .finalize()
        .into_bytes()
        .into()
}

/// What is stored for a random token: its SHA-256, hex. The token itself is never stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SecretSlice<u8> {
        SecretSlice::from(s.as_bytes().to_vec())
    }

    fn claims(exp: i64) -> SessionClaims {
        SessionClaims {
            sub: "usr_x".into(),
            sid: "ses_y".into(),
            iat: 0,
            exp,
        }
    }

    #[test]
    fn derived_tokens_depend_on_key_purpose_and_id() {
        let (k1, k2) = (key("k1"), key("k2"));
        let t = derived_token(&k1, "password_reset", "rst_1", "rst_");
        assert!(t.starts_with("rst_") && t.len() > 40, "{t}");
        assert_eq!(t, derived_token(&k1, "password_reset", "rst_1", "rst_"));
        assert_ne!(t, derived_token(&k2, "password_reset", "rst_1", "rst_"));
        assert_ne!(t, derived_token(&k1, "registration", "rst_1", "rst_"));
        assert_ne!(t, derived_token(&k1, "password_reset", "rst_2", "rst_"));
    }

    #[test]
    fn a_jwt_verifies_under_its_key_until_it_expires() {
        let k = key("k1");
        let t = sign_jwt(&k, &claims(100));
        assert_eq!(verify_jwt(&k, &t, 99), Some(claims(100)));
        assert_eq!(verify_jwt(&k, &t, 100), None);
        assert_eq!(verify_jwt(&key("k2"), &t, 99), None);
    }

    #[test]
    fn a_tampered_jwt_is_rejected() {
        let k = key("k1");
        let t = sign_jwt(&k, &claims(100));
        let (body, sig) = t.rsplit_once('.').unwrap();
        let forged_claims = B64.encode(serde_json::to_vec(&claims(1_000_000)).unwrap());
        let header = body.split_once('.').unwrap().0;
        assert_eq!(
            verify_jwt(&k, &format!("{header}.{forged_claims}.{sig}"), 99),
            None
        );
        let none_alg = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), forged_claims);
        assert_eq!(verify_jwt(&k, &none_alg, 99), None);
    }

    #[test]
    fn a_jwt_with_none_or_another_algorithm_is_refused() {
        let k = key("k1");
        let body = B64.encode(serde_json::to_vec(&claims(100)).unwrap());
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"None","typ":"JWT"}"#,
        ] {
            let t = format!("{}.{body}.", B64.encode(header));
            assert_eq!(verify_jwt(&k, &t, 99), None, "{header}");
        }
        // Correctly signed, but with HS512 or HS384: not the pinned algorithm.
        for alg in [
            jsonwebtoken::Algorithm::HS512,
            jsonwebtoken::Algorithm::HS384,
        ] {
            let t = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(alg),
                &claims(100),
                &jsonwebtoken::EncodingKey::from_secret(b"k1"),
            )
            .unwrap();
            assert_eq!(verify_jwt(&k, &t, 99), None, "{alg:?}");
        }
        // A token missing `exp` is refused too.
        let t = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({"sub": "usr_x", "sid": "ses_y", "iat": 0}),
            &jsonwebtoken::EncodingKey::from_secret(b"k1"),
        )
        .unwrap();
        assert_eq!(verify_jwt(&k, &t, 99), None);
    }

    #[test]
    fn a_link_for_one_purpose_is_useless_for_another() {
        let k = key("k1");
        let t = sign_link(&k, "approval", &serde_json::json!({"id": "apr_1"}));
        assert!(verify_link::<serde_json::Value>(&k, "approval", &t).is_some());
        assert!(verify_link::<serde_json::Value>(&k, "reset", &t).is_none());
        assert!(verify_link::<serde_json::Value>(&k, "approval", &t.replace('.', "x.")).is_none());
    }

    #[test]
    fn random_tokens_differ_and_hash_stably() {
        let a = random_token("awt_");
        assert!(a.starts_with("awt_") && a.len() > 40);
        assert_ne!(a, random_token("awt_"));
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_eq!(token_hash(&a).len(), 64);
    }
}
