//! Request and response types of the HTTP API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// An RFC 9457 problem document: every error the API returns has this shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Problem {
    /// A URI naming the problem type (`about:blank` or `https://airwave.app/problems/<code>`).
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable code (`invalid_json`, `not_found`, `forbidden`, …).
    pub code: String,
    /// The request id (also in the `x-request-id` header), for support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// A user's role. Ordered from most to least privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
#[derive(strum::EnumString, strum::IntoStaticStr, strum::EnumIter, strum::VariantNames)]
#[strum(serialize_all = "snake_case", parse_err_ty = UnknownValue, parse_err_fn = unknown_role)]
pub enum Role {
    /// Everything, including users, roles and tokens of others.
    Admin,
    /// Operations: queues, webhooks, backups, alerts; reads all domain data.
    Operator,
    /// Support staff: read access to domain data and email logs.
    Support,
    /// Agency staff: works on the clients they belong to.
    Member,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Support, Role::Member];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Privilege rank: lower is more privileged.
    pub fn rank(self) -> u8 {
        match self {
            Role::Admin => 0,
            Role::Operator => 1,
            Role::Support => 2,
            Role::Member => 3,
        }
    }

    /// Whether a token of role `self` may be issued to a user whose role is `of`:
    /// a token never carries more privilege than its user. Admins may mint any role.
    pub fn can_be_scoped_from(self, of: Role) -> bool {
        of == Role::Admin || self == of || (of != Role::Member && self == Role::Member)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names none of an enum's values (`"superuser"` as a role).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{got}` (expected {expected})")]
pub struct UnknownValue {
    pub what: &'static str,
    pub got: String,
    pub expected: String,
}

impl UnknownValue {
    fn of<T: strum::VariantNames>(what: &'static str, got: &str) -> Self {
        Self {
            what,
            got: got.chars().take(40).collect(),
            expected: T::VARIANTS.join(", "),
        }
    }
}

fn unknown_role(s: &str) -> UnknownValue {
    UnknownValue::of::<Role>("role", s)
}
fn unknown_asset_type(s: &str) -> UnknownValue {
    UnknownValue::of::<AssetType>("asset type", s)
}
fn unknown_execution_status(s: &str) -> UnknownValue {
    UnknownValue::of::<ExecutionStatus>("execution status", s)
}
fn unknown_approval_status(s: &str) -> UnknownValue {
    UnknownValue::of::<ApprovalStatus>("approval status", s)
}
fn unknown_health_status(s: &str) -> UnknownValue {
    UnknownValue::of::<HealthStatus>("health status", s)
}

/// A page of a cursor-paginated list. Pass `next_cursor` back as `cursor` for the next page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// `Debug` for a type that carries a password or a token: the secret fields print `[redacted]`,
/// so a logged or panicked value never shows them.
macro_rules! debug_redacting {
    ($t:ident { $($plain:ident),* } secrets { $($secret:ident),* }) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    $(.field(stringify!($plain), &self.$plain))*
                    $(.field(stringify!($secret), &"[redacted]"))*
                    .finish()
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Auth

#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterIn {
    pub email: String,
    /// 10 to 256 characters.
    pub password: String,
    pub name: String,
}

/// The token from the link in the confirmation e-mail sent by registration, and the password
/// chosen when asking for the account (so that only whoever asked can create it).
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationConfirmIn {
    pub token: String,
    pub password: String,
}

#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    pub email: String,
    pub password: String,
}

#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginOut {
    /// A bearer token (a JWT signed with `JWT_SECRET`, bound to a revocable session).
    pub token: String,
    pub token_type: String,
    pub expires_at: DateTime<Utc>,
    pub user: UserOut,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct UserOut {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// When an admin disabled the account (it can neither log in nor use any credential).
    #[serde(default)]
    pub disabled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetIn {
    pub email: String,
}

#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirmIn {
    pub token: String,
    pub password: String,
}

