//! The local renderer (the embedded default): draws a template to a PNG with resvg, in-process,
//! with the bundled DejaVu Sans font, so the output is the same on every machine. Image layers
//! read their asset's bytes from the blob store.

use super::{
    color, fill, Align, Layer, RenderError, RenderProvider, RenderRequest, Rendered, Template,
};
use crate::db::Db;
use crate::storage::BlobStore;
use crate::with_db;
use async_trait::async_trait;
use base64::Engine as _;
use resvg::{tiny_skia, usvg};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, LazyLock};

const MAX_IMAGE_BYTES: usize = 20 * 1024 * 1024;
/// Most image bytes one render reads in all (each is base64-encoded into the SVG, which the
/// rasteriser holds whole): past it the render fails at once, before it grows further.
pub const MAX_RENDER_INPUT_BYTES: usize = 64 * 1024 * 1024;

static FONTS: LazyLock<Arc<usvg::fontdb::Database>> = LazyLock::new(|| {
    let mut db = usvg::fontdb::Database::new();
    db.load_font_data(include_bytes!("../../assets/fonts/DejaVuSans.ttf").to_vec());
    db.load_font_data(include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf").to_vec());
    Arc::new(db)
});

pub struct LocalRenderer {
    db: Db,
    blobs: Arc<dyn BlobStore>,
    rasteriser: Rasteriser,
}

/// Where a render's SVG is drawn.
#[derive(Debug, Clone)]
pub enum Rasteriser {
    /// On a blocking thread of this process: once started it runs to the end.
    Thread,
    /// In a child process (`bin render-raster`) with no environment and at most `memory_mib` of
    /// memory, killed as soon as the render is abandoned (its attempt timed out or was cancelled).
    Process { bin: PathBuf, memory_mib: u64 },
}

impl Rasteriser {
    /// The configured one; `Process` runs this very binary.
    pub fn from_config(c: &super::settings::RenderConfig) -> std::io::Result<Self> {
        Ok(match c.isolation {
            super::settings::Isolation::Thread => Self::Thread,
            super::settings::Isolation::Process => Self::Process {
                bin: std::env::current_exe()?,
                memory_mib: c.raster_memory_mib,
            },
        })
    }

    async fn draw(&self, svg: String, width: u32, height: u32) -> Result<Vec<u8>, RenderError> {
        match self {
            Self::Thread => tokio::task::spawn_blocking(move || rasterise(&svg, width, height))
                .await
                .map_err(|e| RenderError::Transient(format!("renderer crashed: {e}")))?,
            Self::Process { bin, memory_mib } => {
                in_child(bin, svg, width, height, *memory_mib).await
            }
        }
    }
}

/// The largest SVG a rasterising child reads: the images' base64 plus room for the rest.
const MAX_SVG_BYTES: u64 = (MAX_RENDER_INPUT_BYTES as u64) / 3 * 4 + (16 << 20);
/// The exit status of a child whose template is invalid (its message is on stderr).
const EXIT_INVALID: i32 = 3;

async fn in_child(
    bin: &Path,
    svg: String,
    width: u32,
    height: u32,
    memory_mib: u64,
) -> Result<Vec<u8>, RenderError> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(bin)
        .args([
            "render-raster",
            "--width",
            &width.to_string(),
            "--height",
            &height.to_string(),
        ])
        .args(["--memory-mib", &memory_mib.to_string()])
        // Nothing of the server's configuration (its secrets) reaches the child.
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Dropping the render's future (a timed-out or cancelled attempt) kills the child.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RenderError::Transient(format!("cannot start the rasteriser: {e}")))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| RenderError::Transient("the rasteriser has no stdin".into()))?;
    let feed = async move {
        // A child that stops reading (it failed) shows in its exit status, not here.
        let _ = stdin.write_all(svg.as_bytes()).await;
    };
    let ((), out) = tokio::join!(feed, child.wait_with_output());
    let out = out.map_err(|e| RenderError::Transient(format!("the rasteriser: {e}")))?;
    let said: String = String::from_utf8_lossy(&out.stderr)
        .trim()
        .chars()
        .take(500)
        .collect();
    match out.status.code() {
        Some(0) => Ok(out.stdout),
        Some(EXIT_INVALID) => Err(RenderError::Invalid(said)),
        // Rust's allocator says so and aborts when the memory limit is reached; any other death
        // (a crash, a kill) may not happen again and is retried.
        _ if said.contains("memory allocation") => {
            Err(RenderError::Invalid(format!(
                "drawing the template needs more than {memory_mib} MiB of memory; use a smaller size, fewer layers or smaller images"
            )))
        }
        _ => Err(RenderError::Transient(format!(
            "the rasteriser failed ({}): {said}",
            out.status
        ))),
    }
}

