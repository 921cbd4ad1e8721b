//! `airwave-server bench backup`: a backup and its drill of a database with `--assets` assets,
//! next to plain `pg_dump --format=custom` and `pg_restore` of the same database in the same run
//! (PostgreSQL; on SQLite only ours is measured). Lines: `bench=backup backend=… scenario=…`.
//! The assets are seeded once (kept for the next run: `--assets` is a minimum).

use crate::clock::SystemClock;
use crate::config::Config;
use crate::db::Db;
use crate::with_db;
use anyhow::Context as _;
use std::time::Instant;

const CLIENT: &str = "cli_00000000000000000000benchx";

async fn seed(db: &Db, assets: i64) -> anyhow::Result<i64> {
    let now = chrono::Utc::now();
    let have: i64 = with_db!(db, pool => {
        sqlx::query("INSERT INTO clients (id, name, created_at, updated_at) VALUES ($1, 'Bench', $2, $2) ON CONFLICT (id) DO NOTHING")
            .bind(CLIENT).bind(now).execute(pool).await?;
        sqlx::query_scalar("SELECT COUNT(*) FROM assets WHERE client_id = $1").bind(CLIENT).fetch_one(pool).await?
    });
    if have >= assets {
        return Ok(have);
    }
    let (from, to) = (have + 1, assets);
    match db {
        Db::Postgres(pool) => {
            sqlx::query(
                "INSERT INTO assets (id, client_id, type, name, metadata, storage_key, size, checksum, created_at, updated_at)
                 SELECT 'ast_bench' || lpad(g::text, 21, '0'), $1, 'image', 'Asset ' || g,
                        jsonb_build_object('description', 'summer campaign visual number ' || g),
                        'clients/' || $1 || '/assets/ast_bench' || lpad(g::text, 21, '0') || '/upl_x', 1000 + g % 5000,
                        'sha256:' || md5(g::text) || md5(g::text), $4, $4
                 FROM generate_series($2::bigint, $3::bigint) g",
            )
            .bind(CLIENT).bind(from).bind(to).bind(now)
            .execute(pool)
            .await?;
        }
        Db::Sqlite(pool) => {
            sqlx::query(
                "WITH RECURSIVE g(n) AS (SELECT $2 UNION ALL SELECT n + 1 FROM g WHERE n < $3)
                 INSERT INTO assets (id, client_id, type, name, metadata, storage_key, size, checksum, created_at, updated_at)
                 SELECT 'ast_bench' || printf('%021d', n), $1, 'image', 'Asset ' || n,
                        json_object('description', 'summer campaign visual number ' || n),
                        'clients/' || $1 || '/assets/ast_bench' || printf('%021d', n) || '/upl_x', 1000 + n % 5000,
                        'sha256:' || hex(randomblob(32)), $4, $4
                 FROM g",
            )
            .bind(CLIENT).bind(from).bind(to).bind(now)
            .execute(pool)
            .await?;
        }
    }
    Ok(assets)
}

pub async fn run(config: Config, assets: u64) -> anyhow::Result<()> {
    let state = crate::startup::build_state(config, std::sync::Arc::new(SystemClock)).await?;
    let backend = state.db.kind();
    let seeded = Instant::now();
    let n = seed(&state.db, i64::try_from(assets)?).await?;
    eprintln!(
        "bench backup: {n} assets ({:.1} s to seed)",
        seeded.elapsed().as_secs_f64()
    );

    let id = super::insert_for_cli(&state).await?;
    let started = Instant::now();
    super::run_backup(&state, id.as_str()).await?;
    let backup_s = started.elapsed().as_secs_f64();
    let b = super::get(&state, id.as_str()).await?;
    let started = Instant::now();
    let d = super::drill_for_cli(&state, id.as_str()).await?;
    let drill_s = started.elapsed().as_secs_f64();
    if d.status != airwave_api::DrillStatus::Passed {
        anyhow::bail!("the drill failed: {:?} {:?}", d.error, d.mismatches);
    }
    let restore_s = d.restore_ms.unwrap_or(0) as f64 / 1000.0;

    let (peer_dump, peer_restore) = match &state.db {
        Db::Postgres(_) => {
            let live = super::live_pg_url(&state)?;
            let work = state.config.data_dir.join("backups-work");
            tokio::fs::create_dir_all(&work).await?;
            let file = work.join("bench-peer.pgdump");
            let mut cmd = super::dump::pg_command("pg_dump", &live);
            cmd.args([
                "--format=custom",
                "--compress=6",
                "--no-owner",
                "--no-privileges",
            ])
            .arg(format!("--file={}", file.display()));
            let started = Instant::now();
            super::dump::run(cmd, "pg_dump").await?;
            let dump_s = started.elapsed().as_secs_f64();
            let scratch = format!("airwave_bench_peer_{:08x}", rand::random::<u32>());
            let target = super::dump::create_scratch(&live, &scratch).await?;
            let started = Instant::now();
            let restored = super::dump::pg_restore(&file, &target, false).await;
            let restore_s = started.elapsed().as_secs_f64();
            super::dump::drop_scratch(&live, &scratch).await?;
            let _ = tokio::fs::remove_file(&file).await;
            restored.context("plain pg_restore")?;
            (Some(dump_s), Some(restore_s))
        }
        Db::Sqlite(_) => (None, None),
    };
    let ratio = |ours: f64, peer: Option<f64>| {
        peer.map_or(String::new(), |p| {
            format!(" peer_secs={p:.2} vs_peer={:.2}x", ours / p)
        })
    };
    println!(
        "bench=backup backend={backend} scenario=backup assets={n} secs={backup_s:.2} bytes={}{}",
        b.size_bytes.unwrap_or(0),
        ratio(backup_s, peer_dump)
    );
    println!(
        "bench=backup backend={backend} scenario=restore assets={n} secs={restore_s:.2}{}",
        ratio(restore_s, peer_restore)
    );
    println!(
        "bench=backup backend={backend} scenario=drill assets={n} secs={drill_s:.2} tables={}",
        d.tables_checked.unwrap_or(0)
    );
    Ok(())
}
