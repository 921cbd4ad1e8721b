//! The Webhooks view's commands: endpoints with their health and circuit, an endpoint's
//! messages, a message's attempts; replay, recover since T (a dry-run count first), rotate the
//! secret (shown once), revoke the previous one, send a test event, enable or disable. Every
//! argument is checked by `airwave_console_core::webhooks` before a request is made; the server
//! checks roles and audits every change.

use crate::commands::client_for;
use crate::Console;
use airwave_api::{
    Page, WebhookAttemptOut, WebhookEndpointOut, WebhookEndpointPatch, WebhookMessageDetailOut,
    WebhookMessageOut, WebhookRecoverIn, WebhookRecoverOut, WebhookRecoveryOut, WebhookSecretOut,
};
use airwave_console_core::webhooks as check;
use airwave_console_core::Error;
use tauri::State;

type Result<T> = std::result::Result<T, Error>;

/// Every endpoint (operators see every client's), newest first.
#[tauri::command]
pub async fn webhook_endpoints(
    console: State<'_, Console>,
    id: String,
    cursor: Option<String>,
) -> Result<Page<WebhookEndpointOut>> {
    let mut q = vec![("limit", "100".to_owned())];
    if let Some(c) = cursor.as_deref().filter(|c| !c.is_empty()) {
        q.push(("cursor", check::endpoint_id(c)?.to_owned()));
    }
    let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let client = client_for(&console, &id).await?;
    Ok(client.list_webhook_endpoints(&pairs).await?)
}

#[tauri::command]
pub async fn webhook_endpoint(
    console: State<'_, Console>,
    id: String,
    endpoint_id: String,
) -> Result<WebhookEndpointOut> {
    let e = check::endpoint_id(&endpoint_id)?;
    let client = client_for(&console, &id).await?;
    Ok(client.get_webhook_endpoint(e).await?)
}

#[tauri::command]
pub async fn webhook_messages(
    console: State<'_, Console>,
    id: String,
    endpoint_id: String,
    status: Option<String>,
    cursor: Option<String>,
) -> Result<Page<WebhookMessageOut>> {
    let e = check::endpoint_id(&endpoint_id)?;
    let q = check::message_query(status.as_deref(), cursor.as_deref())?;
    let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let client = client_for(&console, &id).await?;
    Ok(client.list_webhook_messages(e, &pairs).await?)
}

#[tauri::command]
pub async fn webhook_message(
    console: State<'_, Console>,
    id: String,
    message_id: String,
) -> Result<WebhookMessageDetailOut> {
    let m = check::message_id(&message_id)?;
    let client = client_for(&console, &id).await?;
    Ok(client.get_webhook_message(m).await?)
}

/// Delivers a message again (the same `webhook-id`, a fresh round of attempts).
#[tauri::command]
pub async fn replay_webhook(
    console: State<'_, Console>,
    id: String,
    message_id: String,
) -> Result<WebhookMessageOut> {
    let m = check::message_id(&message_id)?;
    let client = client_for(&console, &id).await?;
    Ok(client.replay_webhook_message(m).await?)
}

/// Counts (`dry_run`) or recovers the endpoint's failed messages of the last `hours` hours.
#[tauri::command]
pub async fn recover_webhooks(
    console: State<'_, Console>,
    id: String,
    endpoint_id: String,
    hours: u32,
    dry_run: bool,
) -> Result<WebhookRecoverOut> {
    let e = check::endpoint_id(&endpoint_id)?;
    let since = check::recover_since(hours, chrono::Utc::now())?;
    let client = client_for(&console, &id).await?;
    Ok(client
        .recover_webhook_endpoint(e, &WebhookRecoverIn { since, dry_run })
        .await?)
}

#[tauri::command]
pub async fn webhook_recovery(
    console: State<'_, Console>,
    id: String,
    recovery_id: String,
) -> Result<WebhookRecoveryOut> {
    let r = check::recovery_id(&recovery_id)?;
    let client = client_for(&console, &id).await?;
    Ok(client.get_webhook_recovery(r).await?)
}

/// A new secret: returned to the view to be shown once (never stored by the console).
#[tauri::command]
pub async fn rotate_webhook_secret(
    console: State<'_, Console>,
    id: String,
    endpoint_id: String,
    force: bool,
) -> Result<WebhookSecretOut> {
    let e = check::endpoint_id(&endpoint_id)?;
    let client = client_for(&console, &id).await?;
    Ok(client.rotate_webhook_secret(e, force).await?)
}

#[tauri::command]
pub async fn revoke_previous_webhook_secret(
    console: State<'_, Console>,
    id: String,
    endpoint_id: String,
) -> Result<WebhookEndpointOut> {
    let e = check::endpoint_id(&endpoint_id)?;
    let client = client_for(&console, &id).await?;
    Ok(client.revoke_previous_webhook_secret(e).await?)
}

/// Sends a `webhook.test` event now; answers its attempt.
#[tauri::command]
pub async fn test_webhook(
    console: State<'_, Console>,
    id: String,
    endpoint_id: String,
) -> Result<WebhookAttemptOut> {
    let e = check::endpoint_id(&endpoint_id)?;
    let client = client_for(&console, &id).await?;
    Ok(client.test_webhook_endpoint(e).await?)
}

/// Enables an endpoint (closing its circuit), or disables it with a reason.
#[tauri::command]
pub async fn set_webhook_enabled(
    console: State<'_, Console>,
    id: String,
    endpoint_id: String,
    enabled: bool,
    reason: Option<String>,
) -> Result<WebhookEndpointOut> {
    let e = check::endpoint_id(&endpoint_id)?;
    let disabled_reason = match (enabled, reason.as_deref()) {
        (false, Some(r)) => Some(check::reason(r)?.to_owned()),
        (false, None) => {
            return Err(Error::new(
                airwave_console_core::ErrorKind::Invalid,
                "say why the endpoint is disabled",
            ))
        }
        (true, _) => None,
    };
    let client = client_for(&console, &id).await?;
    let patch = WebhookEndpointPatch {
        enabled: Some(enabled),
        disabled_reason,
        ..Default::default()
    };
    Ok(client.update_webhook_endpoint(e, &patch).await?)
}
