//! Uploads' settings: which types are accepted, how large each asset type may be, how long a
//! resumable upload may sit unfinished, and how long a body may stall.

use super::sniff;
use crate::config::settings::{Kind, Reader, Section, Setting};
use airwave_api::AssetType;
use std::time::Duration;

pub const TYPES: Setting = Setting::new(
    "AIRWAVE_UPLOAD_TYPES",
    Kind::Custom {
        default: "every type below",
        values: "comma-separated content types from: image/png, image/jpeg, image/gif, image/webp, video/mp4, video/quicktime, video/webm, audio/mpeg, audio/wav, audio/ogg, audio/mp4, font/woff, font/woff2, font/ttf, font/otf, text/plain",
        secret: false,
    },
    "The content types an upload may declare; its bytes are sniffed and must be that type.",
);
pub const MAX_IMAGE_MIB: Setting = Setting::int(
    "AIRWAVE_UPLOAD_MAX_IMAGE_MIB",
    50,
    1,
    1024,
    "MiB",
    "The largest image upload.",
);
pub const MAX_VIDEO_MIB: Setting = Setting::int(
    "AIRWAVE_UPLOAD_MAX_VIDEO_MIB",
    10_240,
    1,
    1_048_576,
    "MiB",
    "The largest video upload.",
);
pub const MAX_AUDIO_MIB: Setting = Setting::int(
    "AIRWAVE_UPLOAD_MAX_AUDIO_MIB",
    500,
    1,
    102_400,
    "MiB",
    "The largest audio upload.",
);
pub const MAX_FONT_MIB: Setting = Setting::int(
    "AIRWAVE_UPLOAD_MAX_FONT_MIB",
    20,
    1,
    1024,
    "MiB",
    "The largest font upload.",
);
pub const MAX_TEXT_MIB: Setting = Setting::int(
    "AIRWAVE_UPLOAD_MAX_TEXT_MIB",
    10,
    1,
    1024,
    "MiB",
    "The largest text upload.",
);
pub const EXPIRY_HOURS: Setting = Setting::int(
    "AIRWAVE_UPLOAD_EXPIRY_HOURS",
    24,
    1,
    720,
    "hours",
    "How long a resumable upload may stay unfinished after its last byte before it expires and its parts are removed.",
);
pub const IDLE_SECS: Setting = Setting::int(
    "AIRWAVE_UPLOAD_IDLE_SECS",
    60,
    5,
    3600,
    "s",
    "An upload body that sends nothing for this long is cut off (a resumable upload keeps what arrived).",
);

pub const ORPHAN_GRACE_MINUTES: Setting = Setting::int(
    "AIRWAVE_UPLOAD_ORPHAN_GRACE_MINUTES",
    60,
    5,
    10_080,
    "minutes",
    "How old a blob no row points at must be before the cleanup job removes it.",
);

pub fn section() -> Section {
    Section {
        title: "Uploads",
        intro: "Asset files: `POST /api/assets/{id}/upload` in one request, or resumable through tus at `/api/uploads` (see [storage.md](storage.md)).",
        settings: vec![
            TYPES,
            MAX_IMAGE_MIB,
            MAX_VIDEO_MIB,
            MAX_AUDIO_MIB,
            MAX_FONT_MIB,
            MAX_TEXT_MIB,
            EXPIRY_HOURS,
            IDLE_SECS,
            ORPHAN_GRACE_MINUTES,
        ],
    }
}

#[derive(Debug, Clone)]
pub struct UploadConfig {
    pub types: Vec<&'static sniff::Known>,
    max_image: u64,
    max_video: u64,
    max_audio: u64,
    max_font: u64,
    max_text: u64,
    pub expiry: Duration,
    pub idle: Duration,
    pub orphan_grace: Duration,
    /// How long a signed download link works (`AIRWAVE_STORAGE_URL_TTL_MINUTES`).
    pub download_ttl: Duration,
}

impl UploadConfig {
    pub fn read(r: &mut Reader) -> Self {
        let types = match r.raw(&TYPES.name) {
            None => sniff::KNOWN.iter().collect(),
            Some(v) => {
                let mut out = Vec::new();
                for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    match sniff::known(&t.to_ascii_lowercase()) {
                        Some(k) => out.push(k),
                        None => r.error(format!(
                            "{} has `{t}`, which this server cannot verify; it knows {}",
                            TYPES.name,
                            sniff::KNOWN
                                .iter()
                                .map(|k| k.mime)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    }
                }
                out
            }
        };
        let mib = |r: &mut Reader, s: &Setting| r.int(s).unsigned_abs() << 20;
        Self {
            types,
            max_image: mib(r, &MAX_IMAGE_MIB),
            max_video: mib(r, &MAX_VIDEO_MIB),
            max_audio: mib(r, &MAX_AUDIO_MIB),
            max_font: mib(r, &MAX_FONT_MIB),
            max_text: mib(r, &MAX_TEXT_MIB),
            expiry: r.secs(&EXPIRY_HOURS) * 3600,
            idle: r.secs(&IDLE_SECS),
            orphan_grace: r.secs(&ORPHAN_GRACE_MINUTES) * 60,
            download_ttl: r.secs(&crate::storage::settings::URL_TTL_MINUTES) * 60,
        }
    }

    /// The largest file an asset of this type may have, in bytes.
    pub fn max_bytes(&self, t: AssetType) -> u64 {
        match t {
            AssetType::Image => self.max_image,
            AssetType::Video => self.max_video,
            AssetType::Audio => self.max_audio,
            AssetType::Font => self.max_font,
            AssetType::Text => self.max_text,
        }
    }

    /// The accepted type of this name, if it is on the allow-list.
    pub fn allowed(&self, mime: &str) -> Option<&'static sniff::Known> {
        self.types.iter().copied().find(|k| k.mime == mime)
    }
}
