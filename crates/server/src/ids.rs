//! Typed, prefixed, time-sortable ids (`usr_01jf…`): 48 bits of milliseconds and 80 random bits in
//! lowercase Crockford base32, so ids sort by creation time and pagination can use them as cursors.
//! A value of one id type can only be built by parsing, so a `ClientId` is always well formed.

use std::sync::{LazyLock, Mutex};

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const BODY_LEN: usize = 26;

/// A new id body for the given time (milliseconds since the Unix epoch): a ULID (the `ulid`
/// crate's monotonic generator) in lowercase. Within one process ids are strictly increasing: in
/// the same millisecond (or if the clock steps back) the generator increments the previous one's
/// random part instead of drawing anew, so creation order is id order — which FIFO queues and
/// cursors rely on.
pub fn new_body(millis: u64) -> String {
    static GENERATOR: LazyLock<Mutex<ulid::Generator>> =
        LazyLock::new(|| Mutex::new(ulid::Generator::new()));
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis & 0xFFFF_FFFF_FFFF);
    let id = GENERATOR
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .generate_from_datetime(at)
        // 2^80 ids in one millisecond: start a fresh one.
        .unwrap_or_else(|_| ulid::Ulid::from_datetime(at));
    id.to_string().to_ascii_lowercase()
}

/// Why a string is not an id of a kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("`{got}` is not a {prefix}_… id")]
    WrongKind { prefix: &'static str, got: String },
    #[error("`{got}` is not a valid {prefix}_… id")]
    Malformed { prefix: &'static str, got: String },
}

/// Checks a `prefix_body` id; returns the reason when it is not one.
pub fn check(prefix: &'static str, s: &str) -> Result<(), IdError> {
    let body = s
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .ok_or_else(|| IdError::WrongKind {
            prefix,
            got: truncate(s),
        })?;
    let valid = body.len() == BODY_LEN
        && body.bytes().all(|b| ALPHABET.contains(&b))
        && body.as_bytes()[0] <= b'7';
    if valid {
        Ok(())
    } else {
        Err(IdError::Malformed {
            prefix,
            got: truncate(s),
        })
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Declares an id type with its prefix.
macro_rules! typed_id {
    ($name:ident, $prefix:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn new(now: chrono::DateTime<chrono::Utc>) -> Self {
                let millis = u64::try_from(now.timestamp_millis()).unwrap_or(0);
                Self(format!("{}_{}", $prefix, $crate::ids::new_body(millis)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::ids::IdError;
            fn try_from(s: String) -> Result<Self, $crate::ids::IdError> {
                $crate::ids::check($prefix, &s)?;
                Ok(Self(s))
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::ids::IdError;
            fn from_str(s: &str) -> Result<Self, $crate::ids::IdError> {
                Self::try_from(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

typed_id!(UserId, "usr");
typed_id!(SessionId, "ses");
typed_id!(ApiTokenId, "tok");
typed_id!(ResetId, "rst");
typed_id!(RegistrationId, "reg");
typed_id!(InviteId, "inv");
typed_id!(ClientId, "cli");
typed_id!(AssetId, "ast");
typed_id!(CampaignId, "cmp");
typed_id!(MatrixId, "mtx");
typed_id!(ExecutionId, "exe");
typed_id!(ApprovalId, "apr");
typed_id!(EventId, "evt");
typed_id!(AuditId, "aud");
typed_id!(EmailId, "msg");
typed_id!(JobId, "job");
typed_id!(RenderId, "rnd");
// One upload of an asset's file (resumable or not): it names the upload and the stored blob.
typed_id!(UploadId, "upl");
// A database backup and a restore drill of one.
typed_id!(BackupId, "bkp");
typed_id!(DrillId, "drl");
// A campaign export (an archive of its approved renders).
typed_id!(ExportId, "exp");
// One operator request carried out by a job (a bulk retry or purge), tying the job to its audit entry.
typed_id!(OperationId, "opr");
// Outgoing webhooks: an endpoint, one message (its `webhook-id`), one attempt, one recovery.
typed_id!(WebhookEndpointId, "whe");
typed_id!(WebhookMessageId, "whm");
typed_id!(WebhookAttemptId, "wha");
typed_id!(WebhookRecoveryId, "whr");

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let a = ClientId::new(Utc.timestamp_millis_opt(1_000).unwrap());
        let b = ClientId::new(Utc.timestamp_millis_opt(2_000).unwrap());
        assert!(a < b);
        assert_eq!(a.as_str().len(), 4 + 26);
        assert_eq!(a.as_str().parse::<ClientId>().unwrap(), a);
    }

    #[test]
    fn ids_made_in_the_same_millisecond_still_increase() {
        let t = Utc.timestamp_millis_opt(5_000).unwrap();
        let ids: Vec<JobId> = (0..1000).map(|_| JobId::new(t)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(
            JobId::new(Utc.timestamp_millis_opt(4_000).unwrap()) > ids[999],
            "a clock stepping back keeps order"
        );
    }

    #[test]
    fn an_id_with_another_prefix_is_rejected() {
        let a = UserId::new(Utc::now());
        assert!(a.as_str().parse::<ClientId>().is_err());
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "",
            "cli_",
            "cli_123",
            "cli_ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "cli_81jf0000000000000000000000",
            "cli__",
        ] {
            assert!(bad.parse::<ClientId>().is_err(), "{bad}");
        }
    }
}
