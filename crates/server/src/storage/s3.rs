//! Blobs on S3 or any S3-compatible server (`aws-sdk-s3`, rustls on ring). Writes stream in
//! parts of `part_size` (one part in memory at a time): a small body is one `PutObject`, a larger
//! one a multipart upload, aborted when anything fails so no half object is ever visible. Reads
//! stream the response body; ranges are `Range: bytes=…` requests; copies are server-side
//! (`CopyObject`, or `UploadPartCopy` over 5 GiB).

use super::{
    check_key, check_prefix, BlobInfo, BlobStore, ByteRange, ByteStream, Listed, Reading,
    StorageError, Tally, Written,
};
use async_trait::async_trait;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream as SdkStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt as _, TryStreamExt as _};

/// S3 refuses `CopyObject` above 5 GiB; larger copies go part by part.
const COPY_OBJECT_LIMIT: u64 = 5 << 30;
/// The part size of a multipart copy.
const COPY_PART: u64 = 512 << 20;

pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    part_size: usize,
}

/// How to reach the bucket (from [`super::settings::StorageConfig`]).
#[derive(Clone)]
pub struct S3Options {
    pub bucket: String,
    pub region: String,
    /// A custom endpoint (an S3-compatible server); none: AWS's for the region.
    pub endpoint: Option<String>,
    pub path_style: bool,
    /// Static credentials; none: the standard chain (environment, profile, web identity, ECS,
    /// instance metadata).
    pub credentials: Option<(String, secrecy::SecretString, Option<secrecy::SecretString>)>,
    pub part_size: usize,
}

