//! The e-mail templates: each renders a subject, responsive HTML and a plain-text part from typed
//! data. The HTML is MJML (a layout and one body per template, in `templates/`) compiled once by
//! `mrml` into table-based HTML with inline styles — what Gmail and Outlook render — whose
//! placeholders `minijinja` fills per message, HTML-escaped; the text part is its own template.
//! A placeholder without data is an error (strict undefined), and so is an empty value: never an
//! empty slot in a sent mail. Branding (product name, footer, support link) comes from
//! configuration.

use chrono::{DateTime, Utc};
use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::LazyLock;

/// What every message says about who sends it (from configuration).
#[derive(Debug, Clone, Serialize)]
pub struct Branding {
    pub product: String,
    pub footer: String,
    pub support_url: String,
}

/// A message: its template and that template's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "template", content = "data", rename_all = "snake_case")]
pub enum Message {
    ClientApproval(ClientApproval),
    RenderComplete(RenderComplete),
    Welcome(Welcome),
    PasswordReset(PasswordReset),
    SystemAlert(SystemAlert),
    ConfirmRegistration(ConfirmRegistration),
    AccountExists(AccountExists),
    ClientInvite(ClientInvite),
    WebhookDisabled(WebhookDisabled),
}

/// A member asks their client to approve an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientApproval {
    pub client_name: String,
    pub campaign_name: String,
    pub execution_name: String,
    pub requested_by: String,
    /// The requester's note, bounded and escaped (never markup).
    pub note: Option<String>,
    pub approve_url: String,
    pub reject_url: String,
    pub expires_at: DateTime<Utc>,
}

/// A render finished (to the campaign's owner).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderComplete {
    pub name: String,
    pub campaign_name: String,
    pub execution_name: String,
    pub view_url: String,
}

/// An account was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Welcome {
    pub name: String,
    pub email: String,
    pub login_url: String,
}

/// A password reset link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    pub name: String,
    pub reset_url: String,
    pub valid_minutes: u32,
}

/// A component's health changed (the alerts issue sends these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemAlert {
    pub component: String,
    /// `pass`, `warn` or `fail`.
    pub status: String,
    pub summary: String,
    pub details: Option<String>,
    pub since: DateTime<Utc>,
}

/// Someone asked for an account: the link that confirms the address and creates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRegistration {
    pub name: String,
    pub confirm_url: String,
    pub valid_hours: u32,
}

/// Someone tried to register an address that has an account (sent instead of a confirmation,
/// so registering reveals nothing about which addresses have accounts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountExists {
    pub name: String,
    pub login_url: String,
    pub reset_url: String,
}

/// A client's member invites an address to the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientInvite {
    pub client_name: String,
    pub invited_by: String,
    pub accept_url: String,
    pub valid_days: u32,
}

/// A client's webhook endpoint was disabled (it kept failing, or answered 410 Gone); to each
/// member of the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookDisabled {
    pub name: String,
    pub client_name: String,
    pub url: String,
    pub endpoint_id: String,
    pub reason: String,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// Why a message cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{template}: `{field}` is empty")]
    Empty {
        template: &'static str,
        field: String,
    },
    #[error("{template}: {source}")]
    Render {
        template: &'static str,
        #[source]
        source: minijinja::Error,
    },
    #[error("the {template} template does not compile: {reason}")]
    Compile {
        template: &'static str,
        reason: String,
    },
}

/// One template, as listed by `GET /api/ops/emails/templates`.
#[derive(Debug, Clone, Copy)]
pub struct Definition {
    pub name: &'static str,
    pub description: &'static str,
    subject: &'static str,
    mjml: &'static str,
    text: &'static str,
}

const LAYOUT: &str = include_str!("templates/layout.mjml");

