//! E-mail, for now only the outbox: every message is recorded in the `emails` table in the same
//! transaction as the change that causes it, which is also the embedded default transport (stored,
//! viewable). The e-mail issue adds templates, the SMTP and Resend transports and delivery.

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
