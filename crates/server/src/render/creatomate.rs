//! The Creatomate adapter: renders a template through Creatomate's REST API.
//!
//! Our template becomes RenderScript (`POST /v2/renders` with the source at the top level, an
//! image in the template's size), the render is polled with `GET /v2/renders/{id}` until it is
//! `succeeded` or `failed`, and the finished file is downloaded and handed back like the local
//! renderer's PNG, so the `render` job stores it the same way.
//!
//! Failures map onto the job's retry policy: a refused request (400/422) or a render Creatomate
//! reports `failed` is permanent (retrying the same template fails the same way); a rejected key
//! (401/403) is permanent too, and says so; 429, 5xx, timeouts and network errors are transient.
//!
//! Layout is approximated where the two models differ: text is anchored at its baseline in our
//! format and at the bottom of its box in Creatomate's; images need a public URL (`src`), as
//! Creatomate fetches them itself (asset ids get URLs with the CDN).

use super::{
    color, fill, Align, Layer, RenderError, RenderProvider, RenderRequest, Rendered, Template,
};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;
use url::Url;

/// Largest output accepted from Creatomate.
const MAX_OUTPUT_BYTES: usize = 200 * 1024 * 1024;

pub struct CreatomateRenderer {
    http: reqwest::Client,
    base: Url,
    api_key: SecretString,
    poll: Duration,
    timeout: Duration,
    /// Hosts the output may be downloaded from (`*.` prefixes match subdomains).
    output_hosts: Vec<String>,
}

/// Creatomate's render object (the fields we use).
#[derive(Debug, Deserialize)]
struct RenderObject {
    id: String,
    status: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    error_message: Option<String>,
}

fn transient(what: &str, e: impl std::fmt::Display) -> RenderError {
    RenderError::Transient(format!("creatomate: {what}: {e}"))
}

impl CreatomateRenderer {
    pub fn new(
        base: Url,
        api_key: SecretString,
        poll: Duration,
        timeout: Duration,
        output_hosts: Vec<String>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("airwave-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with static settings");
        Self {
            http,
            base,
            api_key,
            poll,
            timeout,
            output_hosts,
        }
    }

    fn endpoint(&self, path: &str) -> Result<Url, RenderError> {
        self.base
            .join(path)
            .map_err(|e| RenderError::Invalid(format!("creatomate: bad URL: {e}")))
    }

