//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as text or JSON
//! (`AIRWAVE_LOG_FORMAT`). Request spans carry method, matched path and request id; no header or
//! body is logged, so tokens and passwords never reach the log. Whatever `RUST_LOG` says, sqlx's
//! slow-statement events reach the slow-statement log (`db::slow`), and with error tracking on,
//! errors (events) and warnings (breadcrumbs) reach Sentry. Each layer has its own filter; a
//! callsite that all of them disable costs nothing.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"))
}

pub fn init(json: bool, sentry: bool) {
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().with_filter(filter()).boxed()
    } else {
        fmt.with_filter(filter()).boxed()
    };
    let sentry = sentry.then(|| {
        crate::tracking::tracing_layer().with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(crate::db::slow::layer())
        .with(sentry)
        .try_init();
}
