//! Taking a dump and putting one back, on both databases.
//!
//! - **SQLite**: `VACUUM INTO` a file (a consistent copy taken online), stats from the copy, gzip.
//! - **PostgreSQL**: a `REPEATABLE READ` transaction exports its snapshot; `pg_dump --format=custom
//!   --snapshot=…` dumps exactly that snapshot while the stats are read from it too, so what the
//!   backup records is what it holds. A `pg_dump` older than the server is refused with a message
//!   saying which client to install. The password goes to the child in `PGPASSWORD`, never on its
//!   command line.
//!
//! Restores go the other way: gunzip into a file (SQLite), `pg_restore` into a database
//! (PostgreSQL). Everything passes through files in the work folder, so memory stays flat.

use super::snapshot;
use airwave_api::TableStatOut;
use sqlx::{Connection as _, PgPool, SqlitePool};
use std::path::{Path, PathBuf};
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Tool(String),
    #[error("{0}")]
    Crypt(#[from] super::crypt::CryptError),
}

/// How a backup file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    SqliteGzip,
    PgCustom,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::SqliteGzip => "sqlite-gzip",
            Format::PgCustom => "pg-custom",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sqlite-gzip" => Some(Format::SqliteGzip),
            "pg-custom" => Some(Format::PgCustom),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::SqliteGzip => "sqlite.gz",
            Format::PgCustom => "pgdump",
        }
    }
}

/// A dump on local disk, with what it holds.
pub struct Dumped {
    pub file: PathBuf,
    pub format: Format,
    pub tables: Vec<TableStatOut>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DumpError> + Send + 'static,
) -> Result<T, DumpError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DumpError::Tool(format!("a blocking step panicked: {e}")))?
}

pub async fn sqlite(pool: &SqlitePool, work: &Path, name: &str) -> Result<Dumped, DumpError> {
    let copy = work.join(format!("{name}.db"));
    let _ = tokio::fs::remove_file(&copy).await;
    sqlx::query("VACUUM INTO ?")
        .bind(copy.display().to_string())
        .execute(pool)
        .await?;
    let tables = sqlite_stats(&copy).await?;
    let file = work.join(format!("{name}.{}", Format::SqliteGzip.extension()));
    let (from, to) = (copy.clone(), file.clone());
    blocking(move || Ok(super::crypt::gzip(&from, &to)?)).await?;
    tokio::fs::remove_file(&copy).await?;
    Ok(Dumped {
        file,
        format: Format::SqliteGzip,
        tables,
    })
}

/// Stats of a SQLite file, opened read-only.
pub async fn sqlite_stats(path: &Path) -> Result<Vec<TableStatOut>, DumpError> {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts).await?;
    let stats = snapshot::sqlite(&mut conn).await?;
    conn.close().await?;
    Ok(stats)
}

/// The URL without its password, and the password (for `PGPASSWORD`).
fn split_password(url: &Url) -> (Url, Option<String>) {
    let mut bare = url.clone();
    let password = url.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    let _ = bare.set_password(None);
    (bare, password)
}

pub(crate) fn pg_command(tool: &str, url: &Url) -> tokio::process::Command {
    let (mut bare, mut password) = split_password(url);
    // Nothing of the query reaches the command line: `sslmode` goes in the environment, a
    // `password` there too, the rest (sqlx's own options) is dropped.
    let mut sslmode = None;
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "sslmode" => sslmode = Some(v.into_owned()),
            "password" if password.is_none() => password = Some(v.into_owned()),
            _ => {}
        }
    }
    bare.set_query(None);
    let mut cmd = tokio::process::Command::new(tool);
    cmd.arg(format!("--dbname={bare}"));
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    if let Some(m) = sslmode {
        cmd.env("PGSSLMODE", m);
    }
    cmd.env_remove("PGSERVICE").kill_on_drop(true);
    cmd
}

pub(crate) async fn run(mut cmd: tokio::process::Command, what: &str) -> Result<(), DumpError> {
    let out = cmd.output().await.map_err(|e| {
        DumpError::Tool(format!(
            "cannot run {what} ({e}): install the PostgreSQL client tools (postgresql-client)"
        ))
    })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String = stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
    Err(DumpError::Tool(format!(
        "{what} failed ({}): {tail}",
        out.status
    )))
}

/// The major version a `--version` line names (`pg_dump (PostgreSQL) 15.18 (Debian …)` → 15).
pub fn tool_major(version_line: &str) -> Option<u32> {
    version_line
        .split_whitespace()
        .find_map(|w| w.split('.').next()?.parse().ok().filter(|m: &u32| *m >= 7))
}

/// Refuses a client older than the server: pg_dump cannot dump a newer server.
pub async fn check_versions(pool: &PgPool, tool: &str) -> Result<(), DumpError> {
    let out = tokio::process::Command::new(tool)
        .arg("--version")
        .output()
        .await
        .map_err(|e| {
            DumpError::Tool(format!(
                "cannot run {tool} ({e}): install postgresql-client"
            ))
        })?;
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let client = tool_major(&line).ok_or_else(|| {
        DumpError::Tool(format!(
            "cannot read {tool}'s version from `{}`",
            line.trim()
        ))
    })?;
    let num: String = sqlx::query_scalar("SHOW server_version_num")
        .fetch_one(pool)
        .await?;
    let server = num.trim().parse::<u32>().unwrap_or(0) / 10_000;
    if client < server {
        return Err(DumpError::Tool(format!(
            "{tool} is version {client} but the server is PostgreSQL {server}: {tool} cannot work with a newer server; install postgresql-client-{server}"
        )));
    }
    Ok(())
}