/// An admin's change to a user: a new role, and/or disabling (or enabling) the account.
/// Disabling ends every session and revokes every API token of the user at once.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Why (kept in the audit log), up to 500 characters.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Create an API token for the calling user (the console does this after a login).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenIn {
    pub name: String,
    /// Defaults to the user's own role; never more privileged than it.
    #[serde(default)]
    pub role: Option<Role>,
    /// 1 to 365 days; no expiry when absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 365)]
    pub expires_in_days: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiTokenOut {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The one answer that carries a token's secret. It is never shown again.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiTokenCreatedOut {
    pub token: String,
    #[serde(flatten)]
    pub info: ApiTokenOut,
}

// ---------------------------------------------------------------------------------------------
// Clients

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientIn {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClientOut {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberIn {
    pub email: String,
}

/// An e-mail template (`GET /api/ops/emails/templates`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EmailTemplateOut {
    pub name: String,
    pub description: String,
    /// The subject it renders for its sample data.
    pub sample_subject: String,
}

/// A message's state in the e-mail log.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum EmailStatus {
    /// Recorded, waiting for (or between) send attempts.
    Queued,
    /// The transport took it.
    Sent,
    /// The provider reports it delivered.
    Delivered,
    /// The provider reports a bounce.
    Bounced,
    /// The recipient marked it as spam.
    Complained,
    /// It could not be sent (a permanent error, or out of attempts).
    Failed,
    /// Not sent: the address is on the suppression list.
    Suppressed,
}

/// A message in the e-mail log (`GET /api/ops/emails`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EmailOut {
    pub id: String,
    pub to: String,
    pub template: String,
    pub subject: String,
    pub status: EmailStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// The transport that took (or last tried) it: `resend`, `smtp` or `outbox`.
    pub transport: Option<String>,
    pub provider_id: Option<String>,
    /// The `Message-ID` header it carries.
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    /// The message this one sends again.
    pub resend_of: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub status_at: Option<DateTime<Utc>>,
}

/// One attempt to hand a message to the transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EmailAttemptOut {
    pub attempt: i32,
    pub transport: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    /// `sent`, `retry` or `failed`.
    pub outcome: String,
    pub error: Option<String>,
    pub provider_id: Option<String>,
}

/// A message with its rendered parts (links' tokens shown as `[redacted]`) and its attempts
/// (`GET /api/ops/emails/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EmailDetailOut {
    pub email: EmailOut,
    pub from: Option<String>,
    pub text: String,
    /// The HTML part, to show in a sandboxed frame (no scripts, no remote loads).
    pub html: Option<String>,
    pub attempts: Vec<EmailAttemptOut>,
    /// Whether the recipient is on the suppression list now.
    pub suppressed: bool,
    /// The messages that sent this one again.
    pub resent_as: Vec<String>,
}

/// Sends a logged message again (`POST /api/ops/emails/{id}/resend`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct EmailResendIn {
    /// Required to send to a suppressed address: why (audited).
    #[serde(default)]
    pub override_suppression_reason: Option<String>,
}

/// Why an address is on the suppression list.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum SuppressionReason {
    HardBounce,
    Complaint,
    Manual,
}

/// An address no message is sent to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SuppressionOut {
    pub address: String,
    pub reason: SuppressionReason,
    pub note: Option<String>,
    /// The message whose bounce or complaint put it here.
    pub email_id: Option<String>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Adds an address to the suppression list by hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct SuppressionIn {
    pub address: String,
    /// Why (audited); 1 to 500 characters.
    pub note: String,
}