impl S3Store {
    pub async fn connect(options: &S3Options) -> Self {
        use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
        use secrecy::ExposeSecret as _;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .region(aws_config::Region::new(options.region.clone()));
        if let Some((id, secret, token)) = &options.credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                id.clone(),
                secret.expose_secret().to_owned(),
                token.as_ref().map(|t| t.expose_secret().to_owned()),
                None,
                "AWS_ACCESS_KEY_ID",
            ));
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(options.path_style)
            // Checksums only where S3 requires them: S3-compatible servers differ in the
            // flexible-checksum headers they take, and we hash every body ourselves.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            );
        if let Some(endpoint) = &options.endpoint {
            config = config.endpoint_url(endpoint.clone());
        }
        Self {
            client: aws_sdk_s3::Client::from_conf(config.build()),
            bucket: options.bucket.clone(),
            part_size: options.part_size,
        }
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn upload(
        &self,
        key: &str,
        mut body: ByteStream,
        content_type: &str,
        max_bytes: u64,
    ) -> Result<Written, StorageError> {
        // Aborts the multipart upload on every way out but completion: an error, or the write
        // being dropped (a client that went away cancels the request's future).
        let mut upload: Option<AbortOnDrop> = None;
        let mut tally = Tally::new(max_bytes);
        let mut buf = BytesMut::with_capacity(self.part_size.min(1 << 20));
        let mut parts: Vec<CompletedPart> = Vec::new();
        loop {
            let chunk = body.try_next().await?;
            if let Some(chunk) = &chunk {
                tally.add(chunk)?;
                buf.extend_from_slice(chunk);
                // Parts grow every 1,000 so that S3's 10,000 parts hold 55,000 × the base part
                // size (440 GiB at 8 MiB) while one part in memory stays bounded.
                if buf.len() < self.part_size * (1 + parts.len() / 1000) {
                    continue;
                }
            } else if upload.is_none() {
                // The whole body fitted in one part: one request.
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .content_type(content_type)
                    .body(SdkStream::from(buf.freeze()))
                    .send()
                    .await
                    .map_err(backend)?;
                return Ok(tally.finish());
            }
            if upload.is_none() {
                upload = Some(self.start_multipart(key, Some(content_type)).await?);
            }
            let id = upload
                .as_ref()
                .and_then(|u| u.upload_id.clone())
                .ok_or_else(|| StorageError::Backend("no upload id".into()))?;
            let id = id.as_str();
            if !buf.is_empty() || parts.is_empty() {
                let number = i32::try_from(parts.len() + 1)
                    .map_err(|_| StorageError::Backend("too many parts".into()))?;
                let part: Bytes = std::mem::take(&mut buf).freeze();
                let uploaded = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(id)
                    .part_number(number)
                    .body(SdkStream::from(part))
                    .send()
                    .await
                    .map_err(backend)?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(uploaded.e_tag().map(str::to_owned))
                        .build(),
                );
            }
            if chunk.is_none() {
                self.complete(key, id, parts).await?;
                if let Some(u) = upload.as_mut() {
                    u.disarm();
                }
                return Ok(tally.finish());
            }
        }
    }

    async fn copy_in_parts(&self, from: &str, to: &str, size: u64) -> Result<(), StorageError> {
        // Every part from the same version of the source (a concurrent overwrite fails the copy
        // instead of splicing two versions), with the source's content type.
        let source = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(from)
            .send()
            .await
            .map_err(backend)?;
        let etag = source
            .e_tag()
            .ok_or_else(|| StorageError::Backend("the source has no ETag".into()))?
            .to_owned();
        let mut guard = self.start_multipart(to, source.content_type()).await?;
        let id = guard
            .upload_id
            .clone()
            .ok_or_else(|| StorageError::Backend("no upload id".into()))?;
        let mut parts = Vec::new();
        let mut start = 0;
        while start < size {
            let end = (start + COPY_PART).min(size) - 1;
            let number = i32::try_from(parts.len() + 1)
                .map_err(|_| StorageError::Backend("too many parts".into()))?;
            let copied = self
                .client
                .upload_part_copy()
                .bucket(&self.bucket)
                .key(to)
                .upload_id(&id)
                .part_number(number)
                .copy_source(format!("{}/{from}", self.bucket))
                .copy_source_range(format!("bytes={start}-{end}"))
                .copy_source_if_match(&etag)
                .send()
                .await
                .map_err(backend)?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(
                        copied
                            .copy_part_result()
                            .and_then(|r| r.e_tag())
                            .map(str::to_owned),
                    )
                    .build(),
            );
            start = end + 1;
        }
        self.complete(to, &id, parts).await?;
        guard.disarm();
        Ok(())
    }

    /// Starts a multipart upload, aborted unless completed and disarmed.
    async fn start_multipart(
        &self,
        key: &str,
        content_type: Option<&str>,
    ) -> Result<AbortOnDrop, StorageError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_content_type(content_type.map(str::to_owned))
            .send()
            .await
            .map_err(backend)?;
        let id = created
            .upload_id()
            .ok_or_else(|| StorageError::Backend("no upload id in the answer".into()))?;
        Ok(AbortOnDrop::new(self, key, id))
    }

    async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), StorageError> {
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }
}

/// Aborts a multipart upload when dropped armed (in a task: `Drop` cannot wait).
struct AbortOnDrop {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
}

impl AbortOnDrop {
    fn new(store: &S3Store, key: &str, upload_id: &str) -> Self {
        Self {
            client: store.client.clone(),
            bucket: store.bucket.clone(),
            key: key.to_owned(),
            upload_id: Some(upload_id.to_owned()),
        }
    }

    fn disarm(&mut self) {
        self.upload_id = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.upload_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key.clone());
        runtime.spawn(async move {
            if let Err(e) = client
                .abort_multipart_upload()
                .bucket(&bucket)
                .key(&key)
                .upload_id(&id)
                .send()
                .await
            {
                // The bucket's lifecycle rule (`storage setup`) removes what is left.
                tracing::warn!(key, error = %DisplayErrorContext(&e), "could not abort a multipart upload");
            }
        });
    }
}

/// The service's error, with its code and message (never the request's credentials).
fn backend<E, R>(e: aws_sdk_s3::error::SdkError<E, R>) -> StorageError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(service) => StorageError::Backend(format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or("no message")
        )),
        None => StorageError::Backend(DisplayErrorContext(&e).to_string()),
    }
}

type SdkError<E> = aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>;

fn is_missing<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    // By code only: a 404 for a missing bucket or a wrong endpoint is an outage, not a
    // missing blob (which would fail a render for good).
    e.as_service_error()
        .is_some_and(|s| matches!(s.code(), Some("NoSuchKey" | "NotFound")))
}

