//! The Backups view's requests and what the Overview says about backups. Backup and drill ids are
//! checked here before anything goes to the server (a bad one is an `invalid` error); the list of
//! backups is summed up in one line (the newest good backup's age, the last drill's result and
//! its restore time) with whether something is unmissably wrong: the newest backup failed, the
//! last finished drill failed, or backups were tried and none has succeeded.

use crate::{Error, ErrorKind};
use airwave_api::{BackupOut, BackupStatus, DrillOut, DrillStatus};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What the Overview shows about backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BackupsSummary {
    /// One line, e.g. "newest good backup 5 h ago, drill passed, RTO 1.2 s".
    pub text: String,
    /// Why the backups need someone now (the Overview's red banner); none: nothing is wrong.
    pub alarm: Option<String>,
    /// When the newest good backup started (its data is as of then).
    pub newest_good_at: Option<DateTime<Utc>>,
    /// A backup or a restore drill is queued or running.
    pub in_progress: bool,
}

/// A typed id's body: 26 characters of lowercase Crockford base32, as the server makes them.
const BODY_LEN: usize = 26;
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Invalid, message)
}

fn typed_id<'a>(id: &'a str, prefix: &str, what: &str) -> Result<&'a str, Error> {
    let ok = id
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|body| {
            body.len() == BODY_LEN
                && body.bytes().all(|b| ALPHABET.contains(&b))
                // 48 bits of milliseconds first: the first character is at most 7.
                && body.as_bytes()[0] <= b'7'
        });
    if ok {
        Ok(id)
    } else {
        let shown: String = id.chars().take(40).collect();
        Err(invalid(format!(
            "{shown:?} is not a {what} id ({prefix}_…)"
        )))
    }
}

/// A backup's id (`bkp_` and 26 base32 characters).
pub fn backup_id(id: &str) -> Result<&str, Error> {
    typed_id(id, "bkp", "backup")
}

/// A restore drill's id (`drl_` and 26 base32 characters).
pub fn drill_id(id: &str) -> Result<&str, Error> {
    typed_id(id, "drl", "drill")
}

fn backup_done(b: &BackupOut) -> bool {
    matches!(b.status, BackupStatus::Succeeded | BackupStatus::Failed)
}

fn drill_done(d: &DrillOut) -> bool {
    matches!(d.status, DrillStatus::Passed | DrillStatus::Failed)
}

/// The newest backup (by when it was requested) that succeeded.
fn newest_good(backups: &[BackupOut]) -> Option<&BackupOut> {
    backups
        .iter()
        .filter(|b| b.status == BackupStatus::Succeeded)
        .max_by_key(|b| b.created_at)
}

/// The newest backup that finished, well or not.
fn newest_finished(backups: &[BackupOut]) -> Option<&BackupOut> {
    backups
        .iter()
        .filter(|b| backup_done(b))
        .max_by_key(|b| b.created_at)
}

/// The last restore drill that finished, of any backup.
fn last_finished_drill(backups: &[BackupOut]) -> Option<&DrillOut> {
    backups
        .iter()
        .filter_map(|b| b.latest_drill.as_ref())
        .filter(|d| drill_done(d))
        .max_by_key(|d| d.finished_at.unwrap_or(d.created_at))
}

/// The first line of a server's message, at most `max` characters.
fn brief(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    if line.chars().count() > max {
        let cut: String = line.chars().take(max).collect();
        format!("{cut}…")
    } else {
        line.to_owned()
    }
}

/// Why a finished drill failed, in a few words.
fn drill_failure(d: &DrillOut) -> Option<String> {
    match (&d.error, d.mismatches.as_slice()) {
        (Some(e), _) => Some(brief(e, 160)),
        (None, []) => None,
        (None, [one]) => Some(brief(one, 160)),
        (None, many) => Some(format!(
            "{} tables differ ({})",
            many.len(),
            brief(&many[0], 120)
        )),
    }
}

