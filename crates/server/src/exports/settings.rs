//! Exports' settings: how much one archive may hold.

use crate::config::settings::{Reader, Section, Setting};

pub const MAX_GIB: Setting = Setting::int(
    "AIRWAVE_EXPORT_MAX_GIB",
    20,
    1,
    1024,
    "GiB",
    "The largest archive an export may write; a campaign whose approved renders come to more fails with `export_too_large`.",
);
pub const MAX_RENDERS: Setting = Setting::int(
    "AIRWAVE_EXPORT_MAX_RENDERS",
    2000,
    1,
    100_000,
    "",
    "The most renders one export packages; a campaign with more approved renders is refused (409 `export_too_large`).",
);

pub fn section() -> Section {
    Section {
        title: "Exports",
        intro: "Campaign exports: a campaign's approved renders and a manifest in one zip, built by a job and stored under `clients/<client>/exports/` (see [storage.md](storage.md#campaign-exports)).",
        settings: vec![MAX_GIB, MAX_RENDERS],
    }
}

#[derive(Debug, Clone)]
pub struct ExportConfig {
    pub max_bytes: u64,
    pub max_renders: i64,
}

impl ExportConfig {
    pub fn read(r: &mut Reader) -> Self {
        Self {
            max_bytes: u64::try_from(r.int(&MAX_GIB)).unwrap_or(20) << 30,
            max_renders: r.int(&MAX_RENDERS),
        }
    }
}
