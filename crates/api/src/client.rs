//! A typed HTTP client for the API. Every method maps a problem+json answer to
//! [`ClientError::Api`], so callers can match on the stable `code`.

use crate::types::*;
use reqwest::{Method, StatusCode};
use serde::{de::DeserializeOwned, Serialize};
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{} {}: {}", .0.status, .0.code, .0.detail)]
    Api(Problem),
    #[error("unexpected answer {status}: {body}")]
    Unexpected { status: StatusCode, body: String },
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("bad URL: {0}")]
    Url(#[from] url::ParseError),
}

impl ClientError {
    /// The problem's code, when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api(p) => Some(&p.code),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api(p) => Some(p.status),
            ClientError::Unexpected { status, .. } => Some(status.as_u16()),
            ClientError::Http(e) => e.status().map(|s| s.as_u16()),
            ClientError::Url(_) => None,
        }
    }
}

/// Most of an unexpected answer's body kept in an error (the rest is counted, not kept).
pub const ERROR_BODY_MAX: usize = 2048;

/// The start of a body, for an error message: at most [`ERROR_BODY_MAX`] bytes, cut at a
/// character boundary, with how much was left out.
pub fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= ERROR_BODY_MAX {
        return text.into_owned();
    }
    let mut end = ERROR_BODY_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], bytes.len())
}

#[derive(Debug, Clone)]
pub struct ApiClient {
    base: Url,
    http: reqwest::Client,
    token: Option<String>,
}

