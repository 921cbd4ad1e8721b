//! E-mail. Templates (`templates.rs`: subject, responsive HTML and text from typed data, branded
//! from configuration) with their previews for support staff (`routes.rs`); the outbox: every
//! message is recorded in the `emails` table in the same transaction as the change that causes
//! it. Delivery (the SMTP and Resend transports on the `email` queue), the e-mail log and resends
//! come next (see issue #11).

pub mod routes;
pub mod templates;

/// The e-mail feature: its routes and settings.
pub struct Feature;

impl crate::feature::Feature for Feature {
    fn name(&self) -> &'static str {
        "email"
    }

    fn routes(&self) -> crate::feature::Routes {
        routes::routes()
    }

    fn settings(&self) -> Option<crate::config::settings::Section> {
        Some(settings::section())
    }
}

/// The e-mail feature's settings: the sender and the branding every message carries.
pub mod settings {
    use crate::config::settings::{Kind, Reader, Section, Setting};
    use url::Url;

    #[derive(Debug, Clone)]
    pub struct EmailConfig {
        pub from: String,
        pub branding: super::templates::Branding,
    }

    impl EmailConfig {
        pub fn read(r: &mut Reader, public_url: &Url) -> Self {
            let support_url = match r.text(&SUPPORT_URL) {
                u if u.trim().is_empty() => public_url.to_string(),
                u => {
                    if !Url::parse(&u).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                        r.error(format!("{} must be an http(s) URL", SUPPORT_URL.name));
                    }
                    u
                }
            };
            // A blank variable is an unset one: these always have their (non-empty) defaults.
            Self {
                from: r.text(&FROM),
                branding: super::templates::Branding {
                    product: r.text(&PRODUCT),
                    footer: r.text(&FOOTER),
                    support_url,
                },
            }
        }
    }

    pub const FROM: Setting = Setting::new(
        "AIRWAVE_EMAIL_FROM",
        Kind::Text { default: "AIrWAVE <notifications@airwave.app>" },
        "The sender of e-mails. Until e-mail delivery lands, the outbox (the `emails` table) holds every message the server would send: password-reset and approval links are there.",
    );
    pub const PRODUCT: Setting = Setting::new(
        "AIRWAVE_EMAIL_PRODUCT_NAME",
        Kind::Text { default: "AIrWAVE" },
        "The product's name in every e-mail's header and text.",
    );
    pub const FOOTER: Setting = Setting::new(
        "AIRWAVE_EMAIL_FOOTER",
        Kind::Text {
            default: "AIrWAVE · AI video ads for agencies",
        },
        "The footer line of every e-mail.",
    );
    pub const SUPPORT_URL: Setting = Setting::new(
        "AIRWAVE_EMAIL_SUPPORT_URL",
        Kind::Text { default: "" },
        "The support link in every e-mail's footer; `AIRWAVE_PUBLIC_URL` when empty.",
    );

    pub fn section() -> Section {
        Section {
            title: "E-mail",
            intro: "",
            settings: vec![FROM, PRODUCT, FOOTER, SUPPORT_URL],
        }
    }
}

/// Queues a message on a connection (inside a transaction: `&mut *tx`).
#[macro_export]
macro_rules! enqueue_email_on {
    ($conn:expr, $now:expr, $to:expr, $subject:expr, $template:expr, $text:expr) => {
        sqlx::query(
            "INSERT INTO emails (id, to_address, subject, template, text_body, status, created_at)
             VALUES ($1, $2, $3, $4, $5, 'queued', $6)",
        )
        .bind($crate::ids::EmailId::new($now).as_str())
        .bind($to)
        .bind($subject)
        .bind($template)
        .bind($text)
        .bind($now)
        .execute($conn)
        .await
    };
}