/// `airwave-server render-raster`: reads an SVG on stdin and writes its PNG on stdout, with its
/// memory held to `memory_mib`. What the server runs for each render (see [`Rasteriser`]).
pub fn child_main(width: u32, height: u32, memory_mib: u64) -> std::process::ExitCode {
    use std::io::{Read as _, Write as _};
    use std::process::ExitCode;
    #[cfg(unix)]
    {
        let bytes = memory_mib.saturating_mul(1 << 20);
        let limit = rustix::process::Rlimit {
            current: Some(bytes),
            maximum: Some(bytes),
        };
        if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::Data, limit) {
            eprintln!("cannot limit the rasteriser's memory: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut svg = String::new();
    if let Err(e) = std::io::stdin()
        .take(MAX_SVG_BYTES)
        .read_to_string(&mut svg)
    {
        eprintln!("cannot read the SVG: {e}");
        return ExitCode::FAILURE;
    }
    match rasterise(&svg, width, height) {
        Ok(png) => match std::io::stdout().lock().write_all(&png) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cannot write the PNG: {e}");
                ExitCode::FAILURE
            }
        },
        Err(RenderError::Invalid(why)) => {
            eprintln!("{why}");
            ExitCode::from(EXIT_INVALID as u8)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

impl LocalRenderer {
    pub fn new(db: Db, blobs: Arc<dyn BlobStore>, rasteriser: Rasteriser) -> Self {
        Self {
            db,
            blobs,
            rasteriser,
        }
    }

    /// The bytes of an image layer's asset (which must belong to the execution's client).
    async fn image(
        &self,
        client_id: &str,
        asset_id: &str,
    ) -> Result<(Vec<u8>, &'static str), RenderError> {
        let key: Option<Option<String>> = with_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT storage_key FROM assets WHERE id = $1 AND client_id = $2")
                .bind(asset_id)
                .bind(client_id)
                .fetch_optional(pool)
                .await
                .map_err(|e| RenderError::Transient(format!("database: {e}")))?
        });
        let key = key.ok_or_else(|| {
            RenderError::Invalid(format!("image layer: no asset {asset_id} for this client"))
        })?;
        let key = key.ok_or_else(|| {
            RenderError::Invalid(format!("image layer: asset {asset_id} has no stored file"))
        })?;
        // Only the client's own files: a key outside its prefix (from before the server owned
        // keys) is refused, never read.
        if !key.starts_with(&crate::assets::upload::client_prefix(client_id)) {
            return Err(RenderError::Invalid(format!(
                "image layer: the file of asset {asset_id} is not stored under its client"
            )));
        }
        let bytes = self
            .blobs
            .get_bounded(&key, MAX_IMAGE_BYTES as u64)
            .await
            .map_err(|e| match e {
                crate::storage::StorageError::NotFound(_)
                | crate::storage::StorageError::InvalidKey(_) => RenderError::Invalid(format!(
                    "image layer: the file of asset {asset_id} is missing"
                )),
                crate::storage::StorageError::Io(e)
                    if e.kind() == std::io::ErrorKind::FileTooLarge =>
                {
                    RenderError::Invalid(format!("image layer: asset {asset_id} is over 20 MiB"))
                }
                other => RenderError::Transient(other.to_string()),
            })?;
        let mime = match bytes.get(..4) {
            Some([0x89, b'P', b'N', b'G']) => "image/png",
            Some([0xFF, 0xD8, 0xFF, _]) => "image/jpeg",
            Some([b'G', b'I', b'F', b'8']) => "image/gif",
            _ => {
                return Err(RenderError::Invalid(format!(
                    "image layer: asset {asset_id} is not a PNG, JPEG or GIF"
                )))
            }
        };
        Ok((bytes, mime))
    }

    /// The template as SVG, with every param filled in and every value escaped.
    async fn svg(&self, req: &RenderRequest, t: &Template) -> Result<String, RenderError> {
        let (w, h) = (t.width, t.height);
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}"><rect width="{w}" height="{h}" fill="{}"/>"#,
            color(&t.background)?
        );
        let mut input = 0usize;
        for layer in &t.layers {
            match layer {
                Layer::Rect {
                    x,
                    y,
                    width,
                    height,
                    fill: f,
                    radius,
                } => {
                    let c = color(f.as_deref().unwrap_or("#000000"))?;
                    let _ = write!(
                        svg,
                        r#"<rect x="{x}" y="{y}" width="{width}" height="{height}" rx="{radius}" fill="{c}"/>"#
                    );
                }
                Layer::Text {
                    text,
                    x,
                    y,
                    size,
                    color: c,
                    align,
                    bold,
                } => {
                    let content = fill(text, &req.params)?;
                    if content.chars().count() > 1000 {
                        return Err(RenderError::Invalid(
                            "text layer: at most 1000 characters".into(),
                        ));
                    }
                    let anchor = match align {
                        Align::Start => "start",
                        Align::Middle => "middle",
                        Align::End => "end",
                    };
                    let _ = write!(
                        svg,
                        r#"<text x="{x}" y="{y}" font-family="DejaVu Sans" font-size="{}" font-weight="{}" text-anchor="{anchor}" fill="{}">{}</text>"#,
                        size.unwrap_or(48.0).clamp(4.0, 1000.0),
                        if *bold { "bold" } else { "normal" },
                        color(c.as_deref().unwrap_or("#000000"))?,
                        escape(&content),
                    );
                }
                Layer::Image {
                    asset_id,
                    src,
                    x,
                    y,
                    width,
                    height,
                } => {
                    let id = match (asset_id, src) {
                        (Some(a), _) => a.clone(),
                        (None, Some(s)) => fill(s, &req.params)?,
                        (None, None) => {
                            return Err(RenderError::Invalid(
                                "image layer: give `asset_id` or `src`".into(),
                            ))
                        }
                    };
                    let (bytes, mime) = self.image(&req.client_id, &id).await?;
                    input += bytes.len();
                    if input > MAX_RENDER_INPUT_BYTES {
                        return Err(RenderError::Invalid(format!(
                            "the template's images add up to more than {} MiB; use fewer or smaller images",
                            MAX_RENDER_INPUT_BYTES >> 20
                        )));
                    }
                    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
                    let _ = write!(
                        svg,
                        r#"<image x="{x}" y="{y}" width="{width}" height="{height}" preserveAspectRatio="xMidYMid slice" href="data:{mime};base64,{data}"/>"#
                    );
                }
            }
        }
        svg.push_str("</svg>");
        Ok(svg)
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Draws an SVG to PNG bytes (CPU-bound: run it off the async runtime).
pub fn rasterise(svg: &str, width: u32, height: u32) -> Result<Vec<u8>, RenderError> {
    let mut options = usvg::Options {
        font_family: "DejaVu Sans".into(),
        // Only the data the render was given: an `href` that names a file (or anything else) is
        // never read, whatever the SVG says.
        image_href_resolver: usvg::ImageHrefResolver {
            resolve_data: usvg::ImageHrefResolver::default_data_resolver(),
            resolve_string: Box::new(|_, _| None),
        },
        ..usvg::Options::default()
    };
    options.fontdb = FONTS.clone();
    let tree = usvg::Tree::from_str(svg, &options)
        .map_err(|e| RenderError::Invalid(format!("template: {e}")))?;
    let mut pixmap = tiny_skia::Pixmap::new(width, height)
        .ok_or_else(|| RenderError::Invalid("template: bad size".into()))?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap
        .encode_png()
        .map_err(|e| RenderError::Transient(format!("PNG encoding: {e}")))
}

#[async_trait]
impl RenderProvider for LocalRenderer {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn render(&self, req: &RenderRequest) -> Result<Rendered, RenderError> {
        let template = Template::parse(&req.template)?;
        let svg = self.svg(req, &template).await?;
        let (w, h) = (template.width, template.height);
        let bytes = self.rasteriser.draw(svg, w, h).await?;
        Ok(Rendered {
            bytes,
            content_type: "image/png",
            extension: "png",
            width: w,
            height: h,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_href_naming_a_local_file_is_never_read() {
        // A red PNG on disk, and an SVG whose image points at it by path (usvg's default
        // resolver reads such files).
        let dir = tempfile::tempdir().unwrap();
        let mut red = tiny_skia::Pixmap::new(20, 20).unwrap();
        red.fill(tiny_skia::Color::from_rgba8(255, 0, 0, 255));
        let path = dir.path().join("secret.png");
        std::fs::write(&path, red.encode_png().unwrap()).unwrap();
        let svg = format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20"><rect width="20" height="20" fill="#ffffff"/><image x="0" y="0" width="20" height="20" href="{}"/></svg>"##,
            path.display()
        );
        let png = rasterise(&svg, 20, 20).unwrap();
        let p = tiny_skia::Pixmap::decode_png(&png).unwrap();
        assert!(
            p.pixels().iter().all(|px| px.green() == 255),
            "the file was drawn"
        );
        // Data the render was given is still drawn.
        let data = base64::engine::general_purpose::STANDARD.encode(red.encode_png().unwrap());
        let svg = format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20"><image x="0" y="0" width="20" height="20" href="data:image/png;base64,{data}"/></svg>"##
        );
        let p = tiny_skia::Pixmap::decode_png(&rasterise(&svg, 20, 20).unwrap()).unwrap();
        assert!(p
            .pixels()
            .iter()
            .all(|px| px.red() == 255 && px.green() == 0));
    }

    #[test]
    fn text_is_drawn_with_the_bundled_font() {
        let blank = rasterise(r##"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="80"><rect width="200" height="80" fill="#ffffff"/></svg>"##, 200, 80).unwrap();
        let text = rasterise(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="80"><rect width="200" height="80" fill="#ffffff"/><text x="10" y="50" font-family="DejaVu Sans" font-size="40" fill="#000000">Hello</text></svg>"##,
            200,
            80,
        )
        .unwrap();
        assert_eq!(&text[..4], b"\x89PNG");
        let dark = |png: &[u8]| {
            let p = tiny_skia::Pixmap::decode_png(png).unwrap();
            p.pixels().iter().filter(|px| px.red() < 128).count()
        };
        assert_eq!(dark(&blank), 0);
        assert!(
            dark(&text) > 200,
            "the text left {} dark pixels",
            dark(&text)
        );
    }
}
