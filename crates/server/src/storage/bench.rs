//! `airwave-server bench upload`: one large file through the whole path, next to the physical
//! limit measured in the same run. Scenarios, each printing one `bench=upload …` line:
//!
//! - `raw_copy`: the same bytes written to a file in the data dir and synced — the disk's limit;
//! - `store_put`: straight into the configured blob store (`put_stream`, no HTTP);
//! - `upload`: `POST /api/assets/{id}/upload` over loopback HTTP (sniffing, sha256, limits);
//! - `tus`: the same through tus, in PATCHes of `--chunk-mib`, then the assembly.
//!
//! The server runs in this process (API role, on `AIRWAVE_BIND`), so the peak resident memory of
//! each scenario (`VmHWM`, reset before it through `/proc/self/clear_refs`) covers client and
//! server together. The bytes are generated (an MP4 header, then noise), never held whole.

use crate::config::Config;
use crate::startup::{Application, Role};
use airwave_api::{ApiClient, AssetIn, AssetType};
use anyhow::Context as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use std::time::Instant;
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

const CHUNK: usize = 1 << 20;

/// `len` bytes of a "video", in 1 MiB chunks.
fn video(len: u64) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let chunks = len.div_ceil(CHUNK as u64);
    futures_util::stream::iter(0..chunks).map(move |i| {
        let size = (len - i * CHUNK as u64).min(CHUNK as u64) as usize;
        let mut b = vec![0u8; size];
        let mut x = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for c in b.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
        }
        if i == 0 && size >= 24 {
            b[..24].copy_from_slice(b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2");
        }
        Ok(Bytes::from(b))
    })
}

/// A `kB` line of `/proc/self/status` (`VmHWM`: the peak resident set; `VmRSS`: the current).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the peak to the current RSS (Linux: `5` into `clear_refs`).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Measured {
    secs: f64,
    rss_growth_mib: f64,
}

async fn measure<F: std::future::Future<Output = anyhow::Result<()>>>(
    f: F,
) -> anyhow::Result<Measured> {
    reset_peak();
    let before = status_kib("VmRSS");
    let started = Instant::now();
    f.await?;
    let secs = started.elapsed().as_secs_f64();
    Ok(Measured {
        secs,
        rss_growth_mib: status_kib("VmHWM").saturating_sub(before) as f64 / 1024.0,
    })
}

fn line(backend: &str, scenario: &str, mib: u64, m: &Measured, raw: Option<f64>) {
    let mibps = mib as f64 / m.secs;
    let vs = raw.map_or(String::new(), |r| {
        format!(" vs_raw_copy={:.0}%", mibps / r * 100.0)
    });
    println!(
        "bench=upload backend={backend} scenario={scenario} mib={mib} secs={:.2} mib_per_s={mibps:.0}{vs} peak_rss_growth_mib={:.1}",
        m.secs, m.rss_growth_mib
    );
}