/// How long connecting may take: a server that cannot be reached is an error in bounded time.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a whole request may take: a server that accepts and never answers is an error too,
/// not a console that hangs.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl ApiClient {
    pub fn new(base: Url) -> Self {
        Self::with_timeouts(base, CONNECT_TIMEOUT, REQUEST_TIMEOUT)
    }

    /// A client with other bounds than [`CONNECT_TIMEOUT`] and [`REQUEST_TIMEOUT`].
    pub fn with_timeouts(
        base: Url,
        connect: std::time::Duration,
        request: std::time::Duration,
    ) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(request)
            .build()
            .unwrap_or_default();
        Self {
            base,
            http,
            token: None,
        }
    }

    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Self {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The bearer token this client sends, if any (for requests it has no method for).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        self.call_at(method, self.base.join(path)?, body).await
    }

    /// A JSON answer from `url`.
    async fn call_at<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.send(method, url, body).await?;
        let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(body).map_err(|e| ClientError::Unexpected {
            status,
            body: format!("{e}: {}", excerpt(&bytes)),
        })
    }

    /// Sends a request; a success's status and body, or the problem it answered with.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let mut req = self.http.request(method, url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?.to_vec();
        if status.is_success() {
            return Ok((status, bytes));
        }
        match serde_json::from_slice::<Problem>(&bytes) {
            Ok(p) => Err(ClientError::Api(p)),
            Err(_) => Err(ClientError::Unexpected {
                status,
                body: excerpt(&bytes),
            }),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn health(&self) -> Result<HealthOut, ClientError> {
        self.get("/api/health").await
    }

    /// Asks for an account; the account exists once the link mailed to the address is followed
    /// ([`Self::confirm_registration`]). The answer is the same whether or not the address has one.
    pub async fn register(&self, body: &RegisterIn) -> Result<(), ClientError> {
        self.post("/api/auth/register", body).await
    }

    /// Follows the confirmation link, with the password chosen when asking.
    pub async fn confirm_registration(
        &self,
        token: &str,
        password: &str,
    ) -> Result<UserOut, ClientError> {
        let body = RegistrationConfirmIn {
            token: token.into(),
            password: password.into(),
        };
        self.post("/api/auth/register/confirm", &body).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<LoginOut, ClientError> {
        self.post(
            "/api/auth/login",
            &LoginIn {
                email: email.into(),
                password: password.into(),
            },
        )
        .await
    }

    pub async fn logout(&self) -> Result<(), ClientError> {
        self.call(Method::POST, "/api/auth/logout", None::<&()>)
            .await
    }

    pub async fn me(&self) -> Result<UserOut, ClientError> {
        self.get("/api/auth/me").await
    }

    pub async fn request_password_reset(&self, email: &str) -> Result<(), ClientError> {
        self.post(
            "/api/auth/password-reset",
            &PasswordResetIn {
                email: email.into(),
            },
        )
        .await
    }

    pub async fn confirm_password_reset(
        &self,
        token: &str,
        password: &str,
    ) -> Result<(), ClientError> {
        let body = PasswordResetConfirmIn {
            token: token.into(),
            password: password.into(),
        };
        self.post("/api/auth/password-reset/confirm", &body).await
    }

    pub async fn create_token(&self, body: &ApiTokenIn) -> Result<ApiTokenCreatedOut, ClientError> {
        self.post("/api/tokens", body).await
    }

    pub async fn list_tokens(&self) -> Result<Vec<ApiTokenOut>, ClientError> {
        self.get("/api/tokens").await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &format!("/api/tokens/{id}"), None::<&()>)
            .await
    }

    pub async fn set_user_role(&self, user_id: &str, role: Role) -> Result<UserOut, ClientError> {
        self.call(
            Method::PATCH,
            &format!("/api/admin/users/{user_id}"),
            Some(&UserPatch {
                role: Some(role),
                ..UserPatch::default()
            }),
        )
        .await
    }

    /// Disables (or enables) a user; disabling ends every credential of theirs at once.
    pub async fn set_user_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        reason: Option<&str>,
    ) -> Result<UserOut, ClientError> {
        self.call(
            Method::PATCH,
            &format!("/api/admin/users/{user_id}"),
            Some(&UserPatch {
                disabled: Some(disabled),
                reason: reason.map(str::to_owned),
                ..UserPatch::default()
            }),
        )
        .await
    }

    pub async fn list_users(&self) -> Result<Page<UserOut>, ClientError> {
        self.get("/api/admin/users").await
    }

    pub async fn create_client(&self, name: &str) -> Result<ClientOut, ClientError> {
        self.post("/api/clients", &ClientIn { name: name.into() })
            .await
    }

    pub async fn list_clients(&self) -> Result<Page<ClientOut>, ClientError> {
        self.get("/api/clients").await
    }

    pub async fn get_client(&self, id: &str) -> Result<ClientOut, ClientError> {
        self.get(&format!("/api/clients/{id}")).await
    }

    pub async fn list_members(&self, client_id: &str) -> Result<Vec<MemberOut>, ClientError> {
        self.get(&format!("/api/clients/{client_id}/members")).await
    }

    /// Invites an e-mail address to a client; see [`Self::accept_invite`].
    pub async fn invite_member(
        &self,
        client_id: &str,
        email: &str,
    ) -> Result<InviteOut, ClientError> {
        self.post(
            &format!("/api/clients/{client_id}/members"),
            &MemberIn {
                email: email.into(),
            },
        )
        .await
    }

    /// Accepts an invitation sent to the caller's own address; the caller becomes a member.
    pub async fn accept_invite(&self, token: &str) -> Result<MemberOut, ClientError> {
        let body = InviteAcceptIn {
            token: token.into(),
        };
        self.post("/api/invites/accept", &body).await
    }

    /// A client's invitations that are neither accepted, revoked nor expired.
    pub async fn list_invites(&self, client_id: &str) -> Result<Vec<InviteOut>, ClientError> {
        self.get(&format!("/api/clients/{client_id}/invites")).await
    }

    pub async fn revoke_invite(&self, client_id: &str, invite_id: &str) -> Result<(), ClientError> {
        let path = format!("/api/clients/{client_id}/invites/{invite_id}");
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    pub async fn create_asset(&self, body: &AssetIn) -> Result<AssetOut, ClientError> {
        self.post("/api/assets", body).await
    }

    /// Uploads an asset's file in one request (`content_type` is the file's type).
    pub async fn upload_asset(
        &self,
        id: &str,
        content_type: &str,
        filename: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Result<AssetOut, ClientError> {
        let mut url = self.base.join(&format!("/api/assets/{id}/upload"))?;
        if let Some(f) = filename {
            url.query_pairs_mut().append_pair("filename", f);
        }
        let mut req = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::Unexpected {
                status,
                body: format!("{e}: {}", excerpt(&bytes)),
            });
        }
        Err(match serde_json::from_slice::<Problem>(&bytes) {
            Ok(p) => ClientError::Api(p),
            Err(_) => ClientError::Unexpected {
                status,
                body: excerpt(&bytes),
            },
        })
    }

    /// A signed, expiring link to an asset's file.
    pub async fn asset_download_url(&self, id: &str) -> Result<DownloadUrlOut, ClientError> {
        self.get(&format!("/api/assets/{id}/download-url")).await
    }

    /// Queues an export of a campaign's approved renders.
    pub async fn export_campaign(&self, campaign_id: &str) -> Result<ExportOut, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/campaigns/{campaign_id}/exports"),
            None::<&()>,
        )
        .await
    }

    /// A campaign's newest exports (without links).
    pub async fn list_exports(&self, campaign_id: &str) -> Result<Vec<ExportOut>, ClientError> {
        self.get(&format!("/api/campaigns/{campaign_id}/exports"))
            .await
    }

    /// An export's status, with a signed download link once it is ready.
    pub async fn get_export(
        &self,
        campaign_id: &str,
        export_id: &str,
    ) -> Result<ExportOut, ClientError> {
        self.get(&format!("/api/campaigns/{campaign_id}/exports/{export_id}"))
            .await
    }

    /// Backups, newest first, with their latest drills.
    pub async fn list_backups(&self) -> Result<Vec<BackupOut>, ClientError> {
        self.get("/api/ops/backups").await
    }

    /// Queues a backup now.
    pub async fn run_backup(&self) -> Result<BackupOut, ClientError> {
        self.call(Method::POST, "/api/ops/backups", None::<&()>)
            .await
    }

    pub async fn get_backup(&self, id: &str) -> Result<BackupOut, ClientError> {
        self.get(&format!("/api/ops/backups/{id}")).await
    }

    /// Queues a restore drill of a backup.
    pub async fn verify_backup(&self, id: &str) -> Result<DrillOut, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/ops/backups/{id}/verify"),
            None::<&()>,
        )
        .await
    }

    pub async fn get_drill(&self, id: &str) -> Result<DrillOut, ClientError> {
        self.get(&format!("/api/ops/drills/{id}")).await
    }

    /// The slowest statements: `pg_stat_statements` on PostgreSQL when installed, else the
    /// server's own slow-statement log; `limit` of them (1–200), slowest first.
    pub async fn slow_queries(&self, limit: u32) -> Result<SlowQueriesOut, ClientError> {
        self.get(&format!("/api/ops/db/slow-queries?limit={limit}"))
            .await
    }

    /// A resumable upload's progress.
    pub async fn get_upload(&self, id: &str) -> Result<UploadOut, ClientError> {
        self.get(&format!("/api/uploads/{id}")).await
    }

    pub async fn get_asset(&self, id: &str) -> Result<AssetOut, ClientError> {
        self.get(&format!("/api/assets/{id}")).await
    }

    pub async fn update_asset(
        &self,
        id: &str,
        patch: &AssetPatch,
    ) -> Result<AssetOut, ClientError> {
        self.call(Method::PATCH, &format!("/api/assets/{id}"), Some(patch))
            .await
    }

    pub async fn delete_asset(&self, id: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &format!("/api/assets/{id}"), None::<&()>)
            .await
    }

    /// `query` is the raw query string, e.g. `client_id=cli_…&q=summer`.
    pub async fn list_assets(&self, query: &str) -> Result<Page<AssetOut>, ClientError> {
        self.get(&format!("/api/assets?{query}")).await
    }

    pub async fn create_campaign(&self, body: &CampaignIn) -> Result<CampaignOut, ClientError> {
        self.post("/api/campaigns", body).await
    }

    pub async fn create_matrix(
        &self,
        campaign_id: &str,
        body: &MatrixIn,
    ) -> Result<MatrixOut, ClientError> {
        self.post(&format!("/api/campaigns/{campaign_id}/matrices"), body)
            .await
    }

    pub async fn create_execution(
        &self,
        matrix_id: &str,
        body: &ExecutionIn,
    ) -> Result<ExecutionOut, ClientError> {
        self.post(&format!("/api/matrices/{matrix_id}/executions"), body)
            .await
    }

    pub async fn get_execution(&self, id: &str) -> Result<ExecutionOut, ClientError> {
        self.get(&format!("/api/executions/{id}")).await
    }

    pub async fn request_approval(
        &self,
        execution_id: &str,
        body: &ApprovalIn,
    ) -> Result<ApprovalCreatedOut, ClientError> {
        self.post(&format!("/api/executions/{execution_id}/approvals"), body)
            .await
    }

    pub async fn get_approval(&self, id: &str) -> Result<ApprovalOut, ClientError> {
        self.get(&format!("/api/approvals/{id}")).await
    }

    /// What an approval link shows; needs no account, only the link's token.
    pub async fn view_approval(&self, token: &str) -> Result<ApprovalViewOut, ClientError> {
        let mut url = self.base.join("/api/approvals/decide")?;
        url.query_pairs_mut().append_pair("token", token);
        self.get(&format!(
            "{}?{}",
            url.path(),
            url.query().unwrap_or_default()
        ))
        .await
    }

    pub async fn list_queues(&self) -> Result<Vec<QueueOut>, ClientError> {
        self.get("/api/ops/queues").await
    }

    /// `query` e.g. `state=dead&fingerprint=…`.
    pub async fn list_jobs(&self, queue: &str, query: &str) -> Result<Page<JobOut>, ClientError> {
        self.get(&format!("/api/ops/queues/{queue}/jobs?{query}"))
            .await
    }

    pub async fn get_job(&self, id: &str) -> Result<JobDetailOut, ClientError> {
        self.get(&format!("/api/ops/jobs/{id}")).await
    }

    /// `action` is `retry`, `promote` or `cancel`.
    pub async fn job_action(&self, id: &str, action: &str) -> Result<JobOut, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/ops/jobs/{id}/{action}"),
            None::<&()>,
        )
        .await
    }

    pub async fn discard_job(&self, id: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, &format!("/api/ops/jobs/{id}"), None::<&()>)
            .await
    }

    pub async fn retry_jobs(
        &self,
        queue: &str,
        body: &crate::RetryJobsIn,
    ) -> Result<crate::BulkOut, ClientError> {
        self.post(&format!("/api/ops/queues/{queue}/jobs/retry"), body)
            .await
    }

    pub async fn queue_metrics(
        &self,
        queue: &str,
        query: &str,
    ) -> Result<crate::QueueMetricsOut, ClientError> {
        self.get(&format!("/api/ops/queues/{queue}/metrics?{query}"))
            .await
    }

    pub async fn health_history(
        &self,
        query: &str,
    ) -> Result<crate::HealthHistoryOut, ClientError> {
        self.get(&format!("/api/ops/health/history?{query}")).await
    }

    pub async fn dead_groups(&self, queue: &str) -> Result<Vec<DeadGroupOut>, ClientError> {
        self.get(&format!("/api/ops/queues/{queue}/dead")).await
    }

    pub async fn retry_dead(
        &self,
        queue: &str,
        body: &RetryDeadIn,
    ) -> Result<crate::BulkOut, ClientError> {
        self.post(&format!("/api/ops/queues/{queue}/dead/retry"), body)
            .await
    }

    /// `action` is `pause` or `resume`.
    pub async fn queue_action(&self, queue: &str, action: &str) -> Result<QueueOut, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/ops/queues/{queue}/{action}"),
            None::<&()>,
        )
        .await
    }

    pub async fn purge_completed(
        &self,
        queue: &str,
        body: &PurgeIn,
    ) -> Result<crate::BulkOut, ClientError> {
        self.post(&format!("/api/ops/queues/{queue}/purge"), body)
            .await
    }

    pub async fn decide_approval(
        &self,
        body: &ApprovalDecisionIn,
    ) -> Result<ApprovalOut, ClientError> {
        self.post("/api/approvals/decide", body).await
    }

    /// A URL on the server with `segments` as path segments (each percent-encoded) and `query`.
    fn url_of(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, url::ParseError> {
        // Like every other method here: paths are from the server's root.
        let mut url = self.base.clone();
        url.set_path("/");
        url.set_query(None);
        url.path_segments_mut()
            .map_err(|()| url::ParseError::RelativeUrlWithCannotBeABaseBase)?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// The e-mail log, newest first; `query` pairs are `GET /api/ops/emails`'s filters.
    pub async fn list_emails(&self, query: &[(&str, &str)]) -> Result<Page<EmailOut>, ClientError> {
        let url = self.url_of(&["api", "ops", "emails"], query)?;
        self.call_at(Method::GET, url, None::<&()>).await
    }

    pub async fn get_email(&self, id: &str) -> Result<EmailDetailOut, ClientError> {
        let url = self.url_of(&["api", "ops", "emails", id], &[])?;
        self.call_at(Method::GET, url, None::<&()>).await
    }

    pub async fn resend_email(
        &self,
        id: &str,
        body: &EmailResendIn,
    ) -> Result<EmailOut, ClientError> {
        let url = self.url_of(&["api", "ops", "emails", id, "resend"], &[])?;
        self.call_at(Method::POST, url, Some(body)).await
    }

    pub async fn email_templates(&self) -> Result<Vec<EmailTemplateOut>, ClientError> {
        self.get("/api/ops/emails/templates").await
    }

    /// A template rendered with sample data: `format` is `html` or `text`.
    pub async fn preview_template(&self, name: &str, format: &str) -> Result<String, ClientError> {
        let url = self.url_of(
            &["api", "ops", "emails", "templates", name, "preview"],
            &[("format", format)],
        )?;
        let (_, bytes) = self.send(Method::GET, url, None::<&()>).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The suppression list; `query` pairs are `address`, `limit` and `cursor`.
    pub async fn list_suppressions(
        &self,
        query: &[(&str, &str)],
    ) -> Result<Page<SuppressionOut>, ClientError> {
        let url = self.url_of(&["api", "ops", "emails", "suppressions"], query)?;
        self.call_at(Method::GET, url, None::<&()>).await
    }

    pub async fn add_suppression(
        &self,
        body: &SuppressionIn,
    ) -> Result<SuppressionOut, ClientError> {
        self.post("/api/ops/emails/suppressions", body).await
    }

    pub async fn remove_suppression(&self, address: &str) -> Result<(), ClientError> {
        let url = self.url_of(&["api", "ops", "emails", "suppressions", address], &[])?;
        self.call_at(Method::DELETE, url, None::<&()>).await
    }

    // Outgoing webhooks (the operators' tree, `/api/ops/webhooks`).

    pub async fn webhook_event_types(&self) -> Result<Vec<WebhookEventTypeOut>, ClientError> {
        self.get("/api/webhooks/event-types").await
    }

    /// Endpoints, newest first; `query` pairs are `client_id`, `limit` and `cursor`.
    pub async fn list_webhook_endpoints(
        &self,
        query: &[(&str, &str)],
    ) -> Result<Page<WebhookEndpointOut>, ClientError> {
        let url = self.url_of(&["api", "ops", "webhooks", "endpoints"], query)?;
        self.call_at(Method::GET, url, None::<&()>).await
    }

    pub async fn create_webhook_endpoint(
        &self,
        body: &WebhookEndpointIn,
    ) -> Result<WebhookEndpointCreatedOut, ClientError> {
        self.post("/api/ops/webhooks/endpoints", body).await
    }

    pub async fn get_webhook_endpoint(&self, id: &str) -> Result<WebhookEndpointOut, ClientError> {
        let url = self.url_of(&["api", "ops", "webhooks", "endpoints", id], &[])?;
        self.call_at(Method::GET, url, None::<&()>).await
    }

    pub async fn update_webhook_endpoint(
        &self,
        id: &str,
        body: &WebhookEndpointPatch,
    ) -> Result<WebhookEndpointOut, ClientError> {
        let url = self.url_of(&["api", "ops", "webhooks", "endpoints", id], &[])?;
        self.call_at(Method::PATCH, url, Some(body)).await
    }

    pub async fn delete_webhook_endpoint(&self, id: &str) -> Result<(), ClientError> {
        let url = self.url_of(&["api", "ops", "webhooks", "endpoints", id], &[])?;
        self.call_at(Method::DELETE, url, None::<&()>).await
    }

    pub async fn rotate_webhook_secret(
        &self,
        id: &str,
        force: bool,
    ) -> Result<WebhookSecretOut, ClientError> {
        let url = self.url_of(
            &[
                "api",
                "ops",
                "webhooks",
                "endpoints",
                id,
                "secret",
                "rotate",
            ],
            &[],
        )?;
        self.call_at(Method::POST, url, Some(&WebhookRotateIn { force }))
            .await
    }

    pub async fn revoke_previous_webhook_secret(
        &self,
        id: &str,
    ) -> Result<WebhookEndpointOut, ClientError> {
        let url = self.url_of(
            &[
                "api",
                "ops",
                "webhooks",
                "endpoints",
                id,
                "secret",
                "revoke-previous",
            ],
            &[],
        )?;
        self.call_at(Method::POST, url, Some(&serde_json::json!({})))
            .await
    }

    pub async fn test_webhook_endpoint(&self, id: &str) -> Result<WebhookAttemptOut, ClientError> {
        let url = self.url_of(&["api", "ops", "webhooks", "endpoints", id, "test"], &[])?;
        self.call_at(Method::POST, url, Some(&serde_json::json!({})))
            .await
    }

    /// An endpoint's messages, newest first; `query` pairs are `status`, `limit` and `cursor`.
    pub async fn list_webhook_messages(
        &self,
        endpoint: &str,
        query: &[(&str, &str)],
    ) -> Result<Page<WebhookMessageOut>, ClientError> {
        let url = self.url_of(
            &["api", "ops", "webhooks", "endpoints", endpoint, "messages"],
            query,
        )?;
        self.call_at(Method::GET, url, None::<&()>).await
    }

    pub async fn get_webhook_message(
        &self,
        id: &str,
    ) -> Result<WebhookMessageDetailOut, ClientError> {
        let url = self.url_of(&["api", "ops", "webhooks", "messages", id], &[])?;
        self.call_at(Method::GET, url, None::<&()>).await
    }

    pub async fn replay_webhook_message(&self, id: &str) -> Result<WebhookMessageOut, ClientError> {
        let url = self.url_of(&["api", "ops", "webhooks", "messages", id, "replay"], &[])?;
        self.call_at(Method::POST, url, Some(&serde_json::json!({})))
            .await
    }

    pub async fn recover_webhook_endpoint(
        &self,
        id: &str,
        body: &WebhookRecoverIn,
    ) -> Result<WebhookRecoverOut, ClientError> {
        let url = self.url_of(&["api", "ops", "webhooks", "endpoints", id, "recover"], &[])?;
        self.call_at(Method::POST, url, Some(body)).await
    }

    pub async fn get_webhook_recovery(&self, id: &str) -> Result<WebhookRecoveryOut, ClientError> {
        let url = self.url_of(&["api", "ops", "webhooks", "recoveries", id], &[])?;
        self.call_at(Method::GET, url, None::<&()>).await
    }
}
