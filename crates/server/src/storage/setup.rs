//! `airwave-server storage setup`: what the bucket must be configured with, applied and read
//! back. Safe to run again: each part is read first and written only when ours differs, and other
//! rules already on the bucket (someone else's lifecycle or CORS rules) are kept.
//!
//! - **Lifecycle**: `airwave-abort-incomplete-multipart` aborts multipart uploads a day after they
//!   start (a write that died half-way leaves parts that are billed but invisible);
//!   `airwave-expire-tmp` expires `tmp/` (resumable-upload parts, health probes, bench objects) a
//!   day after abandoned uploads expire, as a backstop behind the cleanup job.
//! - **CORS**: `airwave` lets the web app's origins (`AIRWAVE_CORS_ORIGINS`) PUT, GET and HEAD
//!   from a browser — uploads to presigned URLs, ranged reads of signed links — and read `ETag`
//!   and the range headers. No origins configured: our rule is removed.
//! - **Public access**: all four public-access-block settings on. Nothing in the bucket is ever
//!   public: public assets reach the CDN through this server's `/cdn/…` path (see
//!   docs/storage.md), private ones through expiring presigned links.

use super::s3::S3Store;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, CorsConfiguration, CorsRule,
    ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
    PublicAccessBlockConfiguration,
};

pub const ABORT_RULE: &str = "airwave-abort-incomplete-multipart";
pub const TMP_RULE: &str = "airwave-expire-tmp";
pub const CORS_RULE: &str = "airwave";
pub const TMP_PREFIX: &str = "tmp/";
const CORS_METHODS: [&str; 3] = ["GET", "HEAD", "PUT"];
const CORS_EXPOSE: [&str; 4] = ["ETag", "Content-Length", "Content-Range", "Accept-Ranges"];
const CORS_MAX_AGE: i32 = 3600;

/// What the bucket should have.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// Days after which an incomplete multipart upload is aborted.
    pub abort_after_days: i32,
    /// Days after which `tmp/` objects expire.
    pub tmp_days: i32,
    /// Browser origins allowed; empty: no CORS rule of ours.
    pub cors_origins: Vec<String>,
}

