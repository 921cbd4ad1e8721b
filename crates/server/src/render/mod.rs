//! Rendering executions: the `RenderProvider` seam, the template format, and the `render` job.
//!
//! A matrix's template is JSON: `{width, height, background, layers: [...]}` with layers
//! `{"type": "rect", x, y, width, height, fill, radius}`,
//! `{"type": "text", text, x, y, size, color, align: start|middle|end, bold}` and
//! `{"type": "image", asset_id | src, x, y, width, height}`. Text and `src` may name execution
//! params as `{{name}}`. The local renderer (`local.rs`, the embedded default) draws it to a PNG;
//! Creatomate comes with its own adapter.

pub mod creatomate;
pub mod job;
pub mod local;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The template or its params cannot be rendered; retrying will not help.
    #[error("{0}")]
    Invalid(String),
    /// Something that may work on a retry (storage, the provider's service).
    #[error("{0}")]
    Transient(String),
}

/// What to render.
#[derive(Clone)]
pub struct RenderRequest {
    pub execution_id: String,
    pub client_id: String,
    pub template: Map<String, Value>,
    pub params: Map<String, Value>,
    /// The provider's id of a render an earlier attempt of this execution started and did not
    /// see finish: a provider that can, resumes it instead of starting (and paying for) another.
    pub resume: Option<String>,
    /// Where a provider notes the id of a render it starts (or resumes).
    pub started: Option<Arc<dyn StartedRender>>,
}

impl std::fmt::Debug for RenderRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderRequest")
            .field("execution_id", &self.execution_id)
            .field("client_id", &self.client_id)
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}

/// Notes the provider's id of a started render, so that a retried attempt can resume it.
#[async_trait::async_trait]
pub trait StartedRender: Send + Sync {
    async fn record(&self, provider_ref: &str) -> Result<(), RenderError>;
}

/// A finished render.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub extension: &'static str,
    pub width: u32,
    pub height: u32,
}

#[async_trait]
pub trait RenderProvider: Send + Sync {
    /// `local` or `creatomate`.
    fn name(&self) -> &'static str;
    async fn render(&self, req: &RenderRequest) -> Result<Rendered, RenderError>;
}

fn default_size() -> u32 {
    1080
}

fn default_background() -> String {
    "#ffffff".into()
}

