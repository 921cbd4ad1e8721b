//! The schema carries every index of the production-readiness plan (Day 10).

use airwave_tests::{Backend, TestApp};

const PLAN_INDEXES: [&str; 9] = [
    "idx_assets_client_id",
    "idx_assets_created_at",
    "idx_assets_type",
    "idx_executions_status",
    "idx_executions_matrix_id",
    "idx_approval_workflows_status",
    "idx_assets_client_type",
    "idx_executions_client_status",
    "idx_assets_search",
];

#[tokio::test]
async fn every_plan_index_exists() {
    let app = TestApp::spawn().await;
    let indexes = match app.backend {
        Backend::Postgres => {
            app.db
                .texts("SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public'")
                .await
        }
        Backend::Sqlite => {
            app.db
                .texts("SELECT name FROM sqlite_master WHERE type = 'index'")
                .await
        }
    };
    for name in PLAN_INDEXES {
        if name == "idx_assets_search" && app.backend == Backend::Sqlite {
            // SQLite's equivalent is the FTS5 table.
            let fts = app
                .db
                .texts(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'assets_fts'",
                )
                .await;
            assert_eq!(fts, ["assets_fts"]);
            continue;
        }
        assert!(
            indexes.iter().any(|i| i == name),
            "{name} missing; have {indexes:?}"
        );
    }
    if app.backend == Backend::Postgres {
        let def = app
            .db
            .text(
                "SELECT indexdef FROM pg_indexes WHERE indexname = $1",
                "idx_assets_search",
            )
            .await
            .unwrap();
        assert!(
            def.contains("USING gin") && def.contains("to_tsvector('english'"),
            "{def}"
        );
        let def = app
            .db
            .text(
                "SELECT indexdef FROM pg_indexes WHERE indexname = $1",
                "idx_assets_created_at",
            )
            .await
            .unwrap();
        assert!(def.contains("created_at DESC"), "{def}");
    }
}

#[tokio::test]
async fn the_postgres_search_uses_the_gin_index() {
    let app = TestApp::spawn().await;
    if app.backend != Backend::Postgres {
        return; // an EXPLAIN of PostgreSQL's planner; SQLite's FTS5 table is an index by nature
    }
    let airwave_tests::TestDb::Postgres(pool) = &app.db else {
        unreachable!()
    };
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM assets a WHERE to_tsvector('english', a.name || ' ' || COALESCE(a.metadata->>'description', '')) @@ plainto_tsquery('english', 'beach')",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("idx_assets_search"), "{plan}");
}

#[tokio::test]
async fn migrate_is_idempotent() {
    let app = TestApp::spawn().await;
    for _ in 0..2 {
        let out = app.cli(&["migrate"], &[], None).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn db_explain_shows_the_indexes_the_hot_queries_use() {
    let app = TestApp::spawn().await;
    let (_, ada) = app.member("ada@example.com").await;
    ada.create_client("Acme").await.unwrap();
    let out = app.cli(&["db", "explain", "--no-seqscan"], &[], None).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uses = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("== {name} (")))
            .unwrap_or_else(|| panic!("no plan for {name}:\n{text}"))
            .to_owned()
    };
    assert!(
        uses("assets by client").contains("idx_assets_client"),
        "{text}"
    );
    assert!(
        uses("executions by status").contains("idx_executions_client_status"),
        "{text}"
    );
    assert!(!uses("approvals by status").contains("no index"), "{text}");
    let search = uses("asset search");
    match app.backend {
        Backend::Postgres => assert!(
            search.contains("idx_assets_search") || search.contains("idx_assets_client"),
            "{text}"
        ),
        Backend::Sqlite => assert!(search.contains("assets_fts"), "{text}"),
    }
    if app.backend == Backend::Postgres {
        assert!(
            text.contains("Buffers:") || text.contains("Execution Time"),
            "ANALYZE ran: {text}"
        );
    }
}

