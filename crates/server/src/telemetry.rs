//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as text or JSON
//! (`AIRWAVE_LOG_FORMAT`). Request spans carry method, matched path and request id; no header or
//! body is logged, so tokens and passwords never reach the log.

use tracing_subscriber::EnvFilter;

pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