/// Every template.
pub const TEMPLATES: &[Definition] = &[
    Definition {
        name: "client_approval",
        description:
            "A member asks their client to approve an execution (approve and reject links).",
        subject: "{{ requested_by }} asks you to approve {{ execution_name }}",
        mjml: include_str!("templates/client_approval.mjml"),
        text: include_str!("templates/client_approval.txt"),
    },
    Definition {
        name: "render_complete",
        description: "A render finished; sent to the campaign's owner.",
        subject: "Your render of {{ execution_name }} is ready",
        mjml: include_str!("templates/render_complete.mjml"),
        text: include_str!("templates/render_complete.txt"),
    },
    Definition {
        name: "welcome",
        description: "An account was created.",
        subject: "Welcome to {{ brand.product }}",
        mjml: include_str!("templates/welcome.mjml"),
        text: include_str!("templates/welcome.txt"),
    },
    Definition {
        name: "password_reset",
        description: "A single-use link to choose a new password.",
        subject: "Reset your {{ brand.product }} password",
        mjml: include_str!("templates/password_reset.mjml"),
        text: include_str!("templates/password_reset.txt"),
    },
    Definition {
        name: "system_alert",
        description: "A component's health changed (for operators).",
        subject: "[{{ status }}] {{ component }}",
        mjml: include_str!("templates/system_alert.mjml"),
        text: include_str!("templates/system_alert.txt"),
    },
    Definition {
        name: "confirm_registration",
        description: "Someone asked for an account: the link that confirms the address.",
        subject: "Confirm your {{ brand.product }} account",
        mjml: include_str!("templates/confirm_registration.mjml"),
        text: include_str!("templates/confirm_registration.txt"),
    },
    Definition {
        name: "account_exists",
        description: "Someone tried to register an address that already has an account.",
        subject: "Your {{ brand.product }} account",
        mjml: include_str!("templates/account_exists.mjml"),
        text: include_str!("templates/account_exists.txt"),
    },
    Definition {
        name: "client_invite",
        description: "A client's member invites an address to work on the client.",
        subject: "You are invited to {{ client_name }} on {{ brand.product }}",
        mjml: include_str!("templates/client_invite.mjml"),
        text: include_str!("templates/client_invite.txt"),
    },
    Definition {
        name: "webhook_disabled",
        description: "A client's webhook endpoint was disabled (it kept failing, or answered 410 Gone); to the client's members.",
        subject: "Webhooks to {{ url }} are stopped",
        mjml: include_str!("templates/webhook_disabled.mjml"),
        text: include_str!("templates/webhook_disabled.txt"),
    },
];