#[tokio::test]
async fn the_statement_timeout_cancels_a_long_statement() {
    let app = TestApp::spawn().await;
    if app.backend != Backend::Postgres {
        return; // SQLite has no statement timeout: the setting is its busy timeout there
    }
    let url = app
        .env()
        .iter()
        .find(|(k, _)| k == "DATABASE_URL")
        .map(|(_, v)| v.clone())
        .unwrap();
    let vars: std::collections::BTreeMap<String, String> = [
        ("DATABASE_URL".to_owned(), url),
        (
            "AIRWAVE_DB_STATEMENT_TIMEOUT_MS".to_owned(),
            "200".to_owned(),
        ),
        (
            "AIRWAVE_DATA_DIR".to_owned(),
            app.data_dir().display().to_string(),
        ),
    ]
    .into();
    let config = airwave_server::config::Config::from_vars(&vars).unwrap();
    let db = airwave_server::db::Db::connect(&config.database)
        .await
        .unwrap();
    let airwave_server::db::Db::Postgres(pool) = &db else {
        unreachable!()
    };
    let err = sqlx::query("SELECT pg_sleep(5)")
        .execute(pool)
        .await
        .unwrap_err();
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("57014"), "query_canceled: {err}");
    // The connection stays usable.
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
}

/// The slow-statement log, end to end: sqlx reports each statement over the threshold and the
/// server folds them into `/api/ops/db/slow-queries`. At 0 ms every statement is over it, so what
/// the log must hold is certain (no timing in the test).
#[tokio::test]
async fn slow_statements_are_logged_and_listed_without_their_parameters() {
    use airwave_api::{Role, SlowQuerySource};
    let app = TestApp::spawn_with(&[("AIRWAVE_DB_SLOW_STATEMENT_MS", "0")]).await;
    let (_, ops) = app
        .user_with_role("slow-ops@example.com", Role::Operator)
        .await;
    for _ in 0..3 {
        ops.list_backups().await.unwrap();
    }
    let out = ops.slow_queries(200).await.unwrap();
    assert_eq!(out.source, SlowQuerySource::SlowLog);
    assert_eq!(out.threshold_ms, 0);
    if app.backend == Backend::Postgres {
        let note = out.note.as_deref().unwrap_or_default();
        assert!(note.contains("not installed"), "{note}");
    } else {
        assert_eq!(out.note, None);
    }
    let listed = backups_listing(&out);
    assert!(listed.calls >= 3, "{listed:?}");
    assert!(listed.max_ms >= listed.mean_ms && listed.total_ms >= listed.max_ms);
    assert!(listed.last_seen_at.is_some());
    // The statements carry placeholders, never the values bound to them (the operator's e-mail
    // went into the token lookup and the user's row).
    assert!(
        !out.queries.iter().any(|q| q.query.contains("slow-ops@")),
        "{:#?}",
        out.queries
    );
    // Sorted slowest first, bounded.
    assert!(out.queries.windows(2).all(|w| w[0].mean_ms >= w[1].mean_ms));
    let r = app
        .http()
        .get(app.base.join("/api/ops/db/slow-queries?limit=0").unwrap())
        .bearer_auth(ops.token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // SQL is for the people who run the database.
    let (_, support) = app
        .user_with_role("slow-support@example.com", Role::Support)
        .await;
    assert_eq!(
        support.slow_queries(50).await.unwrap_err().status(),
        Some(403)
    );
    assert_eq!(
        app.api.slow_queries(50).await.unwrap_err().status(),
        Some(401)
    );
}

/// On PostgreSQL with `pg_stat_statements` installed in the database, the numbers are its own
/// (every statement, every instance).
#[tokio::test]
async fn slow_queries_read_pg_stat_statements_when_it_is_installed() {
    use airwave_api::{Role, SlowQuerySource};
    let app = TestApp::spawn().await;
    if app.backend != Backend::Postgres {
        return; // a PostgreSQL extension; the SQLite run has the slow log (above)
    }
    app.db
        .execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await;
    // From here on: what start-up ran (the migrations' DDL) does not crowd the listing.
    app.db.execute("SELECT pg_stat_statements_reset()").await;
    let (_, ops) = app
        .user_with_role("pgss-ops@example.com", Role::Operator)
        .await;
    ops.list_backups().await.unwrap();
    let out = ops.slow_queries(200).await.unwrap();
    assert_eq!(
        out.source,
        SlowQuerySource::PgStatStatements,
        "{:?}",
        out.note
    );
    assert_eq!(out.note, None);
    let listed = backups_listing(&out);
    assert!(listed.calls >= 1 && listed.last_seen_at.is_none());
}

/// The backups listing's statement among the slow queries.
fn backups_listing(out: &airwave_api::SlowQueriesOut) -> &airwave_api::SlowQueryOut {
    out.queries
        .iter()
        .find(|q| q.query.contains("FROM backups ORDER BY created_at DESC"))
        .unwrap_or_else(|| panic!("no backups listing in {:#?}", out.queries))
}
