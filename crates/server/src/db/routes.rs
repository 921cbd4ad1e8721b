//! `GET /api/ops/db/slow-queries`: the slowest statements (admins and operators — SQL text is
//! for the people who run the database).

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::http::extract::Query;
use crate::state::AppState;
use airwave_api::{Problem, Role, SlowQueriesOut};
use axum::extract::State;
use serde::Deserialize;

const OPERATORS: &[Role] = &[Role::Admin, Role::Operator];

pub fn routes() -> crate::feature::Routes {
    crate::feature::Routes::new().routes(utoipa_axum::routes!(slow_queries))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SlowQuery {
    /// 1 to 200; 50 by default.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// The slowest statements by mean time: PostgreSQL's `pg_stat_statements` when the extension is
/// installed in this database, else this server's log of statements slower than
/// `AIRWAVE_DB_SLOW_STATEMENT_MS` (with a `note` saying why on PostgreSQL).
#[utoipa::path(get, path = "/api/ops/db/slow-queries", tag = "operations", params(SlowQuery),
    responses((status = 200, body = SlowQueriesOut), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn slow_queries(
    State(s): State<AppState>,
    who: Principal,
    Query(q): Query<SlowQuery>,
) -> Result<axum::Json<SlowQueriesOut>> {
    who.require(OPERATORS)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(Error::invalid(
            "invalid_query",
            "`limit` must be between 1 and 200",
        ));
    }
    Ok(axum::Json(
        super::slow::slow_queries(&s.db, s.config.database.slow_statement, limit).await,
    ))
}