impl Message {
    pub fn template(&self) -> &'static str {
        match self {
            Self::ClientApproval(_) => "client_approval",
            Self::RenderComplete(_) => "render_complete",
            Self::Welcome(_) => "welcome",
            Self::PasswordReset(_) => "password_reset",
            Self::SystemAlert(_) => "system_alert",
            Self::ConfirmRegistration(_) => "confirm_registration",
            Self::AccountExists(_) => "account_exists",
            Self::ClientInvite(_) => "client_invite",
            Self::WebhookDisabled(_) => "webhook_disabled",
        }
    }

    /// The template's data: the `data` of the message's own `{template, data}` form.
    fn data(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut m)) => m.remove("data").unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    /// Sample data for a template's preview.
    pub fn sample(template: &str) -> Option<Self> {
        let at = DateTime::parse_from_rfc3339("2026-12-01T09:30:00Z")
            .map(|t| t.with_timezone(&Utc))
            .ok()?;
        Some(match template {
            "client_approval" => Self::ClientApproval(ClientApproval {
                client_name: "Acme Running".into(),
                campaign_name: "Summer 2027".into(),
                execution_name: "Trail shoe — 15 s — EN".into(),
                requested_by: "Ada Lovelace".into(),
                note: Some("Second cut with the new end card.".into()),
                approve_url:
                    "https://app.airwave.example/approve?token=apr_sample&decision=approve".into(),
                reject_url: "https://app.airwave.example/approve?token=apr_sample&decision=reject"
                    .into(),
                expires_at: at,
            }),
            "render_complete" => Self::RenderComplete(RenderComplete {
                name: "Ada".into(),
                campaign_name: "Summer 2027".into(),
                execution_name: "Trail shoe — 15 s — EN".into(),
                view_url: "https://app.airwave.example/executions/exe_sample".into(),
            }),
            "welcome" => Self::Welcome(Welcome {
                name: "Ada".into(),
                email: "ada@example.com".into(),
                login_url: "https://app.airwave.example/login".into(),
            }),
            "password_reset" => Self::PasswordReset(PasswordReset {
                name: "Ada".into(),
                reset_url: "https://app.airwave.example/reset-password?token=rst_sample".into(),
                valid_minutes: 60,
            }),
            "system_alert" => Self::SystemAlert(SystemAlert {
                component: "queue:responseTime".into(),
                status: "fail".into(),
                summary: "The queue's Redis does not answer.".into(),
                details: Some("Connection refused (os error 111)".into()),
                since: at,
            }),
            "confirm_registration" => Self::ConfirmRegistration(ConfirmRegistration {
                name: "Ada".into(),
                confirm_url: "https://app.airwave.example/confirm-registration?token=reg_sample"
                    .into(),
                valid_hours: 24,
            }),
            "account_exists" => Self::AccountExists(AccountExists {
                name: "Ada".into(),
                login_url: "https://app.airwave.example/login".into(),
                reset_url: "https://app.airwave.example/reset-password".into(),
            }),
            "client_invite" => Self::ClientInvite(ClientInvite {
                client_name: "Acme Running".into(),
                invited_by: "Ada Lovelace".into(),
                accept_url: "https://app.airwave.example/accept-invite?token=inv_sample".into(),
                valid_days: 7,
            }),
            "webhook_disabled" => Self::WebhookDisabled(WebhookDisabled {
                name: "Ada".into(),
                client_name: "Acme Running".into(),
                url: "https://hooks.acme.example/airwave".into(),
                endpoint_id: "whe_01jz0000000000000000000000".into(),
                reason: "the endpoint answered 410 Gone".into(),
            }),
            _ => return None,
        })
    }
}

/// The templates, compiled once (MJML to HTML at first use).
pub struct Templates {
    env: Environment<'static>,
}

static COMPILED: LazyLock<Result<Templates, String>> =
    LazyLock::new(|| Templates::compile().map_err(|e| e.to_string()));

/// The compiled templates (compiled at first use; a template that does not compile is a bug
/// the snapshot tests catch).
pub fn templates() -> Result<&'static Templates, TemplateError> {
    COMPILED.as_ref().map_err(|reason| TemplateError::Compile {
        template: "layout",
        reason: reason.clone(),
    })
}