/// An invitation to join a client, sent to an e-mail address whether or not it has an account;
/// the membership exists once the owner of the address accepts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InviteOut {
    pub id: String,
    pub client_id: String,
    pub email: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The token from the link in an invitation e-mail.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteAcceptIn {
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemberOut {
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub added_at: DateTime<Utc>,
}

// ---------------------------------------------------------------------------------------------
// Assets

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[derive(strum::EnumString, strum::IntoStaticStr, strum::EnumIter, strum::VariantNames)]
#[strum(serialize_all = "snake_case", parse_err_ty = UnknownValue, parse_err_fn = unknown_asset_type)]
pub enum AssetType {
    Image,
    Video,
    Audio,
    Text,
    Font,
}

impl AssetType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetIn {
    pub client_id: String,
    #[serde(rename = "type")]
    pub type_: AssetType,
    pub name: String,
    /// Free-form metadata; `description` is included in full-text search.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub type_: Option<AssetType>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// Make the asset's file public (served to anyone, through the CDN) or private again.
    #[serde(default)]
    pub public: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssetOut {
    pub id: String,
    pub client_id: String,
    #[serde(rename = "type")]
    pub type_: AssetType,
    pub name: String,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    /// The uploaded file's type, as sniffed from its bytes (none until uploaded).
    pub content_type: Option<String>,
    /// The uploaded file's name, sanitised.
    pub filename: Option<String>,
    /// Bytes of the uploaded file.
    pub size: Option<i64>,
    /// `sha256:<64 hex>` of the uploaded file, computed by the server while it streamed.
    pub checksum: Option<String>,
    /// Public assets are served to anyone, cached, at `public_url` (through the CDN when
    /// `CDN_DOMAIN` is set); private ones only through signed links.
    #[serde(default)]
    pub public: bool,
    /// The public asset's permanent URL (none while private or without a file).
    #[serde(default)]
    pub public_url: Option<String>,
    pub uploaded_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A resumable (tus) upload's state: `GET /api/uploads/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UploadOut {
    pub id: String,
    pub asset_id: String,
    /// Bytes declared at creation.
    pub length: i64,
    /// Bytes stored so far: where the next `PATCH` starts.
    pub received: i64,
    pub content_type: String,
    pub filename: Option<String>,
    pub status: UploadStatus,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[derive(strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum UploadStatus {
    Open,
    /// Every byte arrived; the file is being assembled.
    Completing,
    Completed,
    Failed,
}

/// A signed, expiring link to an asset's file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DownloadUrlOut {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// What an export is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[derive(strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ExportStatus {
    Queued,
    Running,
    Ready,
    Failed,
}

/// A campaign export: the campaign's approved renders and a `manifest.json` (executions,
/// approvals, sha256 of every file) in one zip archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExportOut {
    pub id: String,
    pub campaign_id: String,
    pub client_id: String,
    /// `zip`.
    pub format: String,
    pub status: ExportStatus,
    /// 0–100 while it runs (by bytes packaged).
    pub progress: i32,
    /// Renders in the archive (known once it is ready; while it runs, the renders planned).
    pub renders: Option<i32>,
    pub size_bytes: Option<i64>,
    /// sha256 of the archive, hex.
    pub sha256: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// A signed, expiring link to the archive once it is ready.
    pub download: Option<DownloadUrlOut>,
}

// ---------------------------------------------------------------------------------------------
// Campaigns, matrices, executions

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignIn {
    pub client_id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CampaignOut {
    pub id: String,
    pub client_id: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A matrix is a campaign's render template: the layers every execution fills in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatrixIn {
    pub name: String,
    /// A JSON object describing the template (its layers); interpreted by the renderer.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub template: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MatrixOut {
    pub id: String,
    pub campaign_id: String,
    pub client_id: String,
    pub name: String,
    #[schema(value_type = Object)]
    pub template: Map<String, Value>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[derive(strum::EnumString, strum::IntoStaticStr, strum::EnumIter, strum::VariantNames)]
#[strum(serialize_all = "snake_case", parse_err_ty = UnknownValue, parse_err_fn = unknown_execution_status)]
pub enum ExecutionStatus {
    Queued,
    Rendering,
    Completed,
    Failed,
    Cancelled,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// An execution is a render request: the matrix's template filled with these values.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutionIn {
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionOut {
    pub id: String,
    pub matrix_id: String,
    pub campaign_id: String,
    pub client_id: String,
    pub status: ExecutionStatus,
    /// 0 to 100.
    pub progress: i32,
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    pub output_key: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

// ---------------------------------------------------------------------------------------------
// Approvals

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[derive(strum::EnumString, strum::IntoStaticStr, strum::EnumIter, strum::VariantNames)]
#[strum(serialize_all = "snake_case", parse_err_ty = UnknownValue, parse_err_fn = unknown_approval_status)]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalIn {
    /// Who is asked to approve (shown on the approval page).
    #[serde(default)]
    pub reviewer_email: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    /// 1 to 720 hours; 168 (a week) by default.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 720)]
    pub expires_in_hours: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalOut {
    pub id: String,
    pub execution_id: String,
    pub client_id: String,
    pub status: ApprovalStatus,
    pub reviewer_email: Option<String>,
    pub note: Option<String>,
    pub comment: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// The approval and the single-purpose link the client uses to decide. The token is shown once.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct ApprovalCreatedOut {
    pub approval: ApprovalOut,
    pub token: String,
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDecisionIn {
    pub token: String,
    pub decision: Decision,
    #[serde(default)]
    pub comment: Option<String>,
}

/// What the person holding an approval link may see.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApprovalViewOut {
    pub approval: ApprovalOut,
    pub client_name: String,
    pub campaign_name: String,
    pub execution: ExecutionOut,
}

// ---------------------------------------------------------------------------------------------
// Health (draft-inadarei-api-health-check)

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
#[derive(strum::EnumString, strum::IntoStaticStr, strum::EnumIter, strum::VariantNames)]
#[strum(serialize_all = "snake_case", parse_err_ty = UnknownValue, parse_err_fn = unknown_health_status)]
pub enum HealthStatus {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckOut {
    pub component_id: String,
    pub component_type: String,
    /// A number, in `observedUnit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_unit: Option<String>,
    pub status: HealthStatus,
    pub time: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The check warns when `observedValue` is above this (same unit); an AIrWAVE extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_above: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct HealthOut {
    pub status: HealthStatus,
    pub version: String,
    pub service_id: String,
    pub description: String,
    /// Keyed `component:measurement`, e.g. `database:responseTime`.
    pub checks: std::collections::BTreeMap<String, Vec<HealthCheckOut>>,
}

// ---------------------------------------------------------------------------------------------
// Operations: queues

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum JobStateOut {
    Waiting,
    Delayed,
    Active,
    Completed,
    Retrying,
    Dead,
    Cancelled,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct QueueCountsOut {
    pub waiting: u64,
    pub delayed: u64,
    pub active: u64,
    pub completed: u64,
    pub retrying: u64,
    pub dead: u64,
    pub cancelled: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct QueueOut {
    pub name: String,
    pub paused: bool,
    pub counts: QueueCountsOut,
    /// Averages over the last five minutes (all processes).
    pub rates: QueueRatesOut,
}

/// Jobs per minute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct QueueRatesOut {
    pub enqueued_per_min: f64,
    pub completed_per_min: f64,
    pub failed_per_min: f64,
}

/// Percentiles of a duration in milliseconds (upper bounds of histogram buckets); absent when
/// nothing was measured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PercentilesOut {
    pub p50: Option<u64>,
    pub p95: Option<u64>,
    pub p99: Option<u64>,
}

/// One minute of a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct QueueMinuteOut {
    pub minute: DateTime<Utc>,
    pub enqueued: u64,
    pub completed: u64,
    /// Failed attempts (retried or not).
    pub failed: u64,
    /// Jobs that went to the dead-letter queue.
    pub dead: u64,
    /// From due to started.
    pub wait_ms: PercentilesOut,
    /// From started to finished.
    pub run_ms: PercentilesOut,
}

/// A queue's metrics over a time range: per minute (minutes without activity are absent) and
/// over the whole range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct QueueMetricsOut {
    pub queue: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub minutes: Vec<QueueMinuteOut>,
    pub enqueued: u64,
    pub completed: u64,
    pub failed: u64,
    pub dead: u64,
    pub wait_ms: PercentilesOut,
    pub run_ms: PercentilesOut,
}

/// Retry every job matching a filter (dead or cancelled ones); `dry_run` only counts them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryJobsIn {
    /// `dead` (default) or `cancelled`.
    #[serde(default)]
    pub state: Option<JobStateOut>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// `field.path=value`, e.g. `execution_id=exe_…`.
    #[serde(default)]
    pub payload: Option<String>,
    #[serde(default)]
    pub created_after: Option<DateTime<Utc>>,
    #[serde(default)]
    pub created_before: Option<DateTime<Utc>>,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct JobOut {
    pub id: String,
    pub queue: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub priority: i32,
    pub state: JobStateOut,
    pub run_at: DateTime<Utc>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub unique_key: Option<String>,
    pub correlation_id: Option<String>,
    pub progress: i32,
    pub progress_message: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub last_error: Option<String>,
    pub error_fingerprint: Option<String>,
    pub worker_id: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AttemptOut {
    pub attempt: u32,
    pub worker_id: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: String,
    pub error: Option<String>,
    pub fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct JobDetailOut {
    pub job: JobOut,
    pub attempts: Vec<AttemptOut>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadGroupOut {
    pub fingerprint: String,
    pub kind: String,
    pub count: u64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub sample_error: String,
}

/// Retry the dead jobs of a queue (of one fingerprint, if given). `dry_run` only counts them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryDeadIn {
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CountOut {
    pub count: u64,
    pub dry_run: bool,
}

/// Delete completed jobs that finished more than `older_than_hours` ago (0: all of them).
/// `dry_run` only counts them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeIn {
    /// At most 87 600 (ten years).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 87600)]
    pub older_than_hours: u32,
    #[serde(default)]
    pub dry_run: bool,
}

/// A bulk operation (retry by filter, retry dead letters, purge): how many jobs it matches now
/// and, unless `dry_run`, the job carrying it out on the `cleanup` queue
/// (`GET /api/ops/jobs/{job_id}` shows its `progress`, `progress_message` and, when done, its
/// `result`: `{matched, done, skipped}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BulkOut {
    pub count: u64,
    pub dry_run: bool,
    /// The count stopped at the most one operation touches (100 000): run it again for the rest.
    pub truncated: bool,
    pub job_id: Option<String>,
}

// --- the operations stream (`GET /api/ops/stream`) and health history ---

/// Event types on the operations stream. Each SSE event has `id` (resume with `Last-Event-ID`),
/// `event` (one of these) and `data` (the matching JSON below).
pub mod ops_event {
    /// A health component changed status: [`super::HealthChangedEvent`].
    pub const HEALTH_CHANGED: &str = "health.changed";
    /// Queue counts, every few seconds: [`super::QueueStatsEvent`].
    pub const QUEUE_STATS: &str = "queue.stats";
    /// The client asked to resume from an event the log no longer holds: reload everything.
    /// Data: [`super::StreamGapEvent`].
    pub const STREAM_GAP: &str = "stream.gap";
    /// A message in the e-mail log was recorded or changed state: [`super::EmailChangedEvent`].
    pub const EMAIL_CHANGED: &str = "email.changed";
    /// A webhook delivery or endpoint changed: [`super::WebhookChangedEvent`].
    pub const WEBHOOK_CHANGED: &str = "webhook.changed";
}

/// `email.changed`: a message was recorded or changed state. It carries no address (the stream's
/// log is kept for a day and shown to every watcher); the console reads the message itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EmailChangedEvent {
    pub id: String,
    pub template: String,
    pub status: EmailStatus,
    pub attempts: i32,
    pub time: DateTime<Utc>,
}

/// `health.changed`: a component's status differs from its previous check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct HealthChangedEvent {
    /// The check's key, `component:measurement` (e.g. `database:responseTime`).
    pub component: String,
    pub status: HealthStatus,
    /// The status before (absent for a component's first check).
    pub previous: Option<HealthStatus>,
    pub observed_value: Option<f64>,
    pub observed_unit: Option<String>,
    pub output: Option<String>,
    pub time: DateTime<Utc>,
}

/// `queue.stats`: every queue's counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct QueueStatsEvent {
    pub queues: Vec<QueueStatsItem>,
    pub time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct QueueStatsItem {
    pub name: String,
    pub paused: bool,
    pub counts: QueueCountsOut,
}

/// `stream.gap`: events after `requested` up to `oldest` are gone from the replay log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct StreamGapEvent {
    pub requested: i64,
    pub oldest: Option<i64>,
}

/// One point of a component's history (a time bucket when the range holds more checks than the
/// points asked for: the worst status and the highest value in it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct HealthPointOut {
    pub at: DateTime<Utc>,
    pub status: HealthStatus,
    pub observed_value: Option<f64>,
    /// Checks in this point.
    pub samples: u32,
}

/// A component's checks over a time range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct HealthHistoryOut {
    pub component: String,
    pub observed_unit: Option<String>,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub points: Vec<HealthPointOut>,
    /// Share of checks that passed or warned, 0–1 (absent with no checks).
    pub uptime: Option<f64>,
}

// ---------------------------------------------------------------------------------------------
// Operations: event consumers

/// An event consumer (render today; e-mail, webhooks, analytics, alerts next) and its backlog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventConsumerOut {
    pub name: String,
    pub event_types: Vec<String>,
    /// Committed events it has not taken yet: new ones plus pending ones.
    pub undelivered: i64,
    /// When the oldest undelivered event was written.
    pub oldest_undelivered_at: Option<DateTime<Utc>>,
    /// Seconds since then (0 when nothing is owed).
    pub lag_seconds: f64,
    /// Failed events being retried, and later events of their subjects waiting behind them.
    pub pending: i64,
    /// Events out of attempts: they wait for an operator's retry.
    pub parked: i64,
    /// Events delivered since the consumer was registered.
    pub delivered: i64,
    /// The instance delivering to it now, if any holds it.
    pub owner: Option<String>,
}

/// An event a consumer has not taken yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PendingEventOut {
    pub event_id: String,
    pub event_type: String,
    pub subject_id: String,
    /// Tries so far (0: waiting behind an earlier event of the same subject).
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Set when it ran out of attempts (or failed permanently).
    pub parked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Retry a consumer's parked events: one (`event_id`) or all.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryParkedIn {
    pub event_id: Option<String>,
}
debug_redacting!(RegisterIn { email, name } secrets { password });
debug_redacting!(LoginIn { email } secrets { password });
debug_redacting!(LoginOut { token_type, expires_at, user } secrets { token });
debug_redacting!(PasswordResetConfirmIn {  } secrets { token, password });
debug_redacting!(RegistrationConfirmIn {  } secrets { token, password });
debug_redacting!(InviteAcceptIn {  } secrets { token });
debug_redacting!(ApiTokenCreatedOut { info } secrets { token });
debug_redacting!(WebhookEndpointCreatedOut { endpoint } secrets { secret });
debug_redacting!(WebhookEndpointIn { client_id, url, event_types, description, rate_limit_per_s } secrets { headers });
debug_redacting!(WebhookEndpointPatch { url, event_types, description, rate_limit_per_s, enabled, disabled_reason } secrets { headers });
debug_redacting!(WebhookSecretOut { generation, previous_secret_until } secrets { secret });
debug_redacting!(ApprovalCreatedOut { approval } secrets { token, url });
debug_redacting!(ApprovalDecisionIn { decision, comment } secrets { token });

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn types_that_carry_secrets_never_print_them() {
        let texts = [
            format!(
                "{:?}",
                LoginIn {
                    email: "a@b.c".into(),
                    password: "hunter2-secret".into()
                }
            ),
            format!(
                "{:?}",
                RegisterIn {
                    email: "a@b.c".into(),
                    password: "hunter2-secret".into(),
                    name: "A".into()
                }
            ),
            format!(
                "{:?}",
                PasswordResetConfirmIn {
                    token: "hunter2-secret".into(),
                    password: "hunter2-secret".into()
                }
            ),
            format!(
                "{:?}",
                ApprovalDecisionIn {
                    token: "hunter2-secret".into(),
                    decision: Decision::Approve,
                    comment: None
                }
            ),
        ];
        for t in texts {
            assert!(!t.contains("hunter2"), "{t}");
            assert!(t.contains("[redacted]"), "{t}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Backups and restore drills

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
#[derive(strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum BackupStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
#[derive(strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum DrillStatus {
    Queued,
    Running,
    Passed,
    Failed,
}

/// One table as a backup holds it: its rows and an order-independent checksum of their contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct TableStatOut {
    pub table: String,
    pub rows: i64,
    pub checksum: String,
}

/// A restore drill: the backup restored into a scratch database and compared with what it
/// recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DrillOut {
    pub id: String,
    pub backup_id: String,
    pub status: DrillStatus,
    /// 0–100 while it runs.
    pub progress: i32,
    /// How long the restore took, download to a queryable database (the RTO it shows), in ms.
    pub restore_ms: Option<i64>,
    /// How old the backup's data was when the drill ran (the RPO it shows), in seconds.
    pub rpo_seconds: Option<i64>,
    pub tables_checked: Option<i32>,
    /// Tables whose rows or checksum differed (empty when it passed).
    pub mismatches: Vec<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BackupOut {
    pub id: String,
    pub status: BackupStatus,
    /// `manual` or `scheduled`.
    pub trigger: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// `sqlite-gzip` (a VACUUM INTO copy, gzipped) or `pg-custom` (pg_dump's custom format).
    pub format: Option<String>,
    pub size_bytes: Option<i64>,
    /// sha256 of the stored file, hex.
    pub sha256: Option<String>,
    pub encrypted: bool,
    /// 0–100 while it runs.
    pub progress: i32,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub tables: Vec<TableStatOut>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The latest restore drill of this backup.
    pub latest_drill: Option<DrillOut>,
}

/// Where `/api/ops/db/slow-queries` read its numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum SlowQuerySource {
    /// PostgreSQL's `pg_stat_statements` extension: every statement the server's database role
    /// ran in this database, since the statistics were last reset, on every instance.
    PgStatStatements,
    /// This server process's own log of statements slower than `AIRWAVE_DB_SLOW_STATEMENT_MS`,
    /// since it started.
    SlowLog,
}

/// One statement's timings, slowest (by mean) first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SlowQueryOut {
    /// The SQL, without parameter values (`$1` …); whitespace collapsed, at most 2,000 characters.
    pub query: String,
    pub calls: i64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub max_ms: f64,
    /// Rows returned or affected, over all calls.
    pub rows: i64,
    /// When the slow log last saw it (the slow log only).
    pub last_seen_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SlowQueriesOut {
    pub source: SlowQuerySource,
    /// `AIRWAVE_DB_SLOW_STATEMENT_MS`: what the slow log counts as slow.
    pub threshold_ms: i64,
    /// Why the slow log answers when the database is PostgreSQL (the extension is missing or
    /// cannot be read).
    pub note: Option<String>,
    pub queries: Vec<SlowQueryOut>,
}

// ---------------------------------------------------------------------------------------------
// Outgoing webhooks

/// Where an endpoint's circuit breaker stands: `open` after consecutive failures (deliveries
/// wait, they are not lost; a probe tries again at `circuit_retry_at`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum WebhookCircuit {
    Closed,
    Open,
}

