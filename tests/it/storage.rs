//! The `BlobStore` conformance suite: the same cases against the folder backend and against S3 on
//! a real S3-compatible server that checks signatures (s3s-fs, started by scripts/test).

use airwave_server::storage::fs::FolderStore;
use airwave_server::storage::s3::{S3Options, S3Store};
use airwave_server::storage::{BlobStore, ByteRange, ByteStream, StorageError};
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use sha2::{Digest as _, Sha256};

const MIB: usize = 1 << 20;

pub(crate) fn s3_env() -> Option<(String, String, String)> {
    match (
        std::env::var("AIRWAVE_TEST_S3_URL"),
        std::env::var("AIRWAVE_TEST_S3_KEY"),
        std::env::var("AIRWAVE_TEST_S3_SECRET"),
    ) {
        (Ok(url), Ok(key), Ok(secret)) => Some((url, key, secret)),
        _ => {
            assert!(
                std::env::var("AIRWAVE_TEST_REQUIRE_SERVICES").is_err(),
                "scripts/test runs need s3s-fs (AIRWAVE_TEST_S3_URL, _KEY, _SECRET)"
            );
            eprintln!("not run on S3: needs s3s-fs (scripts/test starts it)");
            None
        }
    }
}

pub(crate) fn s3_options(url: &str, key: &str, secret: &str, bucket: &str) -> S3Options {
    S3Options {
        bucket: bucket.to_owned(),
        region: "us-east-1".into(),
        endpoint: Some(url.to_owned()),
        path_style: true,
        credentials: Some((key.to_owned(), secret.to_owned().into(), None)),
        part_size: 5 * MIB,
    }
}

