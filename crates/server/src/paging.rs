//! Cursor pagination (shared by the features; not HTTP: routes parse the query into it): lists are ordered by id (newest first, ids sort by time) and the cursor is
//! the last id of the page, so pages stay stable while rows are added.

use crate::error::{Error, Result};
use airwave_api::Page;
use serde::Deserialize;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

/// `?limit=&cursor=`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// 1 to 200; 50 by default.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> Result<i64> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(l) if (1..=MAX_LIMIT).contains(&l) => Ok(l),
            Some(l) => Err(Error::invalid(
                "invalid_query",
                format!("`limit` must be between 1 and {MAX_LIMIT} (got {l})"),
            )),
        }
    }

    /// The cursor parsed as the list's id type.
    pub fn cursor<T: TryFrom<String, Error = crate::ids::IdError>>(&self) -> Result<Option<T>> {
        self.cursor
            .clone()
            .map(|c| {
                T::try_from(c).map_err(|e| {
                    Error::invalid("invalid_query", format!("`cursor` is invalid: {e}"))
                })
            })
            .transpose()
    }
}

/// Turns `limit + 1` fetched rows into a page and its next cursor.
pub fn page<T>(mut items: Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Page<T> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(key)
    } else {
        None
    };
    Page { items, next_cursor }
}
