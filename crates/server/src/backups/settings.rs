//! Backups' settings: when they run, how many are kept, whether a drill follows each, the
//! encryption key and where drills restore on PostgreSQL.

use crate::config::settings::{Kind, Reader, Section, Setting};
use secrecy::{ExposeSecret as _, SecretSlice};
use std::str::FromStr as _;

pub const SCHEDULE: Setting = Setting::new(
    "AIRWAVE_BACKUP_SCHEDULE",
    Kind::Custom {
        default: "`0 3 * * *` (03:00 UTC daily)",
        values: "a cron expression (5 fields, UTC; 6 with seconds first), or `off`",
        secret: false,
    },
    "When worker processes take a scheduled backup.",
);
pub const DRILL: Setting = Setting::new(
    "AIRWAVE_BACKUP_DRILL",
    Kind::Choice {
        default: "after-each",
        options: &["after-each", "off"],
    },
    "`after-each`: every scheduled backup is restored into a scratch database and compared (a restore drill).",
);
pub const KEEP_DAILY: Setting = Setting::int(
    "AIRWAVE_BACKUP_KEEP_DAILY",
    7,
    1,
    366,
    "",
    "Daily backups kept (the newest of each day).",
);
pub const KEEP_WEEKLY: Setting = Setting::int(
    "AIRWAVE_BACKUP_KEEP_WEEKLY",
    4,
    0,
    520,
    "",
    "Weekly backups kept (the newest of each ISO week).",
);
pub const KEEP_MONTHLY: Setting = Setting::int(
    "AIRWAVE_BACKUP_KEEP_MONTHLY",
    6,
    0,
    120,
    "",
    "Monthly backups kept (the newest of each month).",
);
pub const ENCRYPTION_KEY: Setting = Setting::new(
    "AIRWAVE_BACKUP_ENCRYPTION_KEY",
    Kind::Secret { min_len: 44 },
    "32 bytes, base64 (`openssl rand -base64 32`): backups are encrypted with AES-256-GCM (STREAM, 64 KiB segments). Keep it apart from the backups: without it they cannot be restored.",
);
pub const DRILL_DATABASE_URL: Setting = Setting::new(
    "AIRWAVE_BACKUP_DRILL_DATABASE_URL",
    Kind::Url {
        schemes: &["postgres", "postgresql"],
        default: None,
        secret: true,
    },
    "PostgreSQL: a server (and a role allowed to create databases) where drills restore into scratch databases; unset: the live database's server with its credentials.",
);

pub fn section() -> Section {
    Section {
        title: "Backups",
        intro: "Database backups, kept through the storage backend under `backups/`, and restore drills (see [backup-restore.md](backup-restore.md)).",
        settings: vec![SCHEDULE, DRILL, KEEP_DAILY, KEEP_WEEKLY, KEEP_MONTHLY, ENCRYPTION_KEY, DRILL_DATABASE_URL],
    }
}

#[derive(Clone)]
pub struct BackupConfig {
    /// `None`: no scheduled backups.
    pub schedule: Option<cron::Schedule>,
    pub schedule_text: String,
    pub drill_after_each: bool,
    pub keep_daily: usize,
    pub keep_weekly: usize,
    pub keep_monthly: usize,
    pub key: Option<SecretSlice<u8>>,
    pub drill_url: Option<url::Url>,
}

impl std::fmt::Debug for BackupConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupConfig")
            .field("schedule", &self.schedule_text)
            .field("drill_after_each", &self.drill_after_each)
            .field(
                "keep",
                &(self.keep_daily, self.keep_weekly, self.keep_monthly),
            )
            .field("key", &self.key.as_ref().map(|_| "[redacted]"))
            .field("drill_url", &self.drill_url.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// A 5-field cron expression gets a `0` seconds field (the `cron` crate counts seconds).
pub fn parse_schedule(text: &str) -> Result<cron::Schedule, cron::error::Error> {
    let fields = text.split_whitespace().count();
    let full = if fields == 5 {
        format!("0 {text}")
    } else {
        text.to_owned()
    };
    cron::Schedule::from_str(&full)
}

impl BackupConfig {
    pub fn read(r: &mut Reader) -> Self {
        let text = r.raw(&SCHEDULE.name).unwrap_or("0 3 * * *").to_owned();
        let schedule = if text == "off" {
            None
        } else {
            match parse_schedule(&text) {
                Ok(s) => Some(s),
                Err(e) => {
                    r.error(format!(
                        "{} is not a cron expression ({e}): `{text}`",
                        SCHEDULE.name
                    ));
                    None
                }
            }
        };
        let key = r.secret(&ENCRYPTION_KEY).and_then(|k| {
            use base64::Engine as _;
            match base64::engine::general_purpose::STANDARD.decode(k.expose_secret().trim()) {
                Ok(b) if b.len() == 32 => Some(SecretSlice::from(b)),
                _ => {
                    r.error(format!(
                        "{} must be 32 bytes in base64 (`openssl rand -base64 32`)",
                        ENCRYPTION_KEY.name
                    ));
                    None
                }
            }
        });
        let as_count = |v: i64| usize::try_from(v).unwrap_or(0);
        Self {
            schedule,
            schedule_text: text,
            drill_after_each: r.choice(&DRILL) == "after-each",
            keep_daily: as_count(r.int(&KEEP_DAILY)),
            keep_weekly: as_count(r.int(&KEEP_WEEKLY)),
            keep_monthly: as_count(r.int(&KEEP_MONTHLY)),
            key,
            drill_url: r.url(&DRILL_DATABASE_URL),
        }
    }
}