/// Whether the backups are unmissably bad, and why: the newest finished backup failed, the last
/// finished restore drill failed, or backups finished and none succeeded. `None`: nothing to
/// shout about (none taken yet is the health component's to judge: it warns once one is overdue).
pub fn alarm(backups: &[BackupOut]) -> Option<String> {
    let mut problems = Vec::new();
    // None taken yet is not an alarm by itself: the server's `backups` health component warns
    // once the first scheduled one is overdue. Tried and never succeeded is.
    if newest_good(backups).is_none() && !backups.is_empty() && newest_finished(backups).is_some() {
        problems.push("no backup has succeeded".to_owned());
    }
    if let Some(b) = newest_finished(backups).filter(|b| b.status == BackupStatus::Failed) {
        // With no good backup at all that is said already; the newest failure says why.
        problems.push(match &b.error {
            Some(e) => format!("the newest backup failed: {}", brief(e, 160)),
            None => "the newest backup failed".to_owned(),
        });
    }
    if let Some(d) = last_finished_drill(backups).filter(|d| d.status == DrillStatus::Failed) {
        problems.push(match drill_failure(d) {
            Some(why) => format!("the last restore drill failed: {why}"),
            None => "the last restore drill failed".to_owned(),
        });
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// A duration in milliseconds as a person reads it: `850 ms`, `1.2 s`, `2 min 5 s`, `1 h 3 min`.
pub fn human_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1_000.0)
    } else if ms < 3_600_000 {
        let s = ms / 1_000;
        format!("{} min {} s", s / 60, s % 60)
    } else {
        let m = ms / 60_000;
        format!("{} h {} min", m / 60, m % 60)
    }
}

/// How long before `now` `then` was: `just now`, `12 min ago`, `5 h ago`, `3 d ago`.
pub fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let minutes = (now - then).num_minutes();
    if minutes < 1 {
        "just now".to_owned()
    } else if minutes < 60 {
        format!("{minutes} min ago")
    } else if minutes < 48 * 60 {
        format!("{} h ago", minutes / 60)
    } else {
        format!("{} d ago", minutes / (24 * 60))
    }
}

