//! Error tracking's settings: where events go, how they are labelled and how many are sent.

use crate::config::settings::{Kind, Reader, Section, Setting};

/// Error tracking's section of the configuration.
#[derive(Clone)]
pub struct TrackingConfig {
    /// Where events go; none: error tracking is off.
    pub dsn: Option<sentry::types::Dsn>,
    pub environment: String,
    pub release: String,
    pub sample_rate: f32,
    pub traces_sample_rate: f32,
    /// `GET /api/debug/panic` answers (by panicking): for checking error tracking end to end.
    pub debug_route: bool,
}

impl std::fmt::Debug for TrackingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackingConfig")
            .field("dsn", &self.dsn.as_ref().map(|_| "[redacted]"))
            .field("environment", &self.environment)
            .field("release", &self.release)
            .field("sample_rate", &self.sample_rate)
            .field("traces_sample_rate", &self.traces_sample_rate)
            .field("debug_route", &self.debug_route)
            .finish()
    }
}

pub const DSN: Setting = Setting::new(
    "SENTRY_DSN",
    Kind::Url {
        schemes: &["https", "http"],
        default: None,
        secret: true,
    },
    "Sends the server's errors to Sentry: panics, logged errors, failed requests (one transaction per matched route) and jobs given up on, scrubbed of tokens, secrets and e-mail addresses (see [errors.md](errors.md)). Unset: nothing is sent. `http://` only to a loopback host in production.",
);
pub const PUBLIC_DSN: Setting = Setting::new(
    "NEXT_PUBLIC_SENTRY_DSN",
    Kind::Url {
        schemes: &["https", "http"],
        default: None,
        secret: true,
    },
    "The plan's name for the same DSN; `SENTRY_DSN` wins when both are set.",
);
pub const ENVIRONMENT: Setting = Setting::new(
    "SENTRY_ENVIRONMENT",
    Kind::Text { default: "" },
    "The events' environment; unset: `AIRWAVE_ENV` (`development` or `production`).",
);
pub const RELEASE: Setting = Setting::new(
    "SENTRY_RELEASE",
    Kind::Text { default: "" },
    "The events' release; unset: `airwave-server@` and this build's version.",
);
pub const SAMPLE_RATE: Setting = Setting::new(
    "SENTRY_SAMPLE_RATE",
    Kind::Float {
        default: 1.0,
        min: 0.0,
        max: 1.0,
    },
    "The share of error events sent.",
);
pub const TRACES_SAMPLE_RATE: Setting = Setting::new(
    "SENTRY_TRACES_SAMPLE_RATE",
    Kind::Float {
        default: 0.0,
        min: 0.0,
        max: 1.0,
    },
    "The share of requests and jobs sent as performance transactions.",
);

pub const DEBUG_ROUTE: Setting = Setting::new(
    "AIRWAVE_SENTRY_DEBUG_ROUTE",
    Kind::Choice {
        default: "off",
        options: &["off", "on"],
    },
    "`on`: `GET /api/debug/panic` (admins) panics on purpose, to see a handler panic answered `500` and reported once. Refused in production.",
);

pub fn section() -> Section {
    Section {
        title: "Error tracking (Sentry)",
        intro: "",
        settings: vec![
            DSN,
            PUBLIC_DSN,
            ENVIRONMENT,
            RELEASE,
            SAMPLE_RATE,
            TRACES_SAMPLE_RATE,
            DEBUG_ROUTE,
        ],
    }
}

impl TrackingConfig {
    pub fn read(r: &mut Reader, production: bool) -> Self {
        let primary = r.url(&DSN);
        let public = r.url(&PUBLIC_DSN);
        let (name, url) = match (primary, public) {
            (Some(u), _) => (DSN.name, Some(u)),
            (None, Some(u)) => (PUBLIC_DSN.name, Some(u)),
            (None, None) => (DSN.name, None),
        };
        let dsn = url.and_then(|u| {
            let loopback = crate::config::settings::is_loopback(&u);
            if production && u.scheme() == "http" && !loopback {
                r.error(format!(
                    "{name} must be https:// in production (events carry stack traces)"
                ));
                return None;
            }
            match u.as_str().parse::<sentry::types::Dsn>() {
                Ok(d) => Some(d),
                Err(_) => {
                    r.error(format!(
                        "{name} is not a Sentry DSN (https://PUBLIC_KEY@HOST/PROJECT_ID)"
                    ));
                    None
                }
            }
        });
        let environment = match r.text(&ENVIRONMENT) {
            e if e.is_empty() => if production {
                "production"
            } else {
                "development"
            }
            .to_owned(),
            e => e,
        };
        let release = match r.text(&RELEASE) {
            v if v.is_empty() => concat!("airwave-server@", env!("CARGO_PKG_VERSION")).to_owned(),
            v => v,
        };
        let debug_route = r.choice(&DEBUG_ROUTE) == "on";
        if debug_route && production {
            r.error("AIRWAVE_SENTRY_DEBUG_ROUTE panics on request and is refused in production");
        }
        Self {
            debug_route,
            dsn,
            environment,
            release,
            sample_rate: r.float(&SAMPLE_RATE) as f32,
            traces_sample_rate: r.float(&TRACES_SAMPLE_RATE) as f32,
        }
    }
}
