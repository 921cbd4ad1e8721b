//! Backups proven by restore: backup → drill → restore with real data, on whichever database the
//! suite runs (scripts/test runs it on SQLite and on PostgreSQL), encrypted or not; a corrupted
//! backup fails its drill; the live database is refused; the schedule takes backups and drills
//! them by itself.

use airwave_api::{ApiClient, BackupOut, BackupStatus, DrillOut, DrillStatus, Role};
use airwave_tests::{Backend, TestApp};
use std::time::Duration;

/// Some of everything: users, a client, assets with files, a campaign's matrix and a render.
async fn real_data(app: &TestApp) {
    let (_, ada) = app.member("ada@example.com").await;
    let client = ada.create_client("Acme").await.unwrap();
    for i in 0..5 {
        app.image_asset(
            &ada,
            &client.id,
            &format!("logo-{i}"),
            crate::render::ONE_RED_PIXEL,
        )
        .await;
    }
    let m = airwave_tests::matrix_for(
        &ada,
        &client.id,
        serde_json::json!({"width": 16, "height": 16, "layers": []}),
    )
    .await;
    let e = ada.create_execution(&m, &Default::default()).await.unwrap();
    airwave_tests::finished_execution(&ada, &e.id).await;
}

/// Polls `get` until `done` says it finished (up to a minute).
async fn until_finished<T, F, Fut>(what: &str, get: F, done: impl Fn(&T) -> bool) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    for _ in 0..600 {
        let v = get().await;
        if done(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not finish");
}

async fn finished_backup(ops: &ApiClient, id: &str) -> BackupOut {
    until_finished(
        id,
        || async { ops.get_backup(id).await.unwrap() },
        |b: &BackupOut| matches!(b.status, BackupStatus::Succeeded | BackupStatus::Failed),
    )
    .await
}

async fn finished_drill(ops: &ApiClient, id: &str) -> DrillOut {
    until_finished(
        id,
        || async { ops.get_drill(id).await.unwrap() },
        |d: &DrillOut| matches!(d.status, DrillStatus::Passed | DrillStatus::Failed),
    )
    .await
}

async fn backup_and_drill(app: &TestApp, ops: &ApiClient) -> (BackupOut, DrillOut) {
    let queued = ops.run_backup().await.unwrap();
    assert_eq!(queued.status, BackupStatus::Queued);
    let b = finished_backup(ops, &queued.id).await;
    assert_eq!(b.status, BackupStatus::Succeeded, "{:?}", b.error);
    let assets = b
        .tables
        .iter()
        .find(|t| t.table == "assets")
        .expect("the assets table");
    assert_eq!(assets.rows, app.db.count("assets").await);
    let d = ops.verify_backup(&b.id).await.unwrap();
    let d = finished_drill(ops, &d.id).await;
    (b, d)
}

#[tokio::test]
async fn a_backup_and_its_drill_restore_the_same_rows() {
    let app = TestApp::spawn().await;
    real_data(&app).await;
    let (_, ops) = app.user_with_role("ops@example.com", Role::Operator).await;
    let (b, d) = backup_and_drill(&app, &ops).await;
    assert_eq!(
        b.database,
        if app.backend == Backend::Postgres {
            "postgres"
        } else {
            "sqlite"
        }
    );
    assert_eq!(
        b.format.as_deref(),
        Some(if app.backend == Backend::Postgres {
            "pg-custom"
        } else {
            "sqlite-gzip"
        })
    );
    assert!(!b.encrypted);
    assert!(b.size_bytes.unwrap() > 0 && b.sha256.as_ref().unwrap().len() == 64);
    assert_eq!(
        d.status,
        DrillStatus::Passed,
        "{:?} {:?}",
        d.error,
        d.mismatches
    );
    assert!(d.restore_ms.is_some() && d.rpo_seconds.is_some_and(|r| r >= 0));
    assert_eq!(d.tables_checked, Some(b.tables.len() as i32));
    assert!(d.mismatches.is_empty());
    // The list shows it with its drill; support staff may look, not act.
    let listed = ops.list_backups().await.unwrap();
    assert_eq!(listed[0].id, b.id);
    assert_eq!(
        listed[0].latest_drill.as_ref().map(|d| d.status),
        Some(DrillStatus::Passed)
    );
    let (_, support) = app
        .user_with_role("support@example.com", Role::Support)
        .await;
    assert_eq!(support.list_backups().await.unwrap().len(), 1);
    assert_eq!(support.run_backup().await.unwrap_err().status(), Some(403));
    assert_eq!(
        support.verify_backup(&b.id).await.unwrap_err().status(),
        Some(403)
    );
    let ada = app.api.with_token(app.login("ada@example.com").await.token);
    assert_eq!(ada.list_backups().await.unwrap_err().status(), Some(403));
    // The backups health component is there.
    let health = app.api.health().await.unwrap();
    assert!(
        health.checks.contains_key("backups:age"),
        "{:?}",
        health.checks.keys()
    );
}

#[tokio::test]
async fn an_encrypted_backup_is_sealed_and_its_drill_passes() {
    let app = TestApp::spawn_with(&[(
        "AIRWAVE_BACKUP_ENCRYPTION_KEY",
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    )])
    .await;
    real_data(&app).await;
    let (_, ops) = app.user_with_role("ops@example.com", Role::Operator).await;
    let (b, d) = backup_and_drill(&app, &ops).await;
    assert!(b.encrypted);
    assert_eq!(
        d.status,
        DrillStatus::Passed,
        "{:?} {:?}",
        d.error,
        d.mismatches
    );
    let key = app
        .db
        .text("SELECT storage_key FROM backups WHERE id = $1", &b.id)
        .await
        .unwrap();
    assert!(key.ends_with(".aes"), "{key}");
    let stored = std::fs::read(app.data_dir().join("blobs").join(&key)).unwrap();
    assert!(stored.starts_with(b"AWBK1\0"));
}

#[tokio::test]
async fn a_corrupted_backup_fails_its_drill() {
    let app = TestApp::spawn().await;
    real_data(&app).await;
    let (_, ops) = app.user_with_role("ops@example.com", Role::Operator).await;
    let queued = ops.run_backup().await.unwrap();
    let b = finished_backup(&ops, &queued.id).await;
    let key = app
        .db
        .text("SELECT storage_key FROM backups WHERE id = $1", &b.id)
        .await
        .unwrap();
    let path = app.data_dir().join("blobs").join(&key);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    let d = ops.verify_backup(&b.id).await.unwrap();
    let d = finished_drill(&ops, &d.id).await;
    assert_eq!(d.status, DrillStatus::Failed);
    assert!(
        d.error.as_deref().unwrap_or_default().contains("corrupt"),
        "{:?}",
        d.error
    );
    // The health component says so.
    let health = app.api.health().await.unwrap();
    let c = &health.checks["backups:age"][0];
    assert_eq!(c.status, airwave_api::HealthStatus::Warn, "{:?}", c.output);
    assert!(c
        .output
        .as_deref()
        .unwrap_or_default()
        .contains("drill failed"));
}

/// A scratch target: a SQLite path in the data dir, or a new PostgreSQL database.
async fn scratch_target(app: &TestApp, name: &str) -> String {
    match app.backend {
        Backend::Sqlite => format!(
            "sqlite://{}",
            app.data_dir().join(format!("{name}.db")).display()
        ),
        Backend::Postgres => {
            let admin = std::env::var("AIRWAVE_TEST_PG_URL").unwrap();
            let db = format!("{name}_{:08x}", rand::random::<u32>());
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                .await
                .unwrap();
            sqlx::query(&format!("CREATE DATABASE {db}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let mut u = url::Url::parse(&admin).unwrap();
            u.set_path(&db);
            u.to_string()
        }
    }
}

async fn count_in(target: &str, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    if target.starts_with("sqlite://") {
        let pool = sqlx::SqlitePool::connect(target).await.unwrap();
        sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(target).await.unwrap();
        sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap()
    }
}

#[tokio::test]
async fn the_cli_backs_up_drills_and_restores_and_refuses_the_live_database() {
    let app = TestApp::spawn().await;
    real_data(&app).await;
    let out = app.cli(&["backup", "run", "--drill"], &[], None).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("succeeded") && stdout.contains("passed") && stdout.contains("RTO"),
        "{stdout}"
    );
    let id = stdout.split_whitespace().next().unwrap().to_owned();
    assert!(id.starts_with("bkp_"), "{stdout}");

    // The restore needs only the blob store: with the live database unreachable it still works.
    let target = scratch_target(&app, "restored").await;
    let lost = match app.backend {
        Backend::Sqlite => format!(
            "sqlite://{}",
            app.data_dir().join("gone/nothing.db").display()
        ),
        Backend::Postgres => "postgres://nobody@127.0.0.1:1/gone".to_owned(),
    };
    let out = app
        .cli(
            &["backup", "restore", &id, "--target", &target],
            &[("DATABASE_URL", &lost)],
            None,
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !app.data_dir().join("gone").exists(),
        "the lost database was not created"
    );
    // Tables the running server does not write to meanwhile (events and jobs go on).
    for table in ["users", "clients", "assets", "executions", "campaigns"] {
        assert_eq!(
            count_in(&target, table).await,
            app.db.count(table).await,
            "{table}"
        );
    }

    // The live database: refused without --force-live, and with it unless its name is typed.
    let live = app
        .env()
        .iter()
        .find(|(k, _)| k == "DATABASE_URL")
        .unwrap()
        .1
        .clone();
    let out = app
        .cli(&["backup", "restore", &id, "--target", &live], &[], None)
        .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("live database"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = app
        .cli(
            &["backup", "restore", &id, "--target", &live, "--force-live"],
            &[],
            Some("nope\n"),
        )
        .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not confirmed"));
    // A restore of a backup that is not there is a clear error.
    let out = app
        .cli(
            &[
                "backup",
                "restore",
                "bkp_01jz0000000000000000000000",
                "--target",
                &target,
            ],
            &[],
            None,
        )
        .await;
    assert!(!out.status.success());
}

#[tokio::test]
async fn the_schedule_takes_a_backup_and_drills_it() {
    // One due time, a few seconds from now (cron with seconds, UTC).
    use chrono::Timelike as _;
    let at = chrono::Utc::now() + chrono::Duration::seconds(8);
    let schedule = format!("{} {} {} * * *", at.second(), at.minute(), at.hour());
    let app = TestApp::spawn_with(&[("AIRWAVE_BACKUP_SCHEDULE", schedule.as_str())]).await;
    real_data(&app).await;
    let (_, ops) = app.user_with_role("ops@example.com", Role::Operator).await;
    let mut found = None;
    for _ in 0..300 {
        let list = ops.list_backups().await.unwrap();
        if let Some(b) = list.iter().find(|b| {
            b.trigger == "scheduled"
                && b.latest_drill
                    .as_ref()
                    .is_some_and(|d| matches!(d.status, DrillStatus::Passed | DrillStatus::Failed))
        }) {
            found = Some(b.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let b = found.expect("a scheduled backup with a finished drill");
    let d = b.latest_drill.unwrap();
    assert_eq!(
        d.status,
        DrillStatus::Passed,
        "{:?} {:?}",
        d.error,
        d.mismatches
    );
    assert!(d.restore_ms.is_some() && d.rpo_seconds.is_some());
}

/// PostgreSQL checksums are taken inside the database (per row's record hash, or its text's hash
/// for a table with an unhashable column type), and the drill passes; a backup recorded with the
/// streamed (sha256) checksums of earlier versions still drills — the drill checksums the
/// restore the way the backup was — and a streamed checksum that differs still fails it.
#[tokio::test]
async fn a_backup_recorded_with_streamed_checksums_still_drills() {
    use airwave_server::backups::snapshot::{self, Methods, PgMethod};
    use sqlx::Connection as _;
    let app = TestApp::spawn().await;
    if app.backend != Backend::Postgres {
        return; // SQLite's checksums are the streamed kind already
    }
    real_data(&app).await;
    // A column type without a hash function (json): that table is checksummed from its rows'
    // text instead, inside the database too.
    app.db
        .execute("CREATE TABLE zz_notes (id int PRIMARY KEY, body json)")
        .await;
    app.db
        .execute(r#"INSERT INTO zz_notes VALUES (1, '{"a": 1}'), (2, '[]')"#)
        .await;
    let (_, ops) = app.user_with_role("ops@example.com", Role::Operator).await;
    let queued = ops.run_backup().await.unwrap();
    let b = finished_backup(&ops, &queued.id).await;
    for t in &b.tables {
        let want = if t.table == "zz_notes" {
            "h64:"
        } else {
            "r64:"
        };
        assert!(t.checksum.starts_with(want), "{t:?}");
    }
    drill_passes(&ops, &b.id).await;
    // Restore it elsewhere and take the streamed stats of exactly what it holds.
    let target = scratch_target(&app, "legacy").await;
    let out = app
        .cli(
            &["backup", "restore", &b.id, "--target", &target],
            &[],
            None,
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut conn = sqlx::PgConnection::connect(&target).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let mut legacy = snapshot::postgres(&mut tx, Methods::All(PgMethod::Streamed))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        legacy
            .iter()
            .map(|t| (&t.table, t.rows))
            .collect::<Vec<_>>(),
        b.tables
            .iter()
            .map(|t| (&t.table, t.rows))
            .collect::<Vec<_>>()
    );
    assert!(legacy.iter().all(|t| t.checksum.len() == 32));
    let record = |tables: &[airwave_api::TableStatOut]| {
        format!(
            "UPDATE backups SET tables = '{}' WHERE id = '{}'",
            serde_json::to_string(tables).unwrap().replace('\'', "''"),
            b.id
        )
    };
    app.db.execute(&record(&legacy)).await;
    drill_passes(&ops, &b.id).await;
    // One streamed checksum off: that table is named.
    let assets = legacy.iter_mut().find(|t| t.table == "assets").unwrap();
    assets.checksum = "0".repeat(32);
    app.db.execute(&record(&legacy)).await;
    let d = ops.verify_backup(&b.id).await.unwrap();
    let d = finished_drill(&ops, &d.id).await;
    assert_eq!(d.status, DrillStatus::Failed);
    assert!(
        d.mismatches.iter().any(|m| m.starts_with("assets: same")),
        "{:?}",
        d.mismatches
    );
}

/// Drills backup `id` and expects it to pass.
async fn drill_passes(ops: &ApiClient, id: &str) {
    let d = ops.verify_backup(id).await.unwrap();
    let d = finished_drill(ops, &d.id).await;
    assert_eq!(
        d.status,
        DrillStatus::Passed,
        "{:?} {:?}",
        d.error,
        d.mismatches
    );
}
