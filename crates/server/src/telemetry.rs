//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as text or JSON
//! (`AIRWAVE_LOG_FORMAT`). Request spans carry method, matched path and request id; no header or
//! body is logged, so tokens and passwords never reach the log. With error tracking on, a second
//! layer hands errors (events) and warnings (breadcrumbs) to Sentry, whatever `RUST_LOG` says.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"))
}

pub fn init(json: bool, sentry: bool) {
    if !sentry {
        // One global filter: callsites it disables cost nothing.
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr);
        let _ = if json {
            builder.json().try_init()
        } else {
            builder.try_init()
        };
        return;
    }
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().with_filter(filter()).boxed()
    } else {
        fmt.with_filter(filter()).boxed()
    };
    let sentry =
        crate::tracking::tracing_layer().with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(sentry)
        .try_init();
}