/// A fresh bucket on s3s-fs: a store on it, and the settings that point a server at it.
pub(crate) async fn s3_bucket(prefix: &str) -> Option<(S3Store, Vec<(&'static str, String)>)> {
    let (url, key, secret) = s3_env()?;
    let bucket = format!("{prefix}-{:016x}", rand::random::<u64>());
    let store = S3Store::connect(&s3_options(&url, &key, &secret, &bucket)).await;
    if let Err(e) = store.client().create_bucket().bucket(&bucket).send().await {
        // A name this random exists only if the SDK retried our own creation (a slow answer).
        let ours = e
            .as_service_error()
            .is_some_and(|e| e.is_bucket_already_exists() || e.is_bucket_already_owned_by_you());
        assert!(ours, "create the test bucket: {e:?}");
    }
    let env = vec![
        ("AIRWAVE_STORAGE_BACKEND", "s3".to_owned()),
        ("AWS_S3_BUCKET", bucket),
        ("AWS_ENDPOINT_URL", url),
        ("AWS_S3_FORCE_PATH_STYLE", "on".to_owned()),
        ("AWS_ACCESS_KEY_ID", key),
        ("AWS_SECRET_ACCESS_KEY", secret),
    ];
    Some((store, env))
}

/// The settings as `TestApp::spawn_with` takes them.
pub(crate) fn as_pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// An S3 store on a fresh bucket.
async fn s3_store() -> Option<S3Store> {
    Some(s3_bucket("conformance").await?.0)
}

/// `len` bytes that differ from position to position (so a misplaced range shows).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// `data` as a stream of `chunk`-byte pieces.
fn chunks(data: Vec<u8>, chunk: usize) -> ByteStream {
    let pieces: Vec<std::io::Result<Bytes>> = data
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(pieces).boxed()
}

async fn read_all(store: &dyn BlobStore, key: &str, range: Option<ByteRange>) -> Vec<u8> {
    let reading = store.get_stream(key, range).await.unwrap();
    let parts: Vec<Bytes> = reading.body.try_collect().await.unwrap();
    parts.concat()
}

async fn conformance(store: &dyn BlobStore) {
    let name = store.backend();

    // Small blob: put, head, get; the sha256 is of the bytes.
    let small = b"\x89PNG\r\n\x1a\nnot really a picture".to_vec();
    store
        .put("renders/cli_a/exe_1.png", small.clone(), "image/png")
        .await
        .unwrap();
    let info = store.head("renders/cli_a/exe_1.png").await.unwrap();
    assert_eq!(info.size, small.len() as u64, "{name}");
    assert_eq!(info.content_type.as_deref(), Some("image/png"), "{name}");
    assert_eq!(
        read_all(store, "renders/cli_a/exe_1.png", None).await,
        small,
        "{name}"
    );

    // A streamed body larger than several parts, in small chunks.
    let big = pattern(17 * MIB + 123);
    let written = store
        .put_stream(
            "uploads/cli_a/big.bin",
            chunks(big.clone(), 64 * 1024),
            "application/octet-stream",
            u64::MAX,
        )
        .await
        .unwrap();
    assert_eq!(written.size, big.len() as u64, "{name}");
    assert_eq!(
        written.sha256,
        <[u8; 32]>::from(Sha256::digest(&big)),
        "{name}"
    );
    let back = read_all(store, "uploads/cli_a/big.bin", None).await;
    assert!(back == big, "{name}: the streamed blob reads back the same");

    // Ranges: a slice, an open end, an end past the blob (cut), and one past the end (refused).
    let key = "uploads/cli_a/big.bin";
    let size = big.len() as u64;
    for (range, expected) in [
        (
            ByteRange {
                start: 0,
                end: Some(9),
            },
            &big[..10],
        ),
        (
            ByteRange {
                start: 5 * MIB as u64 + 3,
                end: Some(6 * MIB as u64),
            },
            &big[5 * MIB + 3..=6 * MIB],
        ),
        (
            ByteRange {
                start: size - 100,
                end: None,
            },
            &big[big.len() - 100..],
        ),
        (
            ByteRange {
                start: size - 5,
                end: Some(size + 1000),
            },
            &big[big.len() - 5..],
        ),
    ] {
        let reading = store.get_stream(key, Some(range)).await.unwrap();
        assert_eq!(reading.info.size, size, "{name}: {range:?}");
        let last = range.end.map_or(size - 1, |e| e.min(size - 1));
        assert_eq!(
            reading.range,
            Some((range.start, last)),
            "{name}: {range:?}"
        );
        let parts: Vec<Bytes> = reading.body.try_collect().await.unwrap();
        assert!(parts.concat() == expected, "{name}: {range:?}");
    }
    assert!(
        matches!(
            store.get_stream(key, Some(ByteRange { start: size, end: None })).await,
            Err(StorageError::InvalidRange { size: s }) if s == size
        ),
        "{name}: a range past the end"
    );

    // Copy (server-side on S3), and copying what is not there.
    store.copy(key, "backups/cli_a/big.bin").await.unwrap();
    assert!(
        read_all(store, "backups/cli_a/big.bin", None).await == big,
        "{name}"
    );
    assert!(
        matches!(
            store.copy("nope/x.bin", "nope/y.bin").await,
            Err(StorageError::NotFound(_))
        ),
        "{name}"
    );

    // Missing blobs; deleting one twice is fine.
    assert!(
        matches!(
            store.head("nope/x.bin").await,
            Err(StorageError::NotFound(_))
        ),
        "{name}"
    );
    assert!(
        matches!(
            store.get_stream("nope/x.bin", None).await,
            Err(StorageError::NotFound(_))
        ),
        "{name}"
    );
    store.delete("backups/cli_a/big.bin").await.unwrap();
    store.delete("backups/cli_a/big.bin").await.unwrap();
    assert!(
        matches!(
            store.head("backups/cli_a/big.bin").await,
            Err(StorageError::NotFound(_))
        ),
        "{name}"
    );

    // Over the limit (after a part has gone up on S3): refused, nothing stored.
    let err = store
        .put_stream(
            "uploads/cli_a/too-big.bin",
            chunks(pattern(7 * MIB), MIB),
            "application/octet-stream",
            6 * MIB as u64,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::Io(e) if e.kind() == std::io::ErrorKind::FileTooLarge),
        "{name}: {err}"
    );
    assert!(
        matches!(
            store.head("uploads/cli_a/too-big.bin").await,
            Err(StorageError::NotFound(_))
        ),
        "{name}"
    );

    // A body that fails half way (a client that went away): nothing stored, the old blob stays.
    let failing: ByteStream = futures_util::stream::iter(vec![
        Ok(Bytes::from(pattern(6 * MIB))),
        Err(std::io::Error::other("connection reset")),
    ])
    .boxed();
    assert!(
        store
            .put_stream("renders/cli_a/exe_1.png", failing, "image/png", u64::MAX)
            .await
            .is_err(),
        "{name}"
    );
    assert_eq!(
        read_all(store, "renders/cli_a/exe_1.png", None).await,
        small,
        "{name}: the old blob stays"
    );

    // Listing: by prefix, in key order, after a key, bounded.
    for k in ["list/b.bin", "list/a.bin", "list/c/d.bin", "listing/x.bin"] {
        store
            .put(k, k.as_bytes().to_vec(), "application/octet-stream")
            .await
            .unwrap();
    }
    let keys =
        |l: Vec<airwave_server::storage::Listed>| l.into_iter().map(|l| l.key).collect::<Vec<_>>();
    assert_eq!(
        keys(store.list("list/", None, 100).await.unwrap()),
        ["list/a.bin", "list/b.bin", "list/c/d.bin"],
        "{name}"
    );
    assert_eq!(
        keys(store.list("list/", Some("list/a.bin"), 1).await.unwrap()),
        ["list/b.bin"],
        "{name}"
    );
    let listed = store.list("list/a", None, 10).await.unwrap();
    assert_eq!(listed.len(), 1, "{name}");
    assert_eq!(listed[0].size, "list/a.bin".len() as u64, "{name}");

    // Keys that could escape a root or confuse a path are refused before any request.
    for bad in ["../x", "/abs", "a//b", "a/../b", "a b", "a?b", ""] {
        assert!(
            matches!(store.head(bad).await, Err(StorageError::InvalidKey(_))),
            "{name}: {bad}"
        );
        assert!(
            matches!(
                store.put(bad, vec![1], "x").await,
                Err(StorageError::InvalidKey(_))
            ),
            "{name}: {bad}"
        );
    }
}

