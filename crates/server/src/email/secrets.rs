//! No usable secret at rest: a message whose link carries a single-use token is stored with the
//! link's token replaced by [`MARKER`] and a [`LinkSecret`] saying how to make the token again —
//! the row it opens, never the token. The sender derives the token at send time (the same on
//! every retry, so a retried send is the same mail) and puts it in place of the marker; the
//! e-mail log shows the marker as `[redacted]`. The token is computed from the server's signing
//! key, which is not in the database: a copy of every table yields no working link.

use secrecy::SecretSlice;
use serde::{Deserialize, Serialize};

/// Stands for the token in a stored link (letters and underscores: unchanged by URL and HTML
/// escaping).
pub const MARKER: &str = "__airwave_link_token__";

/// What the log shows in place of a token.
pub const REDACTED: &str = "[redacted]";

/// How to make a stored message's link token again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LinkSecret {
    /// A token derived from the key, a purpose and a row id
    /// ([`crate::auth::signing::derived_token`]): password resets, registrations, invitations.
    Derived {
        purpose: String,
        id: String,
        prefix: String,
    },
    /// An approval link: signed claims of the approval's id and expiry.
    Approval { id: String, exp: i64 },
}

impl LinkSecret {
    pub fn derived(purpose: &str, id: &str, prefix: &str) -> Self {
        Self::Derived {
            purpose: purpose.into(),
            id: id.into(),
            prefix: prefix.into(),
        }
    }

    /// The token (for the row's hash when the link is made, and for the mail when it is sent).
    pub fn token(&self, key: &SecretSlice<u8>) -> String {
        match self {
            Self::Derived {
                purpose,
                id,
                prefix,
            } => crate::auth::signing::derived_token(key, purpose, id, prefix),
            Self::Approval { id, exp } => crate::approvals::link_token(key, id, *exp),
        }
    }
}

/// Puts `token` in place of the marker.
pub fn reveal(text: &str, token: &str) -> String {
    text.replace(MARKER, token)
}

/// Shows the marker as `[redacted]` (the e-mail log).
pub fn redact(text: &str) -> String {
    text.replace(MARKER, REDACTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_survives_url_and_html_escaping() {
        let mut u = url::Url::parse("https://app.example/reset-password").unwrap();
        u.query_pairs_mut().append_pair("token", MARKER);
        assert!(u.as_str().ends_with(MARKER));
        let token = LinkSecret::derived("password_reset", "rst_1", "rst_")
            .token(&SecretSlice::from(b"k".to_vec()));
        let mut direct = url::Url::parse("https://app.example/reset-password").unwrap();
        direct.query_pairs_mut().append_pair("token", &token);
        assert_eq!(reveal(u.as_str(), &token), direct.as_str());
        assert_eq!(
            redact(u.as_str()),
            "https://app.example/reset-password?token=[redacted]"
        );
    }
}