    /// Turns a non-2xx answer into the right kind of error, with Creatomate's `hint` if any.
    async fn refused(what: &str, resp: reqwest::Response) -> RenderError {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let hint = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| {
                ["hint", "message", "error"]
                    .iter()
                    .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_owned))
            })
            .unwrap_or_else(|| body.chars().take(200).collect());
        let msg = format!("creatomate: {what} answered {status}: {hint}");
        match status.as_u16() {
            401 | 403 => RenderError::Invalid(format!("{msg} (check CREATOMATE_API_KEY)")),
            400 | 404 | 422 => RenderError::Invalid(msg),
            _ => RenderError::Transient(msg),
        }
    }

    /// The output is fetched only from the API's own origin or over HTTPS from an allowed host
    /// (Creatomate documents `cdn.creatomate.com`): never from a host a tampered answer names
    /// (the SSRF guard for this one outgoing fetch).
    fn check_output_url(&self, url: &str) -> Result<Url, RenderError> {
        let u = Url::parse(url)
            .map_err(|e| RenderError::Transient(format!("creatomate: bad output URL: {e}")))?;
        if u.origin() == self.base.origin() {
            return Ok(u);
        }
        let host = u.host_str().unwrap_or("").to_ascii_lowercase();
        let allowed = self
            .output_hosts
            .iter()
            .any(|h| match h.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
                None => host == *h,
            });
        if u.scheme() == "https" && allowed && u.username().is_empty() && u.password().is_none() {
            Ok(u)
        } else {
            Err(RenderError::Invalid(format!(
                "creatomate: refusing to download the output from {}://{host} (allowed: https from {}; see AIRWAVE_CREATOMATE_OUTPUT_HOSTS)",
                u.scheme(),
                self.output_hosts.join(", ")
            )))
        }
    }

    /// Reads a render's state (`None` when Creatomate does not know it).
    async fn get_render(&self, id: &str) -> Result<Option<RenderObject>, RenderError> {
        let url = self.endpoint(&format!("/v2/renders/{}", urlencode(id)))?;
        let resp = self
            .http
            .get(url)
            .bearer_auth(self.api_key.expose_secret())
            .send()
            .await
            .map_err(|e| transient("polling the render", e))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(Self::refused("polling the render", resp).await);
        }
        resp.json()
            .await
            .map(Some)
            .map_err(|e| transient("reading the render", e))
    }

    /// Starts a render of `script`.
    async fn start(&self, script: &Value) -> Result<RenderObject, RenderError> {
        let resp = self
            .http
            .post(self.endpoint("/v2/renders")?)
            .bearer_auth(self.api_key.expose_secret())
            .json(script)
            .send()
            .await
            .map_err(|e| transient("starting the render", e))?;
        if !resp.status().is_success() {
            return Err(Self::refused("starting the render", resp).await);
        }
        resp.json()
            .await
            .map_err(|e| transient("reading the render", e))
    }

    /// Downloads the output, reading at most `MAX_OUTPUT_BYTES` whatever the answer claims.
    async fn download(&self, url: Url) -> Result<Vec<u8>, RenderError> {
        let too_big = || RenderError::Invalid("creatomate: the output is over 200 MiB".into());
        let mut resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| transient("downloading the output", e))?;
        if !resp.status().is_success() {
            return Err(RenderError::Transient(format!(
                "creatomate: downloading the output answered {}",
                resp.status()
            )));
        }
        let declared = resp.content_length().unwrap_or(0);
        if declared > MAX_OUTPUT_BYTES as u64 {
            return Err(too_big());
        }
        let mut bytes = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| transient("downloading the output", e))?
        {
            if bytes.len() + chunk.len() > MAX_OUTPUT_BYTES {
                return Err(too_big());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

/// Our template as Creatomate RenderScript: a PNG of the template's size.
pub fn render_script(req: &RenderRequest, t: &Template) -> Result<Value, RenderError> {
    let mut elements = Vec::with_capacity(t.layers.len());
    for layer in &t.layers {
        elements.push(match layer {
            Layer::Rect {
                x,
                y,
                width,
                height,
                fill: f,
                radius,
            } => json!({
                "type": "shape",
                "x": x, "y": y, "width": width, "height": height,
                "x_anchor": "0%", "y_anchor": "0%",
                "path": "M 0 0 L 100 0 L 100 100 L 0 100 Z",
                "fill_color": color(f.as_deref().unwrap_or("#000000"))?,
                "border_radius": radius,
            }),
            Layer::Text {
                text,
                x,
                y,
                size,
                color: c,
                align,
                bold,
            } => {
                let (anchor, alignment) = match align {
                    Align::Start => ("0%", "0%"),
                    Align::Middle => ("50%", "50%"),
                    Align::End => ("100%", "100%"),
                };
                json!({
                    "type": "text",
                    "text": fill(text, &req.params)?,
                    "x": x, "y": y,
                    "x_anchor": anchor, "y_anchor": "100%",
                    "x_alignment": alignment,
                    "font_family": "Open Sans",
                    "font_weight": if *bold { 700 } else { 400 },
                    "font_size": size.unwrap_or(32.0),
                    "fill_color": color(c.as_deref().unwrap_or("#000000"))?,
                })
            }
            Layer::Image {
                asset_id,
                src,
                x,
                y,
                width,
                height,
            } => {
                let source = match (src, asset_id) {
                    (Some(src), _) => fill(src, &req.params)?,
                    (None, Some(id)) => {
                        return Err(RenderError::Invalid(format!(
                            "image layer: asset {id} has no public URL for Creatomate to fetch; use `src` with an https URL"
                        )))
                    }
                    (None, None) => {
                        return Err(RenderError::Invalid(
                            "image layer: needs `src` or `asset_id`".into(),
                        ))
                    }
                };
                let u = Url::parse(&source).map_err(|_| {
                    RenderError::Invalid(format!("image layer: `{source}` is not a URL"))
                })?;
                if !matches!(u.scheme(), "https" | "http") {
                    return Err(RenderError::Invalid(format!(
                        "image layer: `{source}` must be an http(s) URL"
                    )));
                }
                json!({
                    "type": "image",
                    "source": source,
                    "x": x, "y": y, "width": width, "height": height,
                    "x_anchor": "0%", "y_anchor": "0%",
                    "fit": "cover",
                })
            }
        });
    }
    Ok(json!({
        "output_format": "png",
        "width": t.width,
        "height": t.height,
        "fill_color": color(&t.background)?,
        "elements": elements,
        "metadata": req.execution_id,
    }))
}

#[async_trait]
impl RenderProvider for CreatomateRenderer {
    fn name(&self) -> &'static str {
        "creatomate"
    }

    async fn render(&self, req: &RenderRequest) -> Result<Rendered, RenderError> {
        let t = Template::parse(&req.template)?;
        let script = render_script(req, &t)?;
        // A render an earlier attempt started is resumed, never paid for twice.
        let resumed = match &req.resume {
            Some(id) => self.get_render(id).await?,
            None => None,
        };
        let mut render = match resumed {
            Some(r) => {
                tracing::info!(execution = %req.execution_id, render = %r.id, "creatomate render resumed");
                r
            }
            None => {
                let r = self.start(&script).await?;
                tracing::info!(execution = %req.execution_id, render = %r.id, "creatomate render started");
                r
            }
        };
        if let Some(started) = &req.started {
            started.record(&render.id).await?;
        }
        let started = tokio::time::Instant::now();
        loop {
            match render.status.as_str() {
                "succeeded" => break,
                "failed" | "cancelled" => {
                    return Err(RenderError::Invalid(format!(
                        "creatomate: render {} {}: {}",
                        render.id,
                        render.status,
                        render.error_message.as_deref().unwrap_or("no reason given")
                    )))
                }
                _ => {}
            }
            if started.elapsed() >= self.timeout {
                return Err(RenderError::Transient(format!(
                    "creatomate: render {} not finished after {} s (status {})",
                    render.id,
                    self.timeout.as_secs(),
                    render.status
                )));
            }
            tokio::time::sleep(self.poll).await;
            render = self.get_render(&render.id).await?.ok_or_else(|| {
                RenderError::Transient(format!("creatomate: render {} vanished", render.id))
            })?;
        }
        let url = render.url.as_deref().ok_or_else(|| {
            RenderError::Transient("creatomate: a succeeded render without a url".into())
        })?;
        let bytes = self.download(self.check_output_url(url)?).await?;
        if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Err(RenderError::Transient(
                "creatomate: the output is not a PNG".into(),
            ));
        }
        Ok(Rendered {
            bytes,
            content_type: "image/png",
            extension: "png",
            width: t.width,
            height: t.height,
        })
    }
}