/// A message's state for its endpoint.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum WebhookMessageStatus {
    /// Waiting for (or between) attempts.
    Pending,
    /// Waiting while the endpoint's circuit is open (no attempt is spent).
    Held,
    /// A 2xx came back.
    Delivered,
    /// Out of attempts, refused by the SSRF guard, or its endpoint gone (410) or disabled.
    Failed,
}

/// Why an attempt failed.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum WebhookErrorClass {
    /// The name did not resolve.
    Dns,
    /// The SSRF guard refused the address (private, loopback, metadata…).
    Refused,
    Connect,
    Tls,
    Timeout,
    /// A status other than 2xx.
    Status,
    /// A 3xx (redirects are not followed).
    Redirect,
}

/// `POST /api/webhooks/endpoints` and `POST /api/ops/webhooks/endpoints`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointIn {
    pub client_id: String,
    /// `https://…` (`http://` outside production); it must not resolve to a private address.
    pub url: String,
    /// Event types it takes (see `GET /api/webhooks/event-types`); empty: every type.
    pub event_types: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Headers sent with every delivery (up to 10; not `webhook-*`, `content-*`, `host`,
    /// `user-agent`, `connection`, `transfer-encoding`, `te` or `upgrade`).
    /// Their values are never shown again.
    #[serde(default)]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// Most deliveries a second to this endpoint (per worker process); none: unlimited.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub rate_limit_per_s: Option<i32>,
}

