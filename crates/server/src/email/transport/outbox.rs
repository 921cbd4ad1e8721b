//! The outbox transport (the embedded default): each message is written to a folder as
//! `<id>.eml` (the RFC 5322 message a mail client opens) and `<id>.json` (its parts, for
//! reading in tests and scripts), atomically and readable by the owner only — a delivered link
//! works, so the folder is as private as a mailbox.

use super::{mime_message, Accepted, Envelope, Transport, TransportError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub struct Outbox {
    dir: PathBuf,
}

/// What `<id>.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub id: String,
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub tags: Vec<(String, String)>,
}

impl Outbox {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        std::fs::create_dir_all(&self.dir)?;
        let mut f = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempfile_in(&self.dir)?;
        f.write_all(bytes)?;
        f.as_file().sync_all()?;
        f.persist(self.dir.join(name)).map_err(|e| e.error)?;
        Ok(())
    }
}

fn io_error(e: std::io::Error) -> TransportError {
    TransportError::retryable(format!("writing to the outbox: {e}"))
}

#[async_trait]
impl Transport for Outbox {
    fn name(&self) -> &'static str {
        "outbox"
    }

    async fn send(&self, e: &Envelope) -> Result<Accepted, TransportError> {
        if !e.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(TransportError::permanent("a message id names a file"));
        }
        let eml = mime_message(e)?.formatted();
        let json = serde_json::to_vec_pretty(&OutboxMessage {
            id: e.id.clone(),
            message_id: e.message_id.clone(),
            from: e.from.clone(),
            to: e.to.clone(),
            subject: e.subject.clone(),
            text: e.text.clone(),
            html: e.html.clone(),
            tags: e.tags.clone(),
        })
        .map_err(|err| TransportError::permanent(err.to_string()))?;
        let this = Self {
            dir: self.dir.clone(),
        };
        let id = e.id.clone();
        tokio::task::spawn_blocking(move || {
            // The `.json` last: a reader that sees it sees the whole message.
            this.write(&format!("{id}.eml"), &eml)?;
            this.write(&format!("{id}.json"), &json)?;
            Ok::<_, std::io::Error>(format!("{id}.eml"))
        })
        .await
        .map_err(|err| TransportError::retryable(err.to_string()))?
        .map(|file| Accepted {
            provider_id: Some(file),
        })
        .map_err(io_error)
    }

    async fn check(&self) -> Result<String, TransportError> {
        let this = Self {
            dir: self.dir.clone(),
        };
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&this.dir)?;
            tempfile::tempfile_in(&this.dir).map(|_| ())
        })
        .await
        .map_err(|err| TransportError::retryable(err.to_string()))?
        .map_err(io_error)?;
        Ok(format!("{} is writable", self.dir.display()))
    }
}