/// A render id as one path segment.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn req(template: Value, params: Value) -> RenderRequest {
        RenderRequest {
            execution_id: "exe_1".into(),
            client_id: "cli_1".into(),
            template: template.as_object().unwrap().clone(),
            params: params.as_object().cloned().unwrap_or_else(Map::new),
            resume: None,
            started: None,
        }
    }

    #[test]
    fn templates_become_render_script() {
        let r = req(
            json!({"width": 640, "height": 360, "background": "#102030", "layers": [
                {"type": "rect", "x": 0, "y": 300, "width": 640, "height": 60, "fill": "#f59e0b"},
                {"type": "text", "text": "{{headline}}", "x": 320, "y": 180, "size": 48, "align": "middle", "bold": true},
                {"type": "image", "src": "https://cdn.example.com/{{img}}.png", "x": 1, "y": 2, "width": 3, "height": 4}
            ]}),
            json!({"headline": "Run faster", "img": "shoe"}),
        );
        let t = Template::parse(&r.template).unwrap();
        let s = render_script(&r, &t).unwrap();
        assert_eq!(s["output_format"], "png");
        assert_eq!(
            (s["width"].as_u64(), s["height"].as_u64()),
            (Some(640), Some(360))
        );
        assert_eq!(s["fill_color"], "#102030");
        assert_eq!(s["elements"][0]["type"], "shape");
        assert_eq!(s["elements"][1]["text"], "Run faster");
        assert_eq!(s["elements"][1]["font_weight"], 700);
        assert_eq!(
            s["elements"][2]["source"],
            "https://cdn.example.com/shoe.png"
        );
        assert_eq!(s["metadata"], "exe_1");
    }

    #[test]
    fn images_need_a_url_creatomate_can_fetch() {
        for layer in [
            json!({"type": "image", "asset_id": "ast_1", "x": 0, "y": 0, "width": 1, "height": 1}),
            json!({"type": "image", "src": "file:///etc/passwd", "x": 0, "y": 0, "width": 1, "height": 1}),
        ] {
            let r = req(json!({"layers": [layer]}), json!({}));
            let t = Template::parse(&r.template).unwrap();
            assert!(matches!(
                render_script(&r, &t),
                Err(RenderError::Invalid(_))
            ));
        }
    }

    #[test]
    fn render_ids_are_one_path_segment() {
        assert_eq!(urlencode("a1-b2"), "a1-b2");
        assert_eq!(urlencode("../x"), "..%2Fx");
    }
}