#[tokio::test]
async fn the_folder_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(&FolderStore::new(dir.path().to_path_buf())).await;
}

#[tokio::test]
async fn the_s3_store_conforms_on_a_server_that_checks_signatures() {
    let Some(store) = s3_store().await else {
        return;
    };
    conformance(&store).await;
}

#[tokio::test]
async fn s3_refuses_a_wrong_secret() {
    let Some(store) = s3_store().await else {
        return;
    };
    let (url, key, _) = s3_env().unwrap();
    let forged = S3Store::connect(&s3_options(&url, &key, "not-the-secret", store.bucket())).await;
    let err = forged
        .put("x/y.bin", vec![1, 2, 3], "application/octet-stream")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");
    assert!(matches!(
        store.head("x/y.bin").await,
        Err(StorageError::NotFound(_))
    ));
}

/// moto's S3, for the bucket-configuration APIs s3s-fs lacks (it checks no signatures: the data
/// path is tested on s3s-fs above).
fn moto_url() -> Option<String> {
    match std::env::var("AIRWAVE_TEST_MOTO_URL") {
        Ok(u) => Some(u),
        Err(_) => {
            assert!(
                std::env::var("AIRWAVE_TEST_REQUIRE_SERVICES").is_err(),
                "scripts/test runs need moto (AIRWAVE_TEST_MOTO_URL)"
            );
            eprintln!("not run: needs moto (scripts/test starts it)");
            None
        }
    }
}