impl Wanted {
    /// From the configuration: `tmp/` lives a week, or a day longer than an abandoned upload
    /// does if that is longer. (S3 counts from each object's creation, while an upload's expiry
    /// moves on with every PATCH: an upload kept going for longer than this loses its first
    /// parts.)
    pub fn from_config(config: &crate::config::Config) -> Self {
        let expiry_days = config.uploads.expiry.as_secs().div_ceil(86_400);
        Self {
            abort_after_days: 1,
            tmp_days: i32::try_from((expiry_days + 1).max(7)).unwrap_or(i32::MAX),
            cors_origins: config.cors_origins.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{step} on bucket {bucket}: {message}")]
    S3 {
        step: &'static str,
        bucket: String,
        message: String,
    },
    #[error("{0}")]
    Build(#[from] aws_sdk_s3::error::BuildError),
    #[error("{what} was written but reads back differently: the server did not apply it")]
    NotApplied { what: &'static str },
}

/// What one part of the set-up did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub area: &'static str,
    pub changed: bool,
    pub line: String,
}

/// The comparable gist of a lifecycle rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RuleGist {
    enabled: bool,
    prefix: String,
    expire_days: Option<i32>,
    abort_days: Option<i32>,
}

fn gist(r: &LifecycleRule) -> RuleGist {
    #[allow(deprecated)]
    let old_prefix = r.prefix();
    RuleGist {
        enabled: r.status() == &ExpirationStatus::Enabled,
        prefix: r
            .filter()
            .and_then(|f| f.prefix())
            .or(old_prefix)
            .unwrap_or_default()
            .to_owned(),
        expire_days: r.expiration().and_then(|e| e.days()),
        abort_days: r
            .abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation()),
    }
}

fn ours(w: &Wanted) -> Result<Vec<(LifecycleRule, &'static str)>, SetupError> {
    Ok(vec![
        (
            LifecycleRule::builder()
                .id(ABORT_RULE)
                .status(ExpirationStatus::Enabled)
                .filter(LifecycleRuleFilter::builder().prefix("").build())
                .abort_incomplete_multipart_upload(
                    AbortIncompleteMultipartUpload::builder()
                        .days_after_initiation(w.abort_after_days)
                        .build(),
                )
                .build()?,
            "abort incomplete multipart uploads",
        ),
        (
            LifecycleRule::builder()
                .id(TMP_RULE)
                .status(ExpirationStatus::Enabled)
                .filter(LifecycleRuleFilter::builder().prefix(TMP_PREFIX).build())
                .expiration(LifecycleExpiration::builder().days(w.tmp_days).build())
                .build()?,
            "expire tmp/",
        ),
    ])
}

fn s3_error<E>(step: &'static str, bucket: &str, e: &aws_sdk_s3::error::SdkError<E>) -> SetupError
where
    E: std::error::Error + 'static,
{
    SetupError::S3 {
        step,
        bucket: bucket.to_owned(),
        message: DisplayErrorContext(e).to_string(),
    }
}

/// Reads back until `good` holds: S3 applies bucket configuration eventually (a read right
/// after a write may still see the old one), so up to about 30 s.
async fn settled<T, F, Fut>(read: F, good: impl Fn(&T) -> bool) -> Result<T, SetupError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, SetupError>>,
{
    let mut wait = std::time::Duration::from_millis(250);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let v = read().await?;
        if good(&v) || tokio::time::Instant::now() >= deadline {
            return Ok(v);
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(5));
    }
}

/// The service error's code, when the server answered one.
fn code<E: ProvideErrorMetadata, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> Option<&str> {
    e.as_service_error().and_then(ProvideErrorMetadata::code)
}

async fn lifecycle_rules(s: &S3Store) -> Result<Vec<LifecycleRule>, SetupError> {
    match s
        .client()
        .get_bucket_lifecycle_configuration()
        .bucket(s.bucket())
        .send()
        .await
    {
        Ok(o) => Ok(o.rules().to_vec()),
        Err(e) if code(&e) == Some("NoSuchLifecycleConfiguration") => Ok(Vec::new()),
        Err(e) => Err(s3_error("reading the lifecycle rules", s.bucket(), &e)),
    }
}

async fn lifecycle(s: &S3Store, w: &Wanted) -> Result<Vec<Step>, SetupError> {
    let current = lifecycle_rules(s).await?;
    let wanted = ours(w)?;
    let mut rules: Vec<LifecycleRule> = current
        .iter()
        .filter(|r| !matches!(r.id(), Some(ABORT_RULE | TMP_RULE)))
        .cloned()
        .collect();
    let mut steps = Vec::new();
    for (rule, what) in &wanted {
        let id = rule.id().unwrap_or_default();
        let had = current.iter().find(|r| r.id() == Some(id)).map(gist);
        let want = gist(rule);
        let detail = match (want.expire_days, want.abort_days) {
            (Some(d), _) => format!("{what} after {d} day(s)"),
            (_, Some(d)) => format!("{what} {d} day(s) after they start"),
            _ => (*what).to_owned(),
        };
        let (changed, verb) = match &had {
            None => (true, "added"),
            Some(g) if *g != want => (true, "updated"),
            Some(_) => (false, "unchanged"),
        };
        steps.push(Step {
            area: "lifecycle",
            changed,
            line: format!("lifecycle: rule {id} {verb} ({detail})"),
        });
        rules.push(rule.clone());
    }
    if steps.iter().any(|s| s.changed) {
        s.client()
            .put_bucket_lifecycle_configuration()
            .bucket(s.bucket())
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .set_rules(Some(rules))
                    .build()?,
            )
            .send()
            .await
            .map_err(|e| s3_error("writing the lifecycle rules", s.bucket(), &e))?;
    }
    // Read back: ours as wanted, and nobody else's rule lost.
    let ours_back = |after: &Vec<LifecycleRule>| {
        wanted.iter().all(|(rule, _)| {
            after.iter().find(|r| r.id() == rule.id()).map(gist) == Some(gist(rule))
        })
    };
    let others_kept = |after: &Vec<LifecycleRule>| {
        current
            .iter()
            .filter(|r| !matches!(r.id(), Some(ABORT_RULE | TMP_RULE)))
            .all(|other| after.iter().any(|r| r.id() == other.id()))
    };
    let after = settled(|| lifecycle_rules(s), |a| ours_back(a) && others_kept(a)).await?;
    if !ours_back(&after) {
        return Err(SetupError::NotApplied {
            what: "a lifecycle rule",
        });
    }
    if !others_kept(&after) {
        return Err(SetupError::NotApplied {
            what: "the lifecycle rules (another rule was lost)",
        });
    }
    Ok(steps)
}

/// The comparable gist of a CORS rule: origins, methods and headers sorted, the max age.
#[derive(Debug, PartialEq, Eq)]
struct CorsGist {
    origins: Vec<String>,
    methods: Vec<String>,
    headers: Vec<String>,
    expose: Vec<String>,
    max_age: Option<i32>,
}

fn cors_gist(r: &CorsRule) -> CorsGist {
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    CorsGist {
        origins: sorted(r.allowed_origins()),
        methods: sorted(r.allowed_methods()),
        headers: sorted(r.allowed_headers()),
        expose: sorted(r.expose_headers()),
        max_age: r.max_age_seconds(),
    }
}

fn our_cors(w: &Wanted) -> Result<Option<CorsRule>, SetupError> {
    if w.cors_origins.is_empty() {
        return Ok(None);
    }
    let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Ok(Some(
        CorsRule::builder()
            .id(CORS_RULE)
            .set_allowed_origins(Some(w.cors_origins.clone()))
            .set_allowed_methods(Some(own(&CORS_METHODS)))
            .set_allowed_headers(Some(own(&["*"])))
            .set_expose_headers(Some(own(&CORS_EXPOSE)))
            .max_age_seconds(CORS_MAX_AGE)
            .build()?,
    ))
}

