//! What a database holds, table by table: its rows and an order-independent checksum of their
//! contents (the wrapping sum of each row's hash: on PostgreSQL computed inside the database, see
//! [`PgMethod`]; on SQLite the first 128 bits of each row's sha256, summed here). Taken from the same snapshot a
//! backup dumps, and again from the database a drill restored; equal stats mean the same rows
//! came back. Rows stream: memory does not grow with the table.

use airwave_api::TableStatOut;
use futures_util::TryStreamExt as _;
use sha2::{Digest as _, Sha256};
use sqlx::{PgConnection, SqliteConnection};

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[derive(Default)]
struct Tally {
    rows: i64,
    sum: u128,
}

impl Tally {
    fn add(&mut self, row: &[u8]) {
        let h = Sha256::digest(row);
        let mut first = [0u8; 16];
        first.copy_from_slice(&h[..16]);
        self.sum = self.sum.wrapping_add(u128::from_be_bytes(first));
        self.rows += 1;
    }

    fn out(self, table: String) -> TableStatOut {
        TableStatOut {
            table,
            rows: self.rows,
            checksum: format!("{:032x}", self.sum),
        }
    }
}

/// Every ordinary table of a SQLite database (FTS5 virtual tables are left out; their shadow
/// tables are ordinary and counted).
pub async fn sqlite(conn: &mut SqliteConnection) -> sqlx::Result<Vec<TableStatOut>> {
    let tables: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::new();
    for (name, sql) in tables {
        if sql.is_some_and(|s| s.to_ascii_uppercase().starts_with("CREATE VIRTUAL")) {
            continue;
        }
        let cols: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT name FROM pragma_table_info({})",
            quote_literal(&name)
        ))
        .fetch_all(&mut *conn)
        .await?;
        if cols.is_empty() {
            continue;
        }
        let expr = cols
            .iter()
            .map(|c| format!("quote({})", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(" || char(31) || ");
        let mut tally = Tally::default();
        let sql = format!("SELECT {expr} FROM {}", quote_ident(&name));
        let mut rows = sqlx::query_scalar::<_, String>(&sql).fetch(&mut *conn);
        while let Some(r) = rows.try_next().await? {
            tally.add(r.as_bytes());
        }
        drop(rows);
        out.push(tally.out(name));
    }
    Ok(out)
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Session settings that fix how values print, so the same rows give the same text in any
/// session.
pub const PG_SESSION: &[&str] = &[
    "SET LOCAL TIME ZONE 'UTC'",
    "SET LOCAL DateStyle = 'ISO, YMD'",
    "SET LOCAL IntervalStyle = 'postgres'",
    "SET LOCAL extra_float_digits = 3",
    "SET LOCAL bytea_output = 'hex'",
];

/// How a PostgreSQL table is checksummed. The first two run inside PostgreSQL, so no row crosses
/// the connection; each sums a 64-bit hash of every row, wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgMethod {
    /// `hash_record_extended(row, 0)`: each column's own hash function, no text made (PostgreSQL
    /// 14+; a table with a column type that has no hash function — `json`, `xml`, `point` — takes
    /// [`PgMethod::Text`]). Written `r64:` + 16 hex digits.
    Record,
    /// `hashtextextended(row::text, 0)`, written `h64:` + 16 hex digits.
    Text,
    /// Backups taken before the in-database checksums: every row's text streamed here and hashed
    /// with sha256 (32 hex digits). A drill of such a backup compares this way.
    Streamed,
}

impl PgMethod {
    /// The method a recorded checksum was taken with.
    pub fn of_checksum(checksum: &str) -> Self {
        if checksum.starts_with("r64:") {
            Self::Record
        } else if checksum.starts_with("h64:") {
            Self::Text
        } else {
            Self::Streamed
        }
    }
}

/// Which method each table gets.
#[derive(Debug, Clone, Copy)]
pub enum Methods<'a> {
    /// The fastest that works for the table (a backup).
    Best,
    /// The one each table's recorded checksum was taken with (a drill or a restore compares
    /// against them); the fastest for a table they do not have.
    LikeRecorded(&'a [TableStatOut]),
    /// This one for every table.
    All(PgMethod),
}

