//! A minimal W3C WebDriver client over reqwest: just what the console's end-to-end test needs
//! (tauri-driver in front of WebKitWebDriver). Every call has a timeout.

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use std::time::Duration;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Session {
    http: reqwest::Client,
    base: String,
}

impl Session {
    /// Starts the app at `application` through the driver listening on `port`.
    pub async fn start(port: u16, application: &str) -> anyhow::Result<Session> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "wry",
            "tauri:options": {"application": application}
        }}});
        // A driver that is still starting its native driver may drop the first connection.
        let mut attempt = 0;
        let r: Value = loop {
            attempt += 1;
            match http
                .post(format!("http://127.0.0.1:{port}/session"))
                .json(&caps)
                .send()
                .await
            {
                Ok(resp) => break resp.json().await?,
                Err(e) if attempt < 5 => {
                    eprintln!("webdriver: new session failed ({e}); retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let id = r["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("no session: {r}"))?;
        Ok(Session {
            http,
            base: format!("http://127.0.0.1:{port}/session/{id}"),
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req.send().await?.json().await?;
        if let Some(err) = r["value"]["error"].as_str() {
            bail!("webdriver {path}: {err}: {}", r["value"]["message"]);
        }
        Ok(r["value"].clone())
    }

    pub async fn find(&self, css: &str) -> anyhow::Result<String> {
        let v = self
            .send(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        v[ELEMENT]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no element id for {css}: {v}"))
    }

    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let el = self.find(css).await?;
        self.send(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await?;
        Ok(())
    }

    pub async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let el = self.find(css).await?;
        self.send(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        )
        .await?;
        Ok(())
    }

    /// The rendered text of the first element matching `css` (innerText, as a person reads it).
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let v = self
            .send(
                reqwest::Method::POST,
                "/execute/sync",
                Some(json!({"script": "const e = document.querySelector(arguments[0]); return e ? (e.innerText ?? e.textContent) : null", "args": [css]})),
            )
            .await?;
        v.as_str()
            .map(str::to_owned)
            .with_context(|| format!("no element {css}"))
    }

    /// Runs `script` in the page and returns its result.
    pub async fn script(&self, script: &str) -> anyhow::Result<Value> {
        self.send(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Polls until `css` exists and its text contains `needle` (or `timeout` passes).
    pub async fn wait_text(
        &self,
        css: &str,
        needle: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if let Ok(t) = self.text(css).await {
                if t.contains(needle) {
                    return Ok(t);
                }
                last = t;
            }
            if tokio::time::Instant::now() > deadline {
                let page = self
                    .script("return document.body.innerText")
                    .await
                    .unwrap_or_default();
                bail!("timed out waiting for `{needle}` in {css}; last text: {last:?}; the page: {page}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls until an element matches `css` (or `timeout` passes): any text contains "".
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> anyhow::Result<()> {
        self.wait_text(css, "", timeout).await.map(|_| ())
    }

    /// Waits until the page has painted twice (two animation frames), so a screenshot shows
    /// what the DOM now holds.
    pub async fn settle(&self) -> anyhow::Result<()> {
        let script = "const done = arguments[arguments.length - 1]; \
                      requestAnimationFrame(() => requestAnimationFrame(() => done(null)));";
        self.send(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
        .await?;
        Ok(())
    }

    /// A PNG of the window's content.
    pub async fn screenshot(&self) -> anyhow::Result<Vec<u8>> {
        use base64::Engine as _;
        let v = self.send(reqwest::Method::GET, "/screenshot", None).await?;
        Ok(base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default())?)
    }

    pub async fn close(self) -> anyhow::Result<()> {
        self.http.delete(&self.base).send().await?;
        Ok(())
    }
}