pub async fn postgres(
    pool: &PgPool,
    url: &Url,
    work: &Path,
    name: &str,
) -> Result<Dumped, DumpError> {
    check_versions(pool, "pg_dump").await?;
    let file = work.join(format!("{name}.{}", Format::PgCustom.extension()));
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let snapshot_id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *tx)
        .await?;
    let mut cmd = pg_command("pg_dump", url);
    cmd.args([
        "--format=custom",
        "--compress=6",
        "--no-owner",
        "--no-privileges",
    ])
    .arg(format!("--snapshot={snapshot_id}"))
    .arg(format!("--file={}", file.display()));
    // The dump and the stats read the one snapshot, side by side; the transaction holding it
    // stays open until both are done.
    let (dumped, stats) = tokio::join!(
        run(cmd, "pg_dump"),
        snapshot::postgres(&mut tx, snapshot::Methods::Best)
    );
    let stats = stats?;
    dumped?;
    tx.commit().await?;
    Ok(Dumped {
        file,
        format: Format::PgCustom,
        tables: stats,
    })
}

/// Restores a custom-format dump into the database at `target` (which must exist).
/// `clean`: drop what the dump holds first (a restore over an existing database).
pub async fn pg_restore(file: &Path, target: &Url, clean: bool) -> Result<(), DumpError> {
    let mut cmd = pg_command("pg_restore", target);
    cmd.args([
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--single-transaction",
    ]);
    if clean {
        cmd.args(["--clean", "--if-exists"]);
    }
    cmd.arg(file);
    run(cmd, "pg_restore").await
}

/// Stats of a PostgreSQL database, each table checksummed like `recorded` (the stats they are
/// compared with).
pub async fn pg_stats(
    url: &Url,
    recorded: &[TableStatOut],
) -> Result<Vec<TableStatOut>, DumpError> {
    let mut conn = sqlx::PgConnection::connect(url.as_str()).await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let stats = snapshot::postgres(&mut tx, snapshot::Methods::LikeRecorded(recorded)).await?;
    tx.commit().await?;
    conn.close().await?;
    Ok(stats)
}

/// A scratch database on the server of `admin` (created now, dropped with [`drop_scratch`]).
/// The admin URL's query is dropped (a `dbname=` there would name another database), and the
/// connection is asked which database it reached before anything is restored into it.
pub async fn create_scratch(admin: &Url, name: &str) -> Result<Url, DumpError> {
    let mut admin = admin.clone();
    admin.set_query(None);
    let mut conn = sqlx::PgConnection::connect(admin.as_str()).await?;
    // A drill that died left its database behind: start clean.
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let mut url = admin;
    url.set_path(&format!("/{name}"));
    let mut check = sqlx::PgConnection::connect(url.as_str()).await?;
    let reached: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut check)
        .await?;
    check.close().await?;
    if reached != name {
        return Err(DumpError::Tool(format!(
            "the scratch URL reached database `{reached}`, not `{name}`: refusing to restore there"
        )));
    }
    Ok(url)
}

pub async fn drop_scratch(admin: &Url, name: &str) -> Result<(), DumpError> {
    let mut admin = admin.clone();
    admin.set_query(None);
    let mut conn = sqlx::PgConnection::connect(admin.as_str()).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Which server and database a URL reaches, as that server says: its start time, the
/// database's oid and name (two URLs that agree reach the same database).
pub async fn identity(url: &Url) -> Result<(String, u32, String), DumpError> {
    let opts: sqlx::postgres::PgConnectOptions = url.as_str().parse()?;
    let connect = sqlx::PgConnection::connect_with(&opts);
    let mut conn = tokio::time::timeout(std::time::Duration::from_secs(10), connect)
        .await
        .map_err(|_| DumpError::Tool("timed out connecting".into()))??;
    let row: (String, sqlx::postgres::types::Oid, String) = sqlx::query_as(
        "SELECT pg_postmaster_start_time()::text, d.oid, d.datname::text FROM pg_database d WHERE d.datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok((row.0, row.1 .0, row.2))
}

/// Whether two PostgreSQL URLs name the same database (host, port and database name).
pub fn same_pg_database(a: &Url, b: &Url) -> bool {
    let host = |u: &Url| u.host_str().unwrap_or("localhost").to_ascii_lowercase();
    let norm = |h: String| {
        if h == "127.0.0.1" || h == "::1" || h == "[::1]" {
            "localhost".to_owned()
        } else {
            h
        }
    };
    norm(host(a)) == norm(host(b))
        && a.port().unwrap_or(5432) == b.port().unwrap_or(5432)
        && a.path().trim_start_matches('/') == b.path().trim_start_matches('/')
}

/// The password of the live database, for a drill server given without one.
pub fn with_password_of(target: &Url, live: &crate::db::DatabaseUrl) -> Url {
    let mut out = target.clone();
    if let crate::db::DatabaseUrl::Postgres(l) = live {
        if out.password().is_none() && out.username() == l.username() {
            let _ = out.set_password(l.password());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_urls() {
        assert_eq!(
            tool_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(tool_major("pg_dump (PostgreSQL) 17.2"), Some(17));
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_pg_database(
            &u("postgres://a:b@127.0.0.1:5432/app"),
            &u("postgres://localhost/app")
        ));
        assert!(!same_pg_database(
            &u("postgres://localhost/app"),
            &u("postgres://localhost/app_drill")
        ));
        assert!(!same_pg_database(
            &u("postgres://db1/app"),
            &u("postgres://db2/app")
        ));
        let (bare, pw) = split_password(&u("postgres://u:p%40ss@h/db"));
        assert_eq!(
            (bare.as_str(), pw.as_deref()),
            ("postgres://u@h/db", Some("p@ss"))
        );
    }
}
