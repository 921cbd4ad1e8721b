//! Storage's settings: the folder (embedded default) or an S3 bucket, and how to reach it.

use super::s3::S3Options;
use crate::config::settings::{Kind, Reader, Section, Setting};
use std::path::{Path, PathBuf};

/// Where blobs live.
#[derive(Clone)]
pub enum StorageConfig {
    Folder { dir: PathBuf },
    S3(S3Options),
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Folder { dir } => f.debug_struct("Folder").field("dir", dir).finish(),
            Self::S3(o) => f
                .debug_struct("S3")
                .field("bucket", &o.bucket)
                .field("region", &o.region)
                .field("endpoint", &o.endpoint)
                .field("path_style", &o.path_style)
                .field("credentials", &o.credentials.as_ref().map(|_| "[redacted]"))
                .field("part_size", &o.part_size)
                .finish(),
        }
    }
}

pub const BACKEND: Setting = Setting::new(
    "AIRWAVE_STORAGE_BACKEND",
    Kind::Choice {
        default: "auto",
        options: &["auto", "folder", "s3"],
    },
    "`auto`: S3 when `AWS_S3_BUCKET` is set, else the folder.",
);
pub const DIR: Setting = Setting::new(
    "AIRWAVE_STORAGE_DIR",
    Kind::Custom {
        default: "`<data dir>/blobs`",
        values: "a path",
        secret: false,
    },
    "The folder backend's root.",
);
pub const BUCKET: Setting = Setting::new(
    "AWS_S3_BUCKET",
    Kind::Text { default: "" },
    "The bucket blobs go to (S3 or any S3-compatible server).",
);
pub const REGION: Setting = Setting::new(
    "AWS_REGION",
    Kind::Text {
        default: "us-east-1",
    },
    "The bucket's region (signatures are scoped to it).",
);
pub const ENDPOINT: Setting = Setting::new(
    "AWS_ENDPOINT_URL",
    Kind::Url {
        schemes: &["https", "http"],
        default: None,
        secret: false,
    },
    "A custom endpoint for an S3-compatible server (MinIO, R2, s3s); unset: AWS's. `http://` only to a loopback host in production.",
);
pub const PATH_STYLE: Setting = Setting::new(
    "AWS_S3_FORCE_PATH_STYLE",
    Kind::Choice {
        default: "off",
        options: &["off", "on"],
    },
    "`on`: `ENDPOINT/BUCKET/KEY` instead of `BUCKET.ENDPOINT/KEY` (most S3-compatible servers need it).",
);
pub const ACCESS_KEY_ID: Setting = Setting::new(
    "AWS_ACCESS_KEY_ID",
    Kind::Text { default: "" },
    "With `AWS_SECRET_ACCESS_KEY`: static credentials. Unset: the standard chain (profile, web identity, ECS task role, instance metadata).",
);
pub const SECRET_ACCESS_KEY: Setting = Setting::new(
    "AWS_SECRET_ACCESS_KEY",
    Kind::Secret { min_len: 1 },
    "The secret of `AWS_ACCESS_KEY_ID`.",
);
pub const SESSION_TOKEN: Setting = Setting::new(
    "AWS_SESSION_TOKEN",
    Kind::Secret { min_len: 1 },
    "A session token for temporary static credentials.",
);
pub const PART_MIB: Setting = Setting::int(
    "AIRWAVE_STORAGE_PART_MIB",
    8,
    5,
    1024,
    "MiB",
    "The part size of streamed S3 writes: the memory one write holds (S3's minimum part is 5 MiB).",
);

pub const URL_TTL_MINUTES: Setting = Setting::int(
    "AIRWAVE_STORAGE_URL_TTL_MINUTES",
    15,
    1,
    10_080,
    "minutes",
    "How long a signed download link works (S3 caps presigned links at 7 days).",
);

pub const CDN_DOMAIN: Setting = Setting::new(
    "CDN_DOMAIN",
    Kind::Text { default: "" },
    "A CDN host (`cdn.example.com`, e.g. CloudFront's `d111111abcdef8.cloudfront.net`) whose origin is this server: public assets' URLs become `https://CDN_DOMAIN/cdn/…` (see [storage.md](storage.md#public-assets-and-the-cdn)); unset: they point at `AIRWAVE_PUBLIC_URL`. Private files always get signed links.",
);

/// `https://CDN_DOMAIN/` when set (a bare host: no scheme, port-less path or query).
pub fn read_cdn(r: &mut Reader) -> Option<url::Url> {
    let host = r.text(&CDN_DOMAIN);
    if host.is_empty() {
        return None;
    }
    let ok = !host.contains(['/', '?', '#', '@', ' ', ':'])
        && url::Host::parse(&host).is_ok_and(|h| matches!(h, url::Host::Domain(_)));
    match url::Url::parse(&format!("https://{host}/")) {
        Ok(u) if ok => Some(u),
        _ => {
            r.error(format!(
                "{} must be a host name such as `cdn.example.com` (no scheme, port or path): `{host}`",
                CDN_DOMAIN.name
            ));
            None
        }
    }
}