/// `PATCH …/endpoints/{id}`: the fields given change.
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointPatch {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// 0 removes the limit.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000)]
    pub rate_limit_per_s: Option<i32>,
    /// `false` disables it (with `disabled_reason`); `true` enables it and closes its circuit.
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub disabled_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WebhookEndpointOut {
    pub id: String,
    pub client_id: String,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    /// The custom headers' names (their values are not shown).
    pub header_names: Vec<String>,
    pub rate_limit_per_s: Option<i32>,
    pub enabled: bool,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    pub circuit: WebhookCircuit,
    pub circuit_retry_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    pub failing_since: Option<DateTime<Utc>>,
    /// 0–100 from the last 50 attempts' success rate and latency; none before any attempt.
    pub health: Option<i32>,
    pub success_rate: Option<f64>,
    pub p50_latency_ms: Option<i64>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// The secret's generation (1, then one more per rotation).
    pub secret_generation: i64,
    /// Until then deliveries are signed with the previous secret too.
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// Messages waiting (pending or held) and failed.
    pub pending: i64,
    pub failed: i64,
    pub created_at: DateTime<Utc>,
}

/// The one answer that carries a new endpoint's secret. It is never shown again.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WebhookEndpointCreatedOut {
    #[serde(flatten)]
    #[cfg_attr(test, ts(flatten))]
    pub endpoint: WebhookEndpointOut,
    /// `whsec_` + base64: verify deliveries with it (any Standard Webhooks library).
    pub secret: String,
}