/// The Overview's line about `backups` as of `now`, and whether they are unmissably bad.
pub fn summary(backups: &[BackupOut], now: DateTime<Utc>) -> BackupsSummary {
    let good = newest_good(backups);
    let newest_good_at = good.map(|b| b.started_at.unwrap_or(b.created_at));
    let mut parts = Vec::new();
    match (good, newest_good_at) {
        (Some(b), Some(at)) => {
            parts.push(format!("newest good backup {}", ago(at, now)));
            if !b.latest_drill.as_ref().is_some_and(drill_done) {
                parts.push("not verified yet".to_owned());
            }
        }
        _ => parts.push("no good backup yet".to_owned()),
    }
    if let Some(d) = last_finished_drill(backups) {
        let of_older = good.is_some_and(|b| b.id != d.backup_id);
        parts.push(match (d.status, of_older) {
            (DrillStatus::Passed, false) => "drill passed".to_owned(),
            (DrillStatus::Passed, true) => "last drill (of an older backup) passed".to_owned(),
            (_, false) => "drill failed".to_owned(),
            (_, true) => "last drill (of an older backup) failed".to_owned(),
        });
        if let (DrillStatus::Passed, Some(ms)) = (d.status, d.restore_ms) {
            parts.push(format!("RTO {}", human_ms(ms)));
        }
    } else if good.is_some() {
        parts.push("never restored in a drill".to_owned());
    }
    let running = backups.iter().find(|b| !backup_done(b));
    let drilling = backups
        .iter()
        .filter_map(|b| b.latest_drill.as_ref())
        .find(|d| !drill_done(d));
    if let Some(b) = running {
        parts.push(match b.status {
            BackupStatus::Running => {
                format!("a backup is running ({} %)", b.progress.clamp(0, 100))
            }
            _ => "a backup is queued".to_owned(),
        });
    }
    if let Some(d) = drilling {
        parts.push(match d.status {
            DrillStatus::Running => format!("a drill is running ({} %)", d.progress.clamp(0, 100)),
            _ => "a drill is queued".to_owned(),
        });
    }
    BackupsSummary {
        text: parts.join(", "),
        alarm: alarm(backups),
        newest_good_at,
        in_progress: running.is_some() || drilling.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn now() -> DateTime<Utc> {
        "2026-12-02T12:00:00Z".parse().unwrap_or_default()
    }

    /// The `n`th backup, requested `hours_ago` hours before `now()`.
    fn backup(n: u32, status: BackupStatus, hours_ago: i64) -> BackupOut {
        let at = now() - Duration::hours(hours_ago);
        let done = matches!(status, BackupStatus::Succeeded | BackupStatus::Failed);
        BackupOut {
            id: format!("bkp_01jf{n:022}"),
            status,
            trigger: "manual".into(),
            database: "sqlite".into(),
            format: Some("sqlite-gzip".into()),
            size_bytes: Some(4096),
            sha256: Some("ab".repeat(32)),
            encrypted: false,
            progress: if done { 100 } else { 40 },
            duration_ms: done.then_some(800),
            error: (status == BackupStatus::Failed).then(|| "disk full\nat line 3".into()),
            tables: Vec::new(),
            created_at: at,
            started_at: Some(at),
            finished_at: done.then_some(at + Duration::seconds(1)),
            latest_drill: None,
        }
    }

    fn drilled(mut b: BackupOut, status: DrillStatus, hours_ago: i64) -> BackupOut {
        let at = now() - Duration::hours(hours_ago);
        let done = matches!(status, DrillStatus::Passed | DrillStatus::Failed);
        b.latest_drill = Some(DrillOut {
            id: format!("drl_{}", &b.id[4..]),
            backup_id: b.id.clone(),
            status,
            progress: if done { 100 } else { 50 },
            restore_ms: done.then_some(1_234),
            rpo_seconds: done.then_some(3_600),
            tables_checked: done.then_some(20),
            mismatches: if status == DrillStatus::Failed {
                vec!["assets: 1200 rows restored, 1201 backed up".into()]
            } else {
                Vec::new()
            },
            error: None,
            created_at: at,
            started_at: Some(at),
            finished_at: done.then_some(at + Duration::seconds(2)),
        });
        b
    }

    #[test]
    fn backup_and_drill_ids_are_checked() {
        let body = "01jf0000000000000000000000";
        assert_eq!(body.len(), BODY_LEN);
        assert!(backup_id(&format!("bkp_{body}")).is_ok());
        assert!(drill_id(&format!("drl_{body}")).is_ok());
        let bad: [String; 9] = [
            String::new(),
            "bkp_".into(),
            format!("drl_{body}"),
            format!("bkp_{body}0"),
            format!("bkp_{}", &body[1..]),
            format!("bkp_{}", body.to_uppercase()),
            // No u in Crockford's alphabet; a first character above 7; a path.
            "bkp_01jf000000000000000000000u".into(),
            "bkp_81jf0000000000000000000000".into(),
            "bkp_01jf00000000000000000000/.".into(),
        ];
        for id in bad {
            let e = backup_id(&id).err();
            assert_eq!(e.map(|e| e.kind), Some(ErrorKind::Invalid), "{id}");
        }
        assert!(drill_id(&format!("bkp_{body}")).is_err());
        let long = format!("bkp_{}", "x".repeat(500));
        let message = backup_id(&long)
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(
            message.len() < 100,
            "a long id is not repeated whole: {message}"
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(human_ms(850), "850 ms");
        assert_eq!(human_ms(1_234), "1.2 s");
        assert_eq!(human_ms(125_000), "2 min 5 s");
        assert_eq!(human_ms(3_780_000), "1 h 3 min");
        assert_eq!(human_ms(-5), "0 ms");
        assert_eq!(ago(now() - Duration::seconds(20), now()), "just now");
        assert_eq!(ago(now() + Duration::minutes(5), now()), "just now");
        assert_eq!(ago(now() - Duration::minutes(12), now()), "12 min ago");
        assert_eq!(ago(now() - Duration::hours(5), now()), "5 h ago");
        assert_eq!(ago(now() - Duration::hours(80), now()), "3 d ago");
    }

    #[test]
    fn a_good_verified_backup_sums_up_in_one_line() {
        let list = [
            drilled(
                backup(2, BackupStatus::Succeeded, 5),
                DrillStatus::Passed,
                4,
            ),
            backup(1, BackupStatus::Succeeded, 29),
        ];
        let s = summary(&list, now());
        assert_eq!(
            s.text,
            "newest good backup 5 h ago, drill passed, RTO 1.2 s"
        );
        assert_eq!(s.alarm, None);
        assert_eq!(s.newest_good_at, Some(now() - Duration::hours(5)));
        assert!(!s.in_progress);
    }

    #[test]
    fn unverified_and_running_work_is_said() {
        let list = [
            backup(3, BackupStatus::Running, 0),
            backup(2, BackupStatus::Succeeded, 5),
            drilled(
                backup(1, BackupStatus::Succeeded, 29),
                DrillStatus::Passed,
                28,
            ),
        ];
        let s = summary(&list, now());
        assert_eq!(
            s.text,
            "newest good backup 5 h ago, not verified yet, last drill (of an older backup) passed, RTO 1.2 s, a backup is running (40 %)"
        );
        assert_eq!(s.alarm, None, "a running backup after a good one is fine");
        assert!(s.in_progress);

        let never = summary(&[backup(1, BackupStatus::Succeeded, 1)], now());
        assert_eq!(
            never.text,
            "newest good backup 1 h ago, not verified yet, never restored in a drill"
        );
        let drilling = summary(
            &[drilled(
                backup(1, BackupStatus::Succeeded, 1),
                DrillStatus::Queued,
                0,
            )],
            now(),
        );
        assert!(drilling.in_progress);
        assert!(
            drilling.text.ends_with("a drill is queued"),
            "{}",
            drilling.text
        );
    }

    #[test]
    fn failures_and_no_good_backup_are_unmissable() {
        // None yet (or the first still running) is not an alarm: the health component says
        // when one is overdue.
        assert_eq!(alarm(&[]), None);
        assert_eq!(summary(&[], now()).text, "no good backup yet");
        assert_eq!(alarm(&[backup(1, BackupStatus::Queued, 0)]), None);
        // The newest finished backup failed, though an older one is good.
        let failed = [
            backup(2, BackupStatus::Failed, 1),
            drilled(
                backup(1, BackupStatus::Succeeded, 25),
                DrillStatus::Passed,
                24,
            ),
        ];
        assert_eq!(
            alarm(&failed).as_deref(),
            Some("the newest backup failed: disk full")
        );
        // A backup running after the failure does not clear it until it succeeds.
        let retrying = [
            backup(3, BackupStatus::Running, 0),
            failed[0].clone(),
            failed[1].clone(),
        ];
        assert!(alarm(&retrying).is_some());
        let recovered = [
            backup(3, BackupStatus::Succeeded, 0),
            failed[0].clone(),
            failed[1].clone(),
        ];
        assert_eq!(alarm(&recovered), None);
        // The last finished drill failed, with the table that differs.
        let bad_drill = [
            drilled(
                backup(2, BackupStatus::Succeeded, 2),
                DrillStatus::Failed,
                1,
            ),
            drilled(
                backup(1, BackupStatus::Succeeded, 26),
                DrillStatus::Passed,
                25,
            ),
        ];
        let s = summary(&bad_drill, now());
        assert_eq!(
            s.alarm.as_deref(),
            Some("the last restore drill failed: assets: 1200 rows restored, 1201 backed up")
        );
        assert_eq!(s.text, "newest good backup 2 h ago, drill failed");
        // An older failed drill does not count once a newer one passed.
        let fixed = [
            drilled(
                backup(2, BackupStatus::Succeeded, 2),
                DrillStatus::Passed,
                1,
            ),
            drilled(
                backup(1, BackupStatus::Succeeded, 26),
                DrillStatus::Failed,
                25,
            ),
        ];
        assert_eq!(alarm(&fixed), None);
        // Everything at once, in one sentence.
        let all = [backup(1, BackupStatus::Failed, 1)];
        assert_eq!(
            alarm(&all).as_deref(),
            Some("no backup has succeeded; the newest backup failed: disk full")
        );
    }
}