/// `bytes FIRST-LAST/TOTAL` → TOTAL.
fn total_of(content_range: &str) -> Option<u64> {
    content_range.rsplit_once('/')?.1.parse().ok()
}

/// The SDK's body as our stream.
fn stream_of(body: SdkStream) -> ByteStream {
    futures_util::stream::unfold(body, |mut body| async move {
        body.next()
            .await
            .map(|r| (r.map_err(std::io::Error::other), body))
    })
    .boxed()
}

#[async_trait]
impl BlobStore for S3Store {
    fn backend(&self) -> &'static str {
        "s3"
    }

    async fn put_stream(
        &self,
        key: &str,
        body: ByteStream,
        content_type: &str,
        max_bytes: u64,
    ) -> Result<Written, StorageError> {
        check_key(key)?;
        self.upload(key, body, content_type, max_bytes).await
    }

    async fn presigned_get(
        &self,
        key: &str,
        served: &super::delivery::Served,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, StorageError> {
        check_key(key)?;
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(ttl)
            .map_err(|e| StorageError::Backend(format!("presigning: {e}")))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_type(&served.content_type)
            .response_content_disposition(&served.disposition)
            .response_cache_control(&served.cache_control)
            .presigned(config)
            .await
            .map_err(backend)?;
        Ok(Some(req.uri().to_owned()))
    }

    async fn get_stream(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Reading, StorageError> {
        check_key(key)?;
        let mut request = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some(r) = range {
            if r.end.is_some_and(|e| e < r.start) {
                let size = self.head(key).await?.size;
                return Err(StorageError::InvalidRange { size });
            }
            request = request.range(match r.end {
                Some(end) => format!("bytes={}-{end}", r.start),
                None => format!("bytes={}-", r.start),
            });
        }
        let out = match request.send().await {
            Ok(out) => out,
            Err(e) if is_missing(&e) => return Err(StorageError::NotFound(key.into())),
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("InvalidRange") => {
                let size = self.head(key).await?.size;
                return Err(StorageError::InvalidRange { size });
            }
            Err(e) => return Err(backend(e)),
        };
        let length = u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0);
        let content_type = out.content_type().map(str::to_owned);
        let (size, served) = match (range, out.content_range()) {
            (Some(r), Some(cr)) => {
                let total = total_of(cr).unwrap_or(length);
                (total, Some((r.start, r.start + length.saturating_sub(1))))
            }
            // A server that ignored the range sent the whole blob.
            _ => (length, None),
        };
        Ok(Reading {
            info: BlobInfo { size, content_type },
            range: served,
            body: stream_of(out.body),
        })
    }

    async fn head(&self, key: &str) -> Result<BlobInfo, StorageError> {
        check_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(BlobInfo {
                size: u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0),
                content_type: out.content_type().map(str::to_owned),
            }),
            Err(e) if is_missing(&e) => Err(StorageError::NotFound(key.into())),
            Err(e) => Err(backend(e)),
        }
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), StorageError> {
        check_key(from)?;
        check_key(to)?;
        let size = self.head(from).await?.size;
        if size > COPY_OBJECT_LIMIT {
            return self.copy_in_parts(from, to, size).await;
        }
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(format!("{}/{from}", self.bucket))
            .send()
            .await
            .map_err(|e| {
                if is_missing(&e) {
                    StorageError::NotFound(from.into())
                } else {
                    backend(e)
                }
            })?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Listed>, StorageError> {
        check_prefix(prefix)?;
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        while found.len() < limit {
            let want = i32::try_from((limit - found.len()).min(1000)).unwrap_or(1000);
            let mut request = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .max_keys(want);
            request = match (&token, after) {
                (Some(t), _) => request.continuation_token(t),
                (None, Some(a)) => request.start_after(a),
                (None, None) => request,
            };
            let out = request.send().await.map_err(backend)?;
            for object in out.contents() {
                if let Some(key) = object.key() {
                    found.push(Listed {
                        key: key.to_owned(),
                        size: u64::try_from(object.size().unwrap_or(0)).unwrap_or(0),
                    });
                }
            }
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        found.truncate(limit);
        Ok(found)
    }
}
