//! Standard Webhooks v1 signing. A delivery carries `webhook-id` (the message's id, the same on
//! every retry), `webhook-timestamp` (unix seconds of this attempt) and `webhook-signature`: one
//! `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` per secret in force, space-separated
//! (two during a rotation's overlap). The body is serialised once and signed over the exact
//! bytes sent.
//!
//! An endpoint's secret is never stored: it is derived from the server's signing key, the
//! endpoint's id and the secret's generation (a rotation makes the next one), 32 bytes shown to
//! its owner as `whsec_` + base64. A copy of the database yields no secret; changing
//! `JWT_SECRET` changes every endpoint's secret (as it ends every session).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use secrecy::SecretSlice;
use sha2::Sha256;

/// What a secret shown to its owner starts with.
pub const SECRET_PREFIX: &str = "whsec_";

/// The secret of generation `generation` of endpoint `endpoint_id`.
pub fn endpoint_secret(key: &SecretSlice<u8>, endpoint_id: &str, generation: i64) -> [u8; 32] {
    crate::auth::signing::derived_key(
        key,
        "webhook-secret",
        &format!("{endpoint_id}:{generation}"),
    )
}

/// A secret as its owner sees it (`whsec_…`).
pub fn shown(secret: &[u8]) -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(secret))
}

/// One `v1,…` signature of `body` sent as message `msg_id` at `timestamp`.
pub fn sign(secret: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: a signature per secret, space-separated.
pub fn signature_header(secrets: &[&[u8]], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| sign(s, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(id: &str, ts: i64, sig: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("webhook-id", id.parse().unwrap());
        h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
        h.insert("webhook-signature", sig.parse().unwrap());
        h
    }

    /// Verified with the official Standard Webhooks library, not with our own code.
    #[test]
    fn signatures_verify_with_the_official_library_during_a_rotation_too() {
        let key = SecretSlice::from(b"a signing key of the server, 32+ bytes".to_vec());
        let old = endpoint_secret(&key, "whe_1", 1);
        let new = endpoint_secret(&key, "whe_1", 2);
        assert_ne!(old, new);
        assert_ne!(old, endpoint_secret(&key, "whe_2", 1));
        assert_eq!(old, endpoint_secret(&key, "whe_1", 1));
        let body = br#"{"type":"webhook.test","timestamp":"2026-12-04T00:00:00Z","data":{}}"#;
        let ts = chrono::Utc::now().timestamp();
        let header = signature_header(&[&new, &old], "whm_1", ts, body);
        assert_eq!(header.split(' ').count(), 2);
        for secret in [&old, &new] {
            let wh = standardwebhooks::Webhook::new(&shown(secret)).unwrap();
            wh.verify(body, &headers("whm_1", ts, &header)).unwrap();
            // Another body, id or time does not verify.
            assert!(wh.verify(b"{}", &headers("whm_1", ts, &header)).is_err());
            assert!(wh.verify(body, &headers("whm_2", ts, &header)).is_err());
            assert!(wh.verify(body, &headers("whm_1", ts + 1, &header)).is_err());
        }
        let stranger =
            standardwebhooks::Webhook::new(&shown(&endpoint_secret(&key, "whe_9", 1))).unwrap();
        assert!(stranger
            .verify(body, &headers("whm_1", ts, &header))
            .is_err());
        assert!(shown(&old).starts_with("whsec_") && shown(&old).len() == 6 + 44);
    }
}