#[tokio::test]
async fn storage_setup_applies_lifecycle_cors_and_the_public_access_block_and_keeps_other_rules() {
    use aws_sdk_s3::types::{
        BucketLifecycleConfiguration, CorsConfiguration, CorsRule, ExpirationStatus,
        LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
    };
    let app = airwave_tests::TestApp::spawn().await;
    // The folder backend has nothing to set up, and says so.
    let out = app.cli(&["storage", "setup"], &[], None).await;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("folder backend needs no set-up"));
    let Some(url) = moto_url() else { return };
    let bucket = format!("setup-{:016x}", rand::random::<u64>());
    let store = S3Store::connect(&s3_options(&url, "any", "any", &bucket)).await;
    let c = store.client();
    c.create_bucket().bucket(&bucket).send().await.unwrap();
    // Someone else's rules, which the set-up must keep.
    c.put_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(
                    LifecycleRule::builder()
                        .id("keep-logs-30-days")
                        .status(ExpirationStatus::Enabled)
                        .filter(LifecycleRuleFilter::builder().prefix("logs/").build())
                        .expiration(LifecycleExpiration::builder().days(30).build())
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    c.put_bucket_cors()
        .bucket(&bucket)
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(
                    CorsRule::builder()
                        .id("other")
                        .allowed_origins("https://other.example.com")
                        .allowed_methods("GET")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let env = |origins: &'static str| {
        vec![
            ("AIRWAVE_STORAGE_BACKEND", "s3".to_owned()),
            ("AWS_S3_BUCKET", bucket.clone()),
            ("AWS_ENDPOINT_URL", url.clone()),
            ("AWS_S3_FORCE_PATH_STYLE", "on".to_owned()),
            ("AWS_ACCESS_KEY_ID", "any".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "any".to_owned()),
            ("AIRWAVE_CORS_ORIGINS", origins.to_owned()),
        ]
    };
    let setup = |env: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let out = app.cli(&["storage", "setup"], &as_pairs(&env), None).await;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            text
        }
    };

    let first = setup(env("https://app.example.com")).await;
    for line in [
        "lifecycle: rule airwave-abort-incomplete-multipart added",
        "lifecycle: rule airwave-expire-tmp added (expire tmp/ after 7 day(s))",
        "cors: rule airwave added (GET, HEAD, PUT from https://app.example.com)",
        "public access: blocked",
        "storage setup: 4 change(s)",
    ] {
        assert!(first.contains(line), "no `{line}` in:\n{first}");
    }
    // What the bucket now says, read with the SDK.
    let rules = c
        .get_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .send()
        .await
        .unwrap()
        .rules()
        .to_vec();
    let rule = |id: &str| {
        rules
            .iter()
            .find(|r| r.id() == Some(id))
            .unwrap_or_else(|| panic!("no lifecycle rule {id}: {rules:?}"))
    };
    let abort = rule("airwave-abort-incomplete-multipart");
    assert_eq!(
        abort
            .abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation()),
        Some(1)
    );
    let tmp = rule("airwave-expire-tmp");
    assert_eq!(tmp.filter().and_then(|f| f.prefix()), Some("tmp/"));
    assert_eq!(tmp.expiration().and_then(|e| e.days()), Some(7));
    assert_eq!(
        rule("keep-logs-30-days")
            .expiration()
            .and_then(|e| e.days()),
        Some(30)
    );
    let cors = c
        .get_bucket_cors()
        .bucket(&bucket)
        .send()
        .await
        .unwrap()
        .cors_rules()
        .to_vec();
    let ours = cors.iter().find(|r| r.id() == Some("airwave")).unwrap();
    assert_eq!(ours.allowed_origins(), ["https://app.example.com"]);
    assert!(ours.expose_headers().iter().any(|h| h == "ETag"));
    assert!(cors.iter().any(|r| r.id() == Some("other")));
    let pab = c
        .get_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let pab = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        [
            pab.block_public_acls(),
            pab.ignore_public_acls(),
            pab.block_public_policy(),
            pab.restrict_public_buckets()
        ],
        [Some(true); 4]
    );

    // Again: nothing to do.
    let second = setup(env("https://app.example.com")).await;
    assert!(second.contains("storage setup: 0 change(s)"), "{second}");
    assert!(
        !second.contains(" added") && !second.contains(" updated"),
        "{second}"
    );
    // New origins: only the CORS rule changes.
    let third = setup(env("https://app.example.com,https://studio.example.com")).await;
    assert!(third.contains("cors: rule airwave updated"), "{third}");
    assert!(third.contains("storage setup: 1 change(s)"), "{third}");
    // No origins: our rule goes, the other stays.
    let fourth = setup(env("")).await;
    assert!(fourth.contains("cors: rule airwave removed"), "{fourth}");
    let cors = c.get_bucket_cors().bucket(&bucket).send().await.unwrap();
    let ids: Vec<_> = cors.cors_rules().iter().filter_map(|r| r.id()).collect();
    assert_eq!(ids, ["other"]);
}