pub const BACKUP_BUCKET: Setting = Setting::new(
    "AWS_S3_BACKUP_BUCKET",
    Kind::Text { default: "" },
    "A second bucket (same endpoint, region and credentials) every object is copied to by a queued job; `airwave-server storage verify-backup` compares the two (see [storage.md](storage.md#the-backup-bucket)). S3 only.",
);
pub const BACKUP_KEEP_DELETED_HOURS: Setting = Setting::int(
    "AIRWAVE_BACKUP_BUCKET_KEEP_DELETED_HOURS",
    168,
    0,
    8_760,
    "hours",
    "How long the backup bucket keeps the copy of an object removed from the store (a mistaken deletion can be undone until then; an erasure reaches the backup after it).",
);

/// The backup bucket, when configured.
#[derive(Clone, Debug)]
pub struct BackupBucket {
    pub options: S3Options,
    pub keep_deleted: std::time::Duration,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

pub fn read_backup_bucket(r: &mut Reader, storage: &StorageConfig) -> Option<BackupBucket> {
    let bucket = r.text(&BACKUP_BUCKET);
    let keep_hours = r.int(&BACKUP_KEEP_DELETED_HOURS);
    if bucket.is_empty() {
        return None;
    }
    match storage {
        StorageConfig::Folder { .. } => {
            r.error(format!(
                "{} needs the S3 backend (set {})",
                BACKUP_BUCKET.name, BUCKET.name
            ));
            None
        }
        StorageConfig::S3(o) if o.bucket == bucket => {
            r.error(format!(
                "{} must be another bucket than {} (`{bucket}`)",
                BACKUP_BUCKET.name, BUCKET.name
            ));
            None
        }
        StorageConfig::S3(o) => Some(BackupBucket {
            options: S3Options {
                bucket,
                ..o.clone()
            },
            keep_deleted: std::time::Duration::from_secs(
                u64::try_from(keep_hours).unwrap_or(168) * 3600,
            ),
        }),
    }
}

pub fn section() -> Section {
    Section {
        title: "Storage",
        intro: "Blobs (uploads, renders, exports, backups) live in a folder of the data dir by default, or in an S3 bucket (see [storage.md](storage.md)).",
        settings: vec![
            BACKEND,
            DIR,
            BUCKET,
            REGION,
            ENDPOINT,
            PATH_STYLE,
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            SESSION_TOKEN,
            PART_MIB,
            URL_TTL_MINUTES,
            CDN_DOMAIN,
            BACKUP_BUCKET,
            BACKUP_KEEP_DELETED_HOURS,
        ],
    }
}

impl StorageConfig {
    pub fn read(r: &mut Reader, data_dir: &Path, production: bool) -> Self {
        let backend = r.choice(&BACKEND);
        let bucket = r.text(&BUCKET);
        let region = r.text(&REGION);
        let endpoint = r.url(&ENDPOINT);
        let path_style = r.choice(&PATH_STYLE) == "on";
        let key_id = r.text(&ACCESS_KEY_ID);
        let secret = r.secret(&SECRET_ACCESS_KEY);
        let token = r.secret(&SESSION_TOKEN);
        let part_mib = r.int(&PART_MIB);
        let dir = r
            .raw(&DIR.name)
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("blobs"));
        let s3 = match backend {
            "s3" => true,
            "folder" => false,
            _ => !bucket.is_empty(),
        };
        if !s3 {
            return Self::Folder { dir };
        }
        if bucket.is_empty() {
            r.error(format!(
                "{} is `s3` but {} is not set",
                BACKEND.name, BUCKET.name
            ));
        }
        if let Some(u) = &endpoint {
            let loopback = crate::config::settings::is_loopback(u);
            if production && u.scheme() == "http" && !loopback {
                r.error(format!(
                    "{} must be https:// in production (every blob would cross the network in the clear)",
                    ENDPOINT.name
                ));
            }
        }
        let credentials = match (key_id.is_empty(), secret) {
            (false, Some(secret)) => Some((key_id, secret, token)),
            (true, None) => None,
            _ => {
                r.error(format!(
                    "{} and {} go together: set both, or neither for the standard chain",
                    ACCESS_KEY_ID.name, SECRET_ACCESS_KEY.name
                ));
                None
            }
        };
        Self::S3(S3Options {
            bucket,
            region,
            endpoint: endpoint.map(|u| u.as_str().trim_end_matches('/').to_owned()),
            path_style,
            credentials,
            part_size: usize::try_from(part_mib).unwrap_or(8) << 20,
        })
    }

    /// The store this configuration names.
    pub async fn open(&self) -> std::sync::Arc<dyn super::BlobStore> {
        match self {
            Self::Folder { dir } => std::sync::Arc::new(super::fs::FolderStore::new(dir.clone())),
            Self::S3(options) => std::sync::Arc::new(super::s3::S3Store::connect(options).await),
        }
    }
}
