//! The Emails view's commands: the e-mail log with each message's parts and attempts, resending
//! a message, the suppression list and the templates' previews. Every argument is checked by
//! `airwave_console_core::emails` before a request is made; the server checks roles.

use crate::commands::client_for;
use crate::Console;
use airwave_api::{
    EmailDetailOut, EmailOut, EmailResendIn, EmailTemplateOut, Page, SuppressionIn, SuppressionOut,
};
use airwave_console_core::emails::{self, EmailSearch};
use airwave_console_core::{Error, ErrorKind};
use tauri::State;

type Result<T> = std::result::Result<T, Error>;

fn pairs<'a>(q: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    q.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A page of the e-mail log, newest first.
#[tauri::command]
pub async fn emails(
    console: State<'_, Console>,
    id: String,
    search: EmailSearch,
) -> Result<Page<EmailOut>> {
    let q = search.query(chrono::Utc::now())?;
    let client = client_for(&console, &id).await?;
    Ok(client.list_emails(&pairs(&q)).await?)
}

/// One message: its parts (links' tokens redacted by the server), attempts and suppression.
#[tauri::command]
pub async fn email(
    console: State<'_, Console>,
    id: String,
    email_id: String,
) -> Result<EmailDetailOut> {
    let email_id = emails::message_id(&email_id)?;
    let client = client_for(&console, &id).await?;
    Ok(client.get_email(email_id).await?)
}

/// Sends a message again (a new message linked to it). To a suppressed address only with
/// `override_reason` (operators and admins; audited by the server).
#[tauri::command]
pub async fn resend_email(
    console: State<'_, Console>,
    id: String,
    email_id: String,
    override_reason: Option<String>,
) -> Result<EmailOut> {
    let email_id = emails::message_id(&email_id)?;
    let override_suppression_reason = match override_reason.as_deref() {
        Some(r) => Some(emails::reason(r)?.to_owned()),
        None => None,
    };
    let client = client_for(&console, &id).await?;
    let body = EmailResendIn {
        override_suppression_reason,
    };
    Ok(client.resend_email(email_id, &body).await?)
}

#[tauri::command]
pub async fn email_templates(
    console: State<'_, Console>,
    id: String,
) -> Result<Vec<EmailTemplateOut>> {
    let client = client_for(&console, &id).await?;
    Ok(client.email_templates().await?)
}

/// A template rendered with sample data, as `html` or `text`.
#[tauri::command]
pub async fn email_preview(
    console: State<'_, Console>,
    id: String,
    name: String,
    format: String,
) -> Result<String> {
    let name = emails::template_name(&name)?;
    if format != "html" && format != "text" {
        return Err(Error::new(ErrorKind::Invalid, "a preview is html or text"));
    }
    let client = client_for(&console, &id).await?;
    Ok(client.preview_template(name, &format).await?)
}

#[tauri::command]
pub async fn suppressions(
    console: State<'_, Console>,
    id: String,
    address: Option<String>,
    cursor: Option<String>,
) -> Result<Page<SuppressionOut>> {
    let q = emails::suppression_query(address.as_deref(), cursor.as_deref())?;
    let client = client_for(&console, &id).await?;
    Ok(client.list_suppressions(&pairs(&q)).await?)
}

/// Puts an address on the suppression list, with why.
#[tauri::command]
pub async fn add_suppression(
    console: State<'_, Console>,
    id: String,
    address: String,
    note: String,
) -> Result<SuppressionOut> {
    let body = SuppressionIn {
        address: emails::address(&address)?.to_owned(),
        note: emails::reason(&note)?.to_owned(),
    };
    let client = client_for(&console, &id).await?;
    Ok(client.add_suppression(&body).await?)
}

/// Takes an address off the suppression list (operators and admins).
#[tauri::command]
pub async fn remove_suppression(
    console: State<'_, Console>,
    id: String,
    address: String,
) -> Result<()> {
    let address = emails::address(&address)?;
    let client = client_for(&console, &id).await?;
    Ok(client.remove_suppression(address).await?)
}