/// `POST …/endpoints/{id}/secret/rotate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct WebhookRotateIn {
    /// Rotate again while the previous rotation's overlap runs (the oldest secret ends now).
    #[serde(default)]
    pub force: bool,
}

/// A rotation's answer: the new secret, shown once.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WebhookSecretOut {
    pub secret: String,
    pub generation: i64,
    /// Deliveries carry the previous secret's signature too until then.
    pub previous_secret_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WebhookMessageOut {
    /// The `webhook-id` header: the same on every attempt and replay.
    pub id: String,
    pub endpoint_id: String,
    pub event_type: String,
    pub event_id: Option<String>,
    pub status: WebhookMessageStatus,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// One attempt: what was sent and what came back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WebhookAttemptOut {
    pub id: String,
    pub message_id: String,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub status_code: Option<i32>,
    pub delivered: bool,
    pub error_class: Option<WebhookErrorClass>,
    pub error: Option<String>,
    /// The request's headers (custom headers' values redacted).
    pub request_headers: std::collections::BTreeMap<String, String>,
    pub response_headers: std::collections::BTreeMap<String, String>,
    /// The response's body, truncated to 4 KiB.
    pub response_body: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WebhookMessageDetailOut {
    #[serde(flatten)]
    #[cfg_attr(test, ts(flatten))]
    pub message: WebhookMessageOut,
    /// The exact body sent (`{type, timestamp, data}`).
    pub body: String,
    pub attempt_log: Vec<WebhookAttemptOut>,
}

/// `POST …/endpoints/{id}/recover`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct WebhookRecoverIn {
    /// Failed messages created at or after this time are delivered again.
    pub since: DateTime<Utc>,
    /// Only count them.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum WebhookRecoveryStatus {
    Running,
    Done,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WebhookRecoveryOut {
    pub id: String,
    pub endpoint_id: String,
    pub since: DateTime<Utc>,
    pub status: WebhookRecoveryStatus,
    /// Failed messages found when it started.
    pub total: i32,
    /// Of them, sent back to delivery so far.
    pub done: i32,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A recovery's answer: the count (a dry run), or the recovery started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WebhookRecoverOut {
    pub count: i64,
    pub recovery: Option<WebhookRecoveryOut>,
}

/// One type of the event catalogue, with the JSON Schema of its payload's `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WebhookEventTypeOut {
    pub name: String,
    pub description: String,
    #[schema(value_type = Object)]
    pub schema: Value,
}

/// `webhook.changed`: a delivery finished an attempt, or an endpoint's state changed (its
/// circuit opened or closed, it was disabled, rotated or changed). Operators' alert rules watch
/// `kind = circuit_opened` and `disabled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WebhookChangedEvent {
    pub endpoint_id: String,
    pub client_id: String,
    /// `delivered`, `failed`, `retrying`, `held`, `replayed`, `circuit_opened`, `circuit_closed`,
    /// `disabled`, `enabled`, `rotated`, `created`, `updated`, `deleted`, `recovery`.
    pub kind: String,
    pub message_id: Option<String>,
    pub detail: Option<String>,
    pub time: DateTime<Utc>,
}
