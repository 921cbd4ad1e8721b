//! Signed tokens with HMAC-SHA256 under `JWT_SECRET`: session JWTs (HS256, RFC 7519) and
//! single-purpose links (approval), each bound to its purpose so one can never stand in for the
//! other. Verification is constant-time (`Mac::verify_slice`).

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

const JWT_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Signs a session JWT. The MAC covers the header and claims, as RFC 7515 says.
pub fn sign_jwt(key: &SecretSlice<u8>, claims: &SessionClaims) -> String {
    let body = format!(
        "{}.{}",
        B64.encode(JWT_HEADER),
        B64.encode(serde_json::to_vec(claims).expect("claims serialise"))
    );
    let mut m =
        HmacSha256::new_from_slice(key.expose_secret()).expect("HMAC accepts any key length");
    m.update(body.as_bytes());
    format!("{body}.{}", B64.encode(m.finalize().into_bytes()))
}

/// Verifies a session JWT's signature and expiry; `None` for anything else.
pub fn verify_jwt(key: &SecretSlice<u8>, token: &str, now_unix: i64) -> Option<SessionClaims> {
    let (body, sig) = token.rsplit_once('.')?;
    let (header, claims) = body.split_once('.')?;
    let mut m = HmacSha256::new_from_slice(key.expose_secret()).ok()?;
    m.update(body.as_bytes());
    m.verify_slice(&B64.decode(sig).ok()?).ok()?;
    let header: serde_json::Value = serde_json::from_slice(&B64.decode(header).ok()?).ok()?;
    if header.get("alg")?.as_str()? != "HS256" {
        return None;
    }
    let claims: SessionClaims = serde_json::from_slice(&B64.decode(claims).ok()?).ok()?;
    (claims.exp > now_unix).then_some(claims)
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

/// What is stored for a random token: its SHA-256, hex. The token itself is never stored.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