/// Every table of the `public` schema, in the caller's transaction (whose snapshot it reads).
pub async fn postgres(
    conn: &mut PgConnection,
    methods: Methods<'_>,
) -> sqlx::Result<Vec<TableStatOut>> {
    for s in PG_SESSION {
        sqlx::query(s).execute(&mut *conn).await?;
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::new();
    for name in tables {
        let method = match methods {
            Methods::Best => PgMethod::Record,
            Methods::LikeRecorded(r) => r
                .iter()
                .find(|t| t.table == name)
                .map_or(PgMethod::Record, |t| PgMethod::of_checksum(&t.checksum)),
            Methods::All(m) => m,
        };
        let table = quote_ident(&name);
        if method == PgMethod::Record {
            // Tried under a savepoint: a column type without a hash function fails the query,
            // which must not abort the transaction (and its snapshot).
            sqlx::query("SAVEPOINT airwave_stats")
                .execute(&mut *conn)
                .await?;
            let sql = format!(
                "SELECT count(*)::int8, COALESCE(sum(hash_record_extended(t, 0)), 0)::text FROM {table} AS t"
            );
            match sqlx::query_as::<_, (i64, String)>(&sql)
                .fetch_one(&mut *conn)
                .await
            {
                Ok((rows, sum)) => {
                    sqlx::query("RELEASE SAVEPOINT airwave_stats")
                        .execute(&mut *conn)
                        .await?;
                    out.push(TableStatOut {
                        table: name,
                        rows,
                        checksum: folded("r64:", &sum),
                    });
                    continue;
                }
                Err(sqlx::Error::Database(_)) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT airwave_stats")
                        .execute(&mut *conn)
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        if method != PgMethod::Streamed {
            let sql = format!(
                "SELECT count(*)::int8, COALESCE(sum(hashtextextended(t::text, 0)), 0)::text FROM {table} AS t"
            );
            let (rows, sum): (i64, String) = sqlx::query_as(&sql).fetch_one(&mut *conn).await?;
            out.push(TableStatOut {
                table: name,
                rows,
                checksum: folded("h64:", &sum),
            });
            continue;
        }
        let mut tally = Tally::default();
        let sql = format!("SELECT t::text FROM {table} AS t");
        let mut rows = sqlx::query_scalar::<_, String>(&sql).fetch(&mut *conn);
        while let Some(r) = rows.try_next().await? {
            tally.add(r.as_bytes());
        }
        drop(rows);
        out.push(tally.out(name));
    }
    Ok(out)
}

/// PostgreSQL's exact sum (a `numeric` of at most about 25 digits: 2^63 times the rows), folded
/// to 64 bits behind `prefix`. Anything that does not parse (it cannot happen) keeps its text, so
/// it still compares.
fn folded(prefix: &str, sum: &str) -> String {
    match sum.parse::<i128>() {
        // Truncation is the wrapping sum: two's complement modulo 2^64.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(v) => format!("{prefix}{:016x}", v as u64),
        Err(_) => format!("{prefix}{sum}"),
    }
}

/// Tables whose rows or checksum differ between what a backup recorded and what came back.
pub fn differences(recorded: &[TableStatOut], restored: &[TableStatOut]) -> Vec<String> {
    let mut out = Vec::new();
    for r in recorded {
        match restored.iter().find(|t| t.table == r.table) {
            None => out.push(format!("{}: missing from the restore", r.table)),
            Some(t) if t.rows != r.rows => out.push(format!(
                "{}: {} rows restored, {} backed up",
                r.table, t.rows, r.rows
            )),
            Some(t) if t.checksum != r.checksum => out.push(format!(
                "{}: same {} rows, different contents",
                r.table, r.rows
            )),
            Some(_) => {}
        }
    }
    for t in restored {
        if !recorded.iter().any(|r| r.table == t.table) {
            out.push(format!("{}: in the restore, not in the backup", t.table));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_ignores_order_and_sees_contents() {
        let mut a = Tally::default();
        let mut b = Tally::default();
        for r in ["x", "y", "z"] {
            a.add(r.as_bytes());
        }
        for r in ["z", "x", "y"] {
            b.add(r.as_bytes());
        }
        let (a, b) = (a.out("t".into()), b.out("t".into()));
        assert_eq!(a, b);
        let mut c = Tally::default();
        for r in ["x", "y", "Z"] {
            c.add(r.as_bytes());
        }
        let c = c.out("t".into());
        assert_ne!(a.checksum, c.checksum);
        assert_eq!(
            differences(std::slice::from_ref(&a), &[c]),
            ["t: same 3 rows, different contents"]
        );
        assert!(differences(std::slice::from_ref(&a), std::slice::from_ref(&a)).is_empty());
    }

    #[test]
    fn in_database_sums_fold_to_64_bits() {
        assert_eq!(folded("r64:", "0"), "r64:0000000000000000");
        assert_eq!(folded("r64:", "-1"), "r64:ffffffffffffffff");
        // 2^64 + 5 wraps to 5.
        assert_eq!(
            folded("h64:", "18446744073709551621"),
            "h64:0000000000000005"
        );
        assert_eq!(PgMethod::of_checksum("r64:00"), PgMethod::Record);
        assert_eq!(PgMethod::of_checksum("h64:00"), PgMethod::Text);
        assert_eq!(PgMethod::of_checksum(&"0a".repeat(16)), PgMethod::Streamed);
    }
}