/// A parsed template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    #[serde(default = "default_size")]
    pub width: u32,
    #[serde(default = "default_size")]
    pub height: u32,
    #[serde(default = "default_background")]
    pub background: String,
    #[serde(default)]
    pub layers: Vec<Layer>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Align {
    #[default]
    Start,
    Middle,
    End,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Layer {
    Rect {
        x: f32,
        y: f32,
        width: f32,
        height: f32,
        #[serde(default)]
        fill: Option<String>,
        #[serde(default)]
        radius: f32,
    },
    Text {
        text: String,
        x: f32,
        y: f32,
        #[serde(default)]
        size: Option<f32>,
        #[serde(default)]
        color: Option<String>,
        #[serde(default)]
        align: Align,
        #[serde(default)]
        bold: bool,
    },
    Image {
        #[serde(default)]
        asset_id: Option<String>,
        #[serde(default)]
        src: Option<String>,
        x: f32,
        y: f32,
        width: f32,
        height: f32,
    },
}

impl Template {
    pub fn parse(template: &Map<String, Value>) -> Result<Template, RenderError> {
        let t: Template = serde_json::from_value(Value::Object(template.clone()))
            .map_err(|e| RenderError::Invalid(format!("template: {e}")))?;
        if !(16..=4096).contains(&t.width) || !(16..=4096).contains(&t.height) {
            return Err(RenderError::Invalid(
                "template: width and height must be between 16 and 4096".into(),
            ));
        }
        if t.layers.len() > 200 {
            return Err(RenderError::Invalid("template: at most 200 layers".into()));
        }
        color(&t.background)?;
        Ok(t)
    }
}

/// A colour as `#rgb` or `#rrggbb`: anything else is refused, so nothing but a colour reaches the SVG.
pub fn color(c: &str) -> Result<&str, RenderError> {
    let hex = c.strip_prefix('#').unwrap_or("");
    if (hex.len() == 3 || hex.len() == 6) && hex.chars().all(|ch| ch.is_ascii_hexdigit()) {
        Ok(c)
    } else {
        Err(RenderError::Invalid(format!(
            "`{}` is not a colour like #ff8800",
            c.chars().take(40).collect::<String>()
        )))
    }
}

/// Replaces `{{name}}` with the param's value (strings as they are, numbers and booleans printed).
/// An unknown name is an error, so a typo does not ship an ad with `{{headline}}` in it.
pub fn fill(text: &str, params: &Map<String, Value>) -> Result<String, RenderError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| RenderError::Invalid(format!("unclosed `{{{{` in `{text}`")))?;
        let name = after[..end].trim();
        match params.get(name) {
            Some(Value::String(s)) => out.push_str(s),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => out.push_str(&v.to_string()),
            Some(_) => {
                return Err(RenderError::Invalid(format!(
                    "param `{name}` must be a string, number or boolean"
                )))
            }
            None => {
                return Err(RenderError::Invalid(format!(
                    "the template uses `{{{{{name}}}}}` but the execution has no param `{name}`"
                )))
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The render feature: `execution.created` becomes a `render` job (its consumer), and the worker
/// that renders with the provider `startup.rs` chose.
pub struct Feature;

impl crate::feature::Feature for Feature {
    fn name(&self) -> &'static str {
        "render"
    }

    fn settings(&self) -> Option<crate::config::settings::Section> {
        Some(settings::section())
    }

    fn consumers(&self, b: &crate::feature::Backends) -> Vec<Arc<dyn crate::events::Consumer>> {
        vec![Arc::new(job::RenderConsumer {
            queue: b.queue.clone(),
        })]
    }

    fn tasks(&self, s: &crate::state::AppState) -> Vec<crate::feature::Task> {
        use crate::feature::{Runs, Task, SHUTDOWN_GRACE};
        let render = job::RenderJob {
            db: s.db.clone(),
            clock: s.clock.clone(),
            blobs: s.blobs.clone(),
            provider: s.renderer.clone(),
        };
        let worker = Arc::new(
            crate::queue::worker::Worker::for_queue(
                s.queue.clone(),
                job::QUEUE,
                s.config.queue.lease,
            )
            .handle(job::KIND, Arc::new(render)),
        );
        tracing::info!(
            worker = worker.id(),
            queue = job::QUEUE,
            backend = s.queue.backend(),
            provider = s.renderer.name(),
            "render worker ready"
        );
        vec![Task::new("render-worker", Runs::Workers, move |stop| {
            worker.clone().run_until_stopped(stop, SHUTDOWN_GRACE)
        })]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn params_fill_placeholders_and_unknown_ones_are_errors() {
        let p = params(json!({"headline": "Run faster", "price": 49}));
        assert_eq!(
            fill("{{headline}} for {{ price }}€", &p).unwrap(),
            "Run faster for 49€"
        );
        assert!(fill("{{nope}}", &p).is_err());
        assert!(fill("{{headline", &p).is_err());
    }

    #[test]
    fn only_hex_colours_pass() {
        assert!(color("#fff").is_ok() && color("#a1b2c3").is_ok());
        for bad in ["red", "#ggg", "#12345", "\"/><script>", "url(#x)"] {
            assert!(color(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates_are_checked() {
        assert!(
            Template::parse(&params(json!({}))).is_ok(),
            "an empty template is a blank 1080×1080 frame"
        );
        assert!(Template::parse(&params(json!({"width": 5}))).is_err());
        assert!(Template::parse(&params(json!({"layers": [{"type": "video"}]}))).is_err());
        assert!(Template::parse(&params(json!({"colour": "#fff"}))).is_err());
    }
}

/// The render feature's settings.
pub mod settings {
    use crate::config::settings::{Kind, Reader, Section, Setting};
    use secrecy::SecretString;
    use std::time::Duration;
    use url::Url;

    /// Which renderer draws executions.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Provider {
        Local,
        /// Creatomate, with its API key.
        Creatomate,
    }

    /// The render feature's section of the configuration. `Debug` never prints the key.
    #[derive(Clone)]
    pub struct RenderConfig {
        pub provider: Provider,
        pub creatomate_api_key: Option<SecretString>,
        pub creatomate_url: Url,
        pub creatomate_poll: Duration,
        pub creatomate_timeout: Duration,
        /// Hosts Creatomate's output may be downloaded from (over https).
        pub creatomate_output_hosts: Vec<String>,
        /// Where the local renderer rasterises.
        pub isolation: Isolation,
        /// The memory a rasterising child process may use.
        pub raster_memory_mib: u64,
    }

    /// Where the local renderer rasterises.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Isolation {
        /// A child process per render, killed when its attempt times out or is abandoned.
        Process,
        /// A blocking thread of the server: cannot be abandoned (for embedding the library).
        Thread,
    }

    impl std::fmt::Debug for RenderConfig {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("RenderConfig")
                .field("provider", &self.provider)
                .field("creatomate_url", &self.creatomate_url.as_str())
                .field("isolation", &self.isolation)
                .field("raster_memory_mib", &self.raster_memory_mib)
                .finish_non_exhaustive()
        }
    }

    impl RenderConfig {
        /// Reads the section; in `production` the API key is never sent over plain `http://`.
        pub fn read(r: &mut Reader, production: bool) -> Self {
            let creatomate_api_key = r.secret(&CREATOMATE_API_KEY);
            let provider = match r.choice(&PROVIDER) {
                "creatomate" => {
                    if creatomate_api_key.is_none() {
                        r.error(format!(
                            "{} is `creatomate` but {} is not set",
                            PROVIDER.name, CREATOMATE_API_KEY.name
                        ));
                    }
                    Provider::Creatomate
                }
                _ => Provider::Local,
            };
            let creatomate_url = r
                .url(&CREATOMATE_URL)
                .unwrap_or_else(|| Url::parse("https://api.creatomate.com").expect("a valid URL"));
            if production && provider == Provider::Creatomate && creatomate_url.scheme() != "https"
            {
                r.error(format!(
                    "{} must be an https:// URL in production: every call carries {}",
                    CREATOMATE_URL.name, CREATOMATE_API_KEY.name
                ));
            }
            Self {
                provider,
                creatomate_api_key,
                creatomate_url,
                creatomate_poll: r.millis(&CREATOMATE_POLL),
                creatomate_timeout: r.secs(&CREATOMATE_TIMEOUT),
                creatomate_output_hosts: r
                    .text(&CREATOMATE_OUTPUT_HOSTS)
                    .split(',')
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect(),
                isolation: match r.choice(&ISOLATION) {
                    "thread" => Isolation::Thread,
                    _ => Isolation::Process,
                },
                raster_memory_mib: u64::try_from(r.int(&RASTER_MEMORY)).unwrap_or(1024),
            }
        }
    }

    pub const PROVIDER: Setting = Setting::new(
        "AIRWAVE_RENDER_PROVIDER",
        Kind::Choice {
            default: "local",
            options: &["local", "creatomate"],
        },
        "`local` renders in-process (resvg); `creatomate` needs `CREATOMATE_API_KEY`; see [rendering.md](rendering.md).",
    );
    pub const ISOLATION: Setting = Setting::new(
        "AIRWAVE_RENDER_ISOLATION",
        Kind::Choice {
            default: "process",
            options: &["process", "thread"],
        },
        "Where the `local` renderer rasterises: `process` draws each render in a child process (`airwave-server render-raster`, with no environment) that is killed when its attempt times out, and is held to `AIRWAVE_RENDER_MEMORY_MIB`; `thread` draws on a server thread, which cannot be stopped once started.",
    );
    pub const RASTER_MEMORY: Setting = Setting::int(
        "AIRWAVE_RENDER_MEMORY_MIB",
        1_024,
        64,
        65_536,
        "MiB",
        "The memory one rasterising child process may allocate; a template that needs more fails with a clear error.",
    );
    pub const CREATOMATE_API_KEY: Setting = Setting::new(
        "CREATOMATE_API_KEY",
        Kind::Secret { min_len: 0 },
        "Creatomate's API key.",
    );
    pub const CREATOMATE_URL: Setting = Setting::new(
        "AIRWAVE_CREATOMATE_URL",
        Kind::Url {
            schemes: &["http", "https"],
            default: Some("https://api.creatomate.com"),
            secret: false,
        },
        "Creatomate's API origin (tests point it at a local stand-in).",
    );
    pub const CREATOMATE_POLL: Setting = Setting::millis(
        "AIRWAVE_CREATOMATE_POLL_MS",
        2_000,
        10,
        600_000,
        "How often a running Creatomate render is polled.",
    );
    pub const CREATOMATE_TIMEOUT: Setting = Setting::int(
        "AIRWAVE_CREATOMATE_TIMEOUT_S",
        1_800,
        1,
        86_400,
        "s",
        "A render not finished by then fails its attempt (and is retried).",
    );

    pub const CREATOMATE_OUTPUT_HOSTS: Setting = Setting::new(
        "AIRWAVE_CREATOMATE_OUTPUT_HOSTS",
        Kind::Text {
            default: "cdn.creatomate.com",
        },
        "Comma-separated hosts a finished render may be downloaded from, over https only (`*.example.com` matches its subdomains); any other URL in Creatomate's answer is refused.",
    );

    pub fn section() -> Section {
        Section {
            title: "Rendering",
            intro: "",
            settings: vec![
                PROVIDER,
                ISOLATION,
                RASTER_MEMORY,
                CREATOMATE_API_KEY,
                CREATOMATE_URL,
                CREATOMATE_POLL,
                CREATOMATE_TIMEOUT,
                CREATOMATE_OUTPUT_HOSTS,
            ],
        }
    }
}
