//! The Backups view's commands: the backups with their latest restore drills, taking one now,
//! verifying one (a restore drill), polling either while it runs, and the Overview's summary.
//! Ids are checked by `airwave_console_core::backups` before a request is made; the server checks
//! roles (support reads; only operators and admins run and verify).

use crate::commands::client_for;
use crate::Console;
use airwave_api::{BackupOut, DrillOut};
use airwave_console_core::backups::{self, BackupsSummary};
use airwave_console_core::Error;
use tauri::State;

type Result<T> = std::result::Result<T, Error>;

/// The newest backups, each with its latest restore drill.
#[tauri::command]
pub async fn backups(console: State<'_, Console>, id: String) -> Result<Vec<BackupOut>> {
    let client = client_for(&console, &id).await?;
    Ok(client.list_backups().await?)
}

/// One backup (polled for `progress` and `status` while it runs).
#[tauri::command]
pub async fn backup(
    console: State<'_, Console>,
    id: String,
    backup_id: String,
) -> Result<BackupOut> {
    let backup_id = backups::backup_id(&backup_id)?;
    let client = client_for(&console, &id).await?;
    Ok(client.get_backup(backup_id).await?)
}

/// Takes a backup now (operators and admins): it is queued; poll it with `backup`.
#[tauri::command]
pub async fn run_backup(console: State<'_, Console>, id: String) -> Result<BackupOut> {
    let client = client_for(&console, &id).await?;
    Ok(client.run_backup().await?)
}

/// Restores a backup into a scratch database and compares it (operators and admins): the drill
/// is queued; poll it with `drill`.
#[tauri::command]
pub async fn verify_backup(
    console: State<'_, Console>,
    id: String,
    backup_id: String,
) -> Result<DrillOut> {
    let backup_id = backups::backup_id(&backup_id)?;
    let client = client_for(&console, &id).await?;
    Ok(client.verify_backup(backup_id).await?)
}

/// One restore drill (polled while it runs).
#[tauri::command]
pub async fn drill(console: State<'_, Console>, id: String, drill_id: String) -> Result<DrillOut> {
    let drill_id = backups::drill_id(&drill_id)?;
    let client = client_for(&console, &id).await?;
    Ok(client.get_drill(drill_id).await?)
}

/// The Overview's line about backups: the newest good one's age, the last drill's result and
/// RTO, and what is unmissably wrong, if anything.
#[tauri::command]
pub async fn backups_summary(console: State<'_, Console>, id: String) -> Result<BackupsSummary> {
    let client = client_for(&console, &id).await?;
    let list = client.list_backups().await?;
    Ok(backups::summary(&list, chrono::Utc::now()))
}
