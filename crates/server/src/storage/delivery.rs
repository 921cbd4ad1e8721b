//! Handing blobs out: signed, expiring links. On S3 a link is a presigned GET with the response
//! headers pinned (`response-content-type`, `-disposition`, `-cache-control`); on the folder it is
//! ours — `/api/blobs/<token>`, the token an HMAC-signed (under the server's signing key, purpose
//! `blob`) statement of the key, headers and expiry — and `routes.rs` serves it with ranges.

use super::{BlobStore, StorageError};
use crate::auth::signing;
use chrono::{DateTime, Utc};
use secrecy::SecretSlice;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The link's purpose: a token signed for it stands in for nothing else.
pub const PURPOSE: &str = "blob";

/// The headers a download is served with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    #[serde(rename = "t")]
    pub content_type: String,
    #[serde(rename = "d")]
    pub disposition: String,
    #[serde(rename = "c")]
    pub cache_control: String,
}

impl Served {
    /// Media plays inline; anything else downloads. `filename` is the sanitised name (ASCII
    /// fallback plus RFC 8187 UTF-8). The content at a key never changes (keys are per upload),
    /// so it may be cached privately until the link expires.
    pub fn for_file(content_type: &str, filename: Option<&str>, ttl: Duration) -> Self {
        let inline = ["image/", "video/", "audio/"]
            .iter()
            .any(|p| content_type.starts_with(p));
        let mut disposition = String::from(if inline { "inline" } else { "attachment" });
        if let Some(name) = filename {
            let ascii: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let encoded =
                percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
            disposition.push_str(&format!(
                "; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
            ));
        }
        Self {
            content_type: content_type.to_owned(),
            disposition,
            cache_control: format!("private, max-age={}, immutable", ttl.as_secs()),
        }
    }
}

/// What a folder link's token states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    #[serde(rename = "k")]
    pub key: String,
    #[serde(rename = "e")]
    pub expires: i64,
    #[serde(flatten)]
    pub served: Served,
}

/// A link to `key` that works until `now + ttl`.
pub async fn signed_url(
    store: &dyn BlobStore,
    signing_key: &SecretSlice<u8>,
    public_url: &url::Url,
    key: &str,
    served: &Served,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<(String, DateTime<Utc>), StorageError> {
    super::check_key(key)?;
    let expires = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::minutes(15));
    if let Some(url) = store.presigned_get(key, served, ttl).await? {
        return Ok((url, expires));
    }
    let token = signing::sign_link(
        signing_key,
        PURPOSE,
        &Grant {
            key: key.to_owned(),
            expires: expires.timestamp(),
            served: served.clone(),
        },
    );
    let mut url = public_url.clone();
    url.set_path(&format!("/api/blobs/{token}"));
    url.set_query(None);
    Ok((url.to_string(), expires))
}

/// A download link to `key` served as `content_type` under `filename`, for the configured link
/// lifetime (`AIRWAVE_STORAGE_URL_TTL_MINUTES`): what the API hands out for asset files and
/// export archives.
pub async fn download_link(
    state: &crate::state::AppState,
    key: &str,
    content_type: &str,
    filename: Option<&str>,
) -> crate::error::Result<airwave_api::DownloadUrlOut> {
    let ttl = state.config.uploads.download_ttl;
    let served = Served::for_file(content_type, filename, ttl);
    let (url, expires_at) = signed_url(
        state.blobs.as_ref(),
        &state.signing_key,
        &state.config.public_url,
        key,
        &served,
        state.clock.now(),
        ttl,
    )
    .await
    .map_err(|e| {
        crate::error::Error::Internal(anyhow::Error::new(e).context("signing a download link"))
    })?;
    Ok(airwave_api::DownloadUrlOut { url, expires_at })
}

/// The grant in a token, if it is ours, intact and not expired at `now`.
pub fn verify(signing_key: &SecretSlice<u8>, token: &str, now: DateTime<Utc>) -> Option<Grant> {
    let g: Grant = signing::verify_link(signing_key, PURPOSE, token)?;
    (g.expires > now.timestamp()).then_some(g)
}
