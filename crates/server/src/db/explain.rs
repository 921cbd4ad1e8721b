//! `airwave-server db explain`: the plans of the hot queries, as the database would run them, so
//! an operator sees which indexes they use. PostgreSQL runs `EXPLAIN (ANALYZE, BUFFERS)` (the
//! queries are read-only `SELECT`s, run for real inside a transaction that is rolled back);
//! SQLite answers `EXPLAIN QUERY PLAN`. The queries are the shapes the API sends, with sample
//! values (a real client's id when there is one).

use super::Db;

/// One hot query, in each dialect.
struct Hot {
    name: &'static str,
    postgres: &'static str,
    sqlite: &'static str,
}

const HOT: &[Hot] = &[
    Hot {
        name: "assets by client",
        postgres: "SELECT a.id FROM assets a WHERE a.client_id = $1 ORDER BY a.id DESC LIMIT 51",
        sqlite: "SELECT a.id FROM assets a WHERE a.client_id = $1 ORDER BY a.id DESC LIMIT 51",
    },
    Hot {
        name: "executions by status",
        postgres: "SELECT e.id FROM executions e WHERE e.client_id = $1 AND e.status = 'queued' ORDER BY e.id DESC LIMIT 51",
        sqlite: "SELECT e.id FROM executions e WHERE e.client_id = $1 AND e.status = 'queued' ORDER BY e.id DESC LIMIT 51",
    },
    Hot {
        name: "approvals by status",
        postgres: "SELECT w.id FROM approval_workflows w WHERE w.client_id = $1 AND w.status = 'pending' ORDER BY w.id DESC LIMIT 51",
        sqlite: "SELECT w.id FROM approval_workflows w WHERE w.client_id = $1 AND w.status = 'pending' ORDER BY w.id DESC LIMIT 51",
    },
    Hot {
        name: "asset search",
        postgres: "SELECT a.id FROM assets a WHERE a.client_id = $1 AND to_tsvector('english', a.name || ' ' || COALESCE(a.metadata->>'description', '')) @@ plainto_tsquery('english', 'summer shoes') ORDER BY a.id DESC LIMIT 51",
        sqlite: "SELECT a.id FROM assets a WHERE a.client_id = $1 AND a.rowid IN (SELECT rowid FROM assets_fts WHERE assets_fts MATCH '\"summer\" \"shoes\"') ORDER BY a.id DESC LIMIT 51",
    },
];

/// A query's plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: &'static str,
    pub sql: &'static str,
    pub lines: Vec<String>,
    /// The indexes (and the FTS table) the plan names.
    pub indexes: Vec<String>,
}

/// The names in a plan that are indexes: ours are `idx_…`, the primary keys `…_pkey` (PostgreSQL)
/// or `sqlite_autoindex_…`, and SQLite's search runs on the `assets_fts` table.
fn indexes_in(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in lines {
        for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            let index = word.starts_with("idx_")
                || word.ends_with("_pkey")
                || word.starts_with("sqlite_autoindex_")
                || word == "assets_fts";
            if index && !out.iter().any(|w| w == word) {
                out.push(word.to_owned());
            }
        }
    }
    out
}

/// Plans every hot query. `no_seqscan` (PostgreSQL) turns sequential scans off, to show which
/// index a query would use on a table still too small for the planner to bother.
pub async fn explain(db: &Db, no_seqscan: bool) -> anyhow::Result<Vec<Plan>> {
    let mut out = Vec::with_capacity(HOT.len());
    match db {
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            let client: String = sqlx::query_scalar("SELECT id FROM clients ORDER BY id LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or_else(|| "cli_none".into());
            if no_seqscan {
                sqlx::query("SET LOCAL enable_seqscan = off")
                    .execute(&mut *tx)
                    .await?;
            }
            for h in HOT {
                let lines: Vec<String> =
                    sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, BUFFERS) {}", h.postgres))
                        .bind(&client)
                        .fetch_all(&mut *tx)
                        .await?;
                out.push(Plan {
                    name: h.name,
                    sql: h.postgres,
                    indexes: indexes_in(&lines),
                    lines,
                });
            }
            tx.rollback().await?;
        }
        Db::Sqlite(pool) => {
            let client: String = sqlx::query_scalar("SELECT id FROM clients ORDER BY id LIMIT 1")
                .fetch_optional(pool)
                .await?
                .unwrap_or_else(|| "cli_none".into());
            for h in HOT {
                let rows: Vec<(i64, i64, i64, String)> =
                    sqlx::query_as(&format!("EXPLAIN QUERY PLAN {}", h.sqlite))
                        .bind(&client)
                        .fetch_all(pool)
                        .await?;
                let lines: Vec<String> = rows.into_iter().map(|r| r.3).collect();
                out.push(Plan {
                    name: h.name,
                    sql: h.sqlite,
                    indexes: indexes_in(&lines),
                    lines,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_are_picked_out_of_plans() {
        let pg = vec![
            "Limit  (cost=0.15..8.17 rows=1 width=32)".to_owned(),
            "  ->  Index Scan Backward using idx_assets_client_id on assets a".to_owned(),
            "  ->  Bitmap Index Scan on idx_assets_search".to_owned(),
        ];
        assert_eq!(
            indexes_in(&pg),
            ["idx_assets_client_id", "idx_assets_search"]
        );
        let lite = vec![
            "SEARCH a USING INDEX idx_assets_client_id (client_id=?)".to_owned(),
            "LIST SUBQUERY 1".to_owned(),
            "SCAN assets_fts VIRTUAL TABLE INDEX 0:M2".to_owned(),
        ];
        assert_eq!(indexes_in(&lite), ["idx_assets_client_id", "assets_fts"]);
        assert!(indexes_in(&["Seq Scan on assets a".to_owned()]).is_empty());
    }
}