impl Templates {
    fn compile() -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // `.html` templates escape what they insert; `.txt` and `.subject` ones do not.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        for t in TEMPLATES {
            let compile_error = |reason: String| TemplateError::Compile {
                template: t.name,
                reason,
            };
            let mjml = LAYOUT.replace("<!--BODY-->", t.mjml);
            let parsed = mrml::parse(&mjml).map_err(|e| compile_error(e.to_string()))?;
            let html = parsed
                .element
                .render(&mrml::prelude::render::RenderOptions::default())
                .map_err(|e| compile_error(e.to_string()))?;
            for (suffix, source) in [
                ("html", html),
                ("txt", t.text.to_owned()),
                ("subject", t.subject.to_owned()),
            ] {
                env.add_template_owned(format!("{}.{suffix}", t.name), source)
                    .map_err(|e| compile_error(e.to_string()))?;
            }
        }
        Ok(Self { env })
    }

    /// Renders `message` with `brand`.
    pub fn render(&self, message: &Message, brand: &Branding) -> Result<Rendered, TemplateError> {
        let template = message.template();
        let mut data = message.data();
        let Value::Object(fields) = &mut data else {
            return Err(TemplateError::Empty {
                template,
                field: "data".into(),
            });
        };
        if let Some((field, _)) = fields
            .iter()
            .find(|(_, v)| v.as_str().is_some_and(|s| s.trim().is_empty()))
        {
            return Err(TemplateError::Empty {
                template,
                field: field.clone(),
            });
        }
        if let Message::SystemAlert(a) = message {
            let colour = match a.status.as_str() {
                "fail" => "#dc2626",
                "warn" => "#d97706",
                _ => "#16a34a",
            };
            fields.insert("status_colour".into(), Value::from(colour));
        }
        let render_one = |suffix: &str, ctx: &Value| {
            self.env
                .get_template(&format!("{template}.{suffix}"))
                .and_then(|t| t.render(ctx))
                .map_err(|source| TemplateError::Render { template, source })
        };
        fields.insert(
            "brand".into(),
            serde_json::to_value(brand).unwrap_or(Value::Null),
        );
        // A subject is one line: no control character reaches a header.
        let subject: String = render_one("subject", &data)?
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .trim()
            .to_owned();
        let text = render_one("txt", &data)?;
        if let Value::Object(fields) = &mut data {
            fields.insert("subject".into(), Value::from(subject.clone()));
            let preview: String = text
                .split_whitespace()
                .take(24)
                .collect::<Vec<_>>()
                .join(" ");
            fields.insert("preview".into(), Value::from(preview));
        }
        let html = render_one("html", &data)?;
        Ok(Rendered {
            subject,
            html,
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brand() -> Branding {
        Branding {
            product: "AIrWAVE".into(),
            footer: "AIrWAVE · AI video ads for agencies".into(),
            support_url: "https://airwave.example/support".into(),
        }
    }

    /// Snapshots of every template in both formats (`cargo insta review` after a change).
    #[test]
    fn every_template_renders_html_and_text() {
        let t = templates().unwrap();
        for d in TEMPLATES {
            let m = Message::sample(d.name).unwrap();
            assert_eq!(m.template(), d.name);
            let r = t.render(&m, &brand()).unwrap();
            assert!(!r.subject.is_empty());
            assert!(r.html.starts_with("<!doctype html>"), "{}", d.name);
            assert!(
                !r.html.contains("{{") && !r.text.contains("{{"),
                "{}",
                d.name
            );
            insta::assert_snapshot!(format!("{}_subject", d.name), r.subject);
            insta::assert_snapshot!(format!("{}_text", d.name), r.text);
            insta::assert_snapshot!(format!("{}_html", d.name), r.html);
        }
    }

    #[test]
    fn missing_or_empty_data_is_an_error_never_an_empty_slot() {
        let t = templates().unwrap();
        let mut w = match Message::sample("welcome").unwrap() {
            Message::Welcome(w) => w,
            _ => unreachable!(),
        };
        w.login_url = " ".into();
        let e = t.render(&Message::Welcome(w), &brand()).unwrap_err();
        assert!(e.to_string().contains("login_url"), "{e}");
        // A placeholder with no data at all is an error too (strict), not an empty string.
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let e = env
            .render_str("Hello {{ nobody }}", serde_json::json!({}))
            .unwrap_err();
        assert_eq!(e.kind(), minijinja::ErrorKind::UndefinedError);
    }

    #[test]
    fn inserted_text_is_escaped_in_html_and_subjects_are_one_line() {
        let t = templates().unwrap();
        let Message::ClientApproval(mut a) = Message::sample("client_approval").unwrap() else {
            unreachable!()
        };
        a.note = Some("<script>alert(1)</script>".into());
        a.requested_by = "Eve\r\nBcc: all@example.com".into();
        let r = t.render(&Message::ClientApproval(a), &brand()).unwrap();
        assert!(!r.html.contains("<script>alert"), "escaped in HTML");
        assert!(r.html.contains("&lt;script&gt;"));
        assert!(
            !r.subject.contains('\n') && !r.subject.contains('\r'),
            "{}",
            r.subject
        );
    }
}