pub async fn run(config: Config, mib: u64, chunk_mib: u64) -> anyhow::Result<()> {
    let backend = match &config.storage {
        crate::storage::settings::StorageConfig::Folder { .. } => "folder",
        crate::storage::settings::StorageConfig::S3(_) => "s3",
    };
    let len = mib << 20;
    let data_dir = config.data_dir.clone();
    let app = Application::build(config, Role::Api).await?;
    let addr = app
        .local_addr()
        .context("the bench needs the API to listen (AIRWAVE_BIND)")?;
    let state = app.state().clone();
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));
    for _ in 0..600 {
        if state.ready.is_set() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // An admin of this run, and a video asset to upload into.
    let email = format!("bench-{:08x}@example.com", rand::random::<u32>());
    let password = crate::auth::signing::random_token("pw_");
    let actor = crate::audit::Actor::default();
    let user = crate::auth::create_user(
        &state,
        &email,
        &password,
        "Bench",
        airwave_api::Role::Admin,
        &actor,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let user_id = user.id.clone().try_into().map_err(anyhow::Error::new)?;
    let token = crate::auth::issue_token(
        &state,
        &user_id,
        user.role,
        &airwave_api::ApiTokenIn {
            name: "bench".into(),
            role: None,
            expires_in_days: Some(1),
        },
        &actor,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?
    .token;
    let base = url::Url::parse(&format!("http://{addr}"))?;
    let api = ApiClient::with_timeouts(
        base.clone(),
        std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(24 * 3600),
    )
    .with_token(token.clone());
    let client = api.create_client("Bench").await?;
    let asset = api
        .create_asset(&AssetIn {
            client_id: client.id.clone(),
            type_: AssetType::Video,
            name: "bench".into(),
            metadata: Default::default(),
        })
        .await?;

    let raw_path = data_dir.join("bench-raw-copy.bin");
    let raw = measure(async {
        let mut f = tokio::fs::File::create(&raw_path).await?;
        let mut s = Box::pin(video(len));
        while let Some(c) = s.next().await {
            f.write_all(&c?).await?;
        }
        f.sync_all().await?;
        Ok(())
    })
    .await?;
    let _ = tokio::fs::remove_file(&raw_path).await;
    let raw_mibps = mib as f64 / raw.secs;
    line(backend, "raw_copy", mib, &raw, None);

    let key = format!("tmp/bench/{:016x}", rand::random::<u64>());
    let put = measure(async {
        state
            .blobs
            .put_stream(&key, Box::pin(video(len)), "video/mp4", u64::MAX)
            .await?;
        Ok(())
    })
    .await?;
    let _ = state.blobs.delete(&key).await;
    line(backend, "store_put", mib, &put, Some(raw_mibps));

    let up = measure(async {
        api.upload_asset(
            &asset.id,
            "video/mp4",
            Some("bench.mp4"),
            reqwest::Body::wrap_stream(video(len)),
        )
        .await?;
        Ok(())
    })
    .await?;
    line(backend, "upload", mib, &up, Some(raw_mibps));

    let http = reqwest::Client::new();
    let tus = measure(async {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let created = http
            .post(base.join("/api/uploads")?)
            .bearer_auth(&token)
            .header("tus-resumable", "1.0.0")
            .header("upload-length", len.to_string())
            .header(
                "upload-metadata",
                format!("asset_id {},filetype {}", b64(&asset.id), b64("video/mp4")),
            )
            .send()
            .await?
            .error_for_status()?;
        let location = created
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .context("no Location")?
            .to_owned();
        let step = chunk_mib << 20;
        let mut offset = 0u64;
        // The chunks are cut from one generated stream: each PATCH takes the next `step` bytes.
        let mut source = Box::pin(video(len));
        let mut carry = Bytes::new();
        while offset < len {
            let want = step.min(len - offset);
            let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
            let send = http
                .patch(base.join(&location)?)
                .bearer_auth(&token)
                .header("tus-resumable", "1.0.0")
                .header("upload-offset", offset.to_string())
                .header("content-type", "application/offset+octet-stream")
                .body(reqwest::Body::wrap_stream(tokio_stream_of(rx)))
                .send();
            let feed = async {
                let mut left = want;
                while left > 0 {
                    if carry.is_empty() {
                        carry = source.next().await.context("the source ended early")??;
                    }
                    let take = (left as usize).min(carry.len());
                    let piece = carry.split_to(take);
                    left -= take as u64;
                    if tx.send(Ok(piece)).await.is_err() {
                        break;
                    }
                }
                drop(tx);
                Ok::<_, anyhow::Error>(())
            };
            let (sent, fed) = tokio::join!(send, feed);
            fed?;
            sent?.error_for_status()?;
            offset += want;
        }
        Ok(())
    })
    .await?;
    line(
        backend,
        &format!("tus chunk_mib={chunk_mib}"),
        mib,
        &tus,
        Some(raw_mibps),
    );

    let _ = api.delete_asset(&asset.id).await;
    stop.cancel();
    let _ = server.await;
    Ok(())
}

/// An mpsc receiver as a stream.
fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