async fn cors_rules(s: &S3Store) -> Result<Vec<CorsRule>, SetupError> {
    match s.client().get_bucket_cors().bucket(s.bucket()).send().await {
        Ok(o) => Ok(o.cors_rules().to_vec()),
        Err(e) if code(&e) == Some("NoSuchCORSConfiguration") => Ok(Vec::new()),
        Err(e) => Err(s3_error("reading the CORS rules", s.bucket(), &e)),
    }
}

async fn cors(s: &S3Store, w: &Wanted) -> Result<Step, SetupError> {
    let current = cors_rules(s).await?;
    let want = our_cors(w)?;
    let had = current.iter().find(|r| r.id() == Some(CORS_RULE));
    let mut rules: Vec<CorsRule> = current
        .iter()
        .filter(|r| r.id() != Some(CORS_RULE))
        .cloned()
        .collect();
    let origins = w.cors_origins.join(", ");
    let methods = CORS_METHODS.join(", ");
    let (changed, line) = match (had, &want) {
        (None, None) => (
            false,
            "cors: unchanged (no origins configured in AIRWAVE_CORS_ORIGINS: no rule)".to_owned(),
        ),
        (Some(_), None) => (
            true,
            "cors: rule airwave removed (no origins configured in AIRWAVE_CORS_ORIGINS)".to_owned(),
        ),
        (None, Some(_)) => (
            true,
            format!("cors: rule airwave added ({methods} from {origins})"),
        ),
        (Some(h), Some(r)) if cors_gist(h) != cors_gist(r) => (
            true,
            format!("cors: rule airwave updated ({methods} from {origins})"),
        ),
        (Some(_), Some(_)) => (
            false,
            format!("cors: rule airwave unchanged ({methods} from {origins})"),
        ),
    };
    if changed {
        if let Some(r) = &want {
            rules.push(r.clone());
        }
        if rules.is_empty() {
            s.client()
                .delete_bucket_cors()
                .bucket(s.bucket())
                .send()
                .await
                .map_err(|e| s3_error("removing the CORS rules", s.bucket(), &e))?;
        } else {
            s.client()
                .put_bucket_cors()
                .bucket(s.bucket())
                .cors_configuration(
                    CorsConfiguration::builder()
                        .set_cors_rules(Some(rules))
                        .build()?,
                )
                .send()
                .await
                .map_err(|e| s3_error("writing the CORS rules", s.bucket(), &e))?;
        }
    }
    let wanted_gist = want.as_ref().map(cors_gist);
    let back = |after: &Vec<CorsRule>| {
        after
            .iter()
            .find(|r| r.id() == Some(CORS_RULE))
            .map(cors_gist)
    };
    let after = settled(|| cors_rules(s), |a| back(a) == wanted_gist).await?;
    if back(&after) != wanted_gist {
        return Err(SetupError::NotApplied {
            what: "the CORS rule",
        });
    }
    Ok(Step {
        area: "cors",
        changed,
        line,
    })
}

async fn public_access(s: &S3Store) -> Result<Option<[bool; 4]>, SetupError> {
    match s
        .client()
        .get_public_access_block()
        .bucket(s.bucket())
        .send()
        .await
    {
        Ok(o) => Ok(o.public_access_block_configuration().map(|c| {
            [
                c.block_public_acls().unwrap_or(false),
                c.ignore_public_acls().unwrap_or(false),
                c.block_public_policy().unwrap_or(false),
                c.restrict_public_buckets().unwrap_or(false),
            ]
        })),
        Err(e) if code(&e) == Some("NoSuchPublicAccessBlockConfiguration") => Ok(None),
        Err(e) => Err(s3_error("reading the public access block", s.bucket(), &e)),
    }
}

async fn block_public(s: &S3Store) -> Result<Step, SetupError> {
    let all = Some([true; 4]);
    let changed = public_access(s).await? != all;
    if changed {
        s.client()
            .put_public_access_block()
            .bucket(s.bucket())
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s3_error("writing the public access block", s.bucket(), &e))?;
    }
    if settled(|| public_access(s), |p| *p == all).await? != all {
        return Err(SetupError::NotApplied {
            what: "the public access block",
        });
    }
    let verb = if changed {
        "blocked"
    } else {
        "unchanged, blocked"
    };
    Ok(Step {
        area: "public access",
        changed,
        line: format!(
            "public access: {verb} (BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy, RestrictPublicBuckets; public assets reach the CDN through /cdn/ on this server)"
        ),
    })
}

/// Applies and verifies everything; what each part did, in order.
pub async fn run(s: &S3Store, w: &Wanted) -> Result<Vec<Step>, SetupError> {
    let mut steps = lifecycle(s, w).await?;
    steps.push(cors(s, w).await?);
    steps.push(block_public(s).await?);
    Ok(steps)
}
