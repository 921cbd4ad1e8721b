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

/// How PostgreSQL tables are checksummed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgMethod {
    /// Inside PostgreSQL, so no row crosses the connection: the wrapping 64-bit sum of
    /// `hashtextextended(row::text, 0)` over the rows (the hash PostgreSQL's hash partitioning
    /// relies on, stable across versions), written `h64:` + 16 hex digits.
    InDatabase,
    /// Backups taken before the in-database checksum: every row's text streamed here and hashed
    /// with sha256 (32 hex digits). A drill of such a backup compares this way.
    Streamed,
}

/// The prefix of an in-database checksum.
pub const IN_DATABASE: &str = "h64:";

impl PgMethod {
    /// The method a backup's recorded stats were taken with.
    pub fn of(recorded: &[TableStatOut]) -> Self {
        if recorded.iter().all(|t| t.checksum.starts_with(IN_DATABASE)) {
            Self::InDatabase
        } else {
            Self::Streamed
        }
    }
}

/// Every table of the `public` schema, in the caller's transaction (whose snapshot it reads).
pub async fn postgres(
    conn: &mut PgConnection,
    method: PgMethod,
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
        if method == PgMethod::InDatabase {
            let sql = format!(
                "SELECT count(*)::int8, COALESCE(sum(hashtextextended(t::text, 0)), 0)::text FROM {} AS t",
                quote_ident(&name)
            );
            let (rows, sum): (i64, String) = sqlx::query_as(&sql).fetch_one(&mut *conn).await?;
            out.push(TableStatOut {
                table: name,
                rows,
                checksum: in_database_checksum(&sum),
            });
            continue;
        }
        let mut tally = Tally::default();
        let sql = format!("SELECT t::text FROM {} AS t", quote_ident(&name));
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
/// to 64 bits. Anything that does not parse (it cannot happen) keeps its text, so it still
/// compares.
fn in_database_checksum(sum: &str) -> String {
    match sum.parse::<i128>() {
        // Truncation is the wrapping sum: two's complement modulo 2^64.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(v) => format!("{IN_DATABASE}{:016x}", v as u64),
        Err(_) => format!("{IN_DATABASE}{sum}"),
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
        assert_eq!(in_database_checksum("0"), "h64:0000000000000000");
        assert_eq!(in_database_checksum("-1"), "h64:ffffffffffffffff");
        // 2^64 + 5 wraps to 5.
        assert_eq!(
            in_database_checksum("18446744073709551621"),
            "h64:0000000000000005"
        );
        let recorded = |c: &str| TableStatOut {
            table: "t".into(),
            rows: 1,
            checksum: c.into(),
        };
        assert_eq!(PgMethod::of(&[recorded("h64:00")]), PgMethod::InDatabase);
        assert_eq!(
            PgMethod::of(&[recorded("h64:00"), recorded("0a1b")]),
            PgMethod::Streamed
        );
    }
}
