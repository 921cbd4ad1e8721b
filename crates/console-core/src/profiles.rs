//! Server profiles: the environments the console connects to (Local, Staging, Production…), each
//! with a name, a URL and a colour that is always on screen (production in red). Stored as JSON in
//! the console's config dir. Tokens are **not** here: they live in the OS keychain (`secrets`);
//! the file holds only the id of the token, which is not secret, so logout can revoke it.

use crate::error::{Error, ErrorKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use url::Url;

/// The colour of production profiles unless another is chosen.
pub const PRODUCTION_RED: &str = "#dc2626";

/// What the UI lists: every profile and the active one's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ProfilesView {
    pub profiles: Vec<Profile>,
    pub active: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Profile {
    /// Stable id: the keychain entry is named after it.
    pub id: String,
    pub name: String,
    #[cfg_attr(test, ts(type = "string"))]
    pub url: Url,
    /// `#rrggbb`.
    pub colour: String,
    pub production: bool,
    /// The local sidecar server the console starts itself.
    #[serde(default)]
    pub local: bool,
    /// Who is logged in (shown in the title bar), when someone is.
    #[serde(default)]
    pub email: Option<String>,
    /// The server-side id of this profile's API token (for revoking it at logout).
    #[serde(default)]
    pub token_id: Option<String>,
    /// When that token expires; the console renews it well before (see `session::renew_if_due`).
    #[serde(default)]
    #[cfg_attr(test, ts(type = "string | null"))]
    pub token_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// A production profile over plain `http` was explicitly allowed (shown wherever the profile
    /// is); without it such a profile's token and password are never sent.
    #[serde(default)]
    pub allow_plain_http: bool,
}

impl Profile {
    /// A checked profile; `colour` defaults to red for production and blue otherwise.
    pub fn new(
        name: &str,
        url: &str,
        colour: Option<&str>,
        production: bool,
    ) -> Result<Self, Error> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 40 {
            return Err(Error::new(
                ErrorKind::Invalid,
                "a profile name has 1 to 40 characters",
            ));
        }
        let url = Url::parse(url.trim())
            .map_err(|e| Error::new(ErrorKind::Invalid, format!("`{url}` is not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(Error::new(
                ErrorKind::Invalid,
                "the server URL must be http:// or https://",
            ));
        }
        if url.password().is_some() || !url.username().is_empty() {
            return Err(Error::new(
                ErrorKind::Invalid,
                "credentials do not belong in the URL; log in instead",
            ));
        }
        let colour = colour.map(str::to_owned).unwrap_or_else(|| {
            if production {
                PRODUCTION_RED
            } else {
                "#2563eb"
            }
            .into()
        });
        let hex = colour.strip_prefix('#').unwrap_or("");
        if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::new(ErrorKind::Invalid, "a colour is #rrggbb"));
        }
        let id: String = name
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        Ok(Self {
            id,
            name: name.into(),
            url,
            colour,
            production,
            local: false,
            email: None,
            token_id: None,
            token_expires_at: None,
            allow_plain_http: false,
        })
    }

    /// Whether credentials may be sent to this profile's server: a production profile over plain
    /// `http` needs the explicit opt-in (`allow_plain_http`), so a typo in a URL never sends a
    /// production password and token across the network unencrypted.
    pub fn check_transport(&self) -> Result<(), Error> {
        if self.production && !self.local && self.url.scheme() == "http" && !self.allow_plain_http {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!(
                    "{} is a production profile over plain http: passwords, tokens and every answer would cross the network unencrypted. Use https, or allow plain http for this profile",
                    self.name
                ),
            ));
        }
        Ok(())
    }

    /// The title the window shows: `AIrWAVE Ops — Production`.
    pub fn window_title(&self) -> String {
        format!("AIrWAVE Ops — {}", self.name)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    profiles: Vec<Profile>,
    active: Option<String>,
}

/// The profiles file.
#[derive(Debug)]
pub struct Profiles {
    path: PathBuf,
    file: File,
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("{what} {}: {e}", path.display()))
}

impl Profiles {
    /// Reads `path` (an absent file is no profiles yet).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let file = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| io("cannot read the profiles in", path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(e) => return Err(io("cannot read", path, e)),
        };
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    /// Writes atomically (a temp file renamed over the old one), readable by the user only.
    pub fn save(&self) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(&self.file)
            .map_err(|e| io("cannot encode", &self.path, e))?;
        crate::files::write_private(&self.path, text.as_bytes())
    }

    pub fn list(&self) -> &[Profile] {
        &self.file.profiles
    }

    pub fn get(&self, id: &str) -> Result<&Profile, Error> {
        self.file
            .profiles
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| Error::new(ErrorKind::Invalid, format!("no profile `{id}`")))
    }

    /// Adds or replaces (by id) a profile.
    pub fn upsert(&mut self, p: Profile) {
        match self.file.profiles.iter_mut().find(|x| x.id == p.id) {
            Some(slot) => *slot = p,
            None => self.file.profiles.push(p),
        }
    }

    pub fn remove(&mut self, id: &str) -> Result<Profile, Error> {
        let i = self
            .file
            .profiles
            .iter()
            .position(|p| p.id == id)
            .ok_or_else(|| Error::new(ErrorKind::Invalid, format!("no profile `{id}`")))?;
        if self.file.active.as_deref() == Some(id) {
            self.file.active = None;
        }
        Ok(self.file.profiles.remove(i))
    }

    pub fn active(&self) -> Option<&Profile> {
        self.file
            .active
            .as_deref()
            .and_then(|id| self.file.profiles.iter().find(|p| p.id == id))
    }

    pub fn set_active(&mut self, id: &str) -> Result<(), Error> {
        self.get(id)?;
        self.file.active = Some(id.into());
        Ok(())
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> Result<&mut Profile, Error> {
        self.file
            .profiles
            .iter_mut()
            .find(|p| p.id == id)
            .ok_or_else(|| Error::new(ErrorKind::Invalid, format!("no profile `{id}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_checked_and_production_is_red() {
        let p = Profile::new("Production", "https://ops.example.com", None, true).unwrap();
        assert_eq!(
            (p.id.as_str(), p.colour.as_str()),
            ("production", PRODUCTION_RED)
        );
        assert_eq!(p.window_title(), "AIrWAVE Ops — Production");
        for (name, url, colour) in [
            ("", "https://x.example", None),
            ("A", "ftp://x.example", None),
            ("A", "not a url", None),
            ("A", "https://user:pw@x.example", None),
            ("A", "https://x.example", Some("red")),
        ] {
            assert!(
                Profile::new(name, url, colour, false).is_err(),
                "{name} {url} {colour:?}"
            );
        }
    }

    #[test]
    fn production_over_plain_http_needs_the_opt_in() {
        let mut p = Profile::new("Prod", "http://ops.example.com", None, true).unwrap();
        assert_eq!(p.check_transport().unwrap_err().kind, ErrorKind::Invalid);
        p.allow_plain_http = true;
        assert!(p.check_transport().is_ok());
        for (url, production) in [
            ("https://ops.example.com", true),
            ("http://ops.example.com", false),
        ] {
            assert!(Profile::new("P", url, None, production)
                .unwrap()
                .check_transport()
                .is_ok());
        }
    }

    #[test]
    fn profiles_round_trip_through_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console/profiles.json");
        let mut ps = Profiles::load(&path).unwrap();
        assert!(ps.list().is_empty());
        ps.upsert(
            Profile::new(
                "Staging",
                "https://staging.example.com",
                Some("#f59e0b"),
                false,
            )
            .unwrap(),
        );
        ps.upsert(Profile::new("Production", "https://ops.example.com", None, true).unwrap());
        ps.set_active("production").unwrap();
        ps.save().unwrap();
        let again = Profiles::load(&path).unwrap();
        assert_eq!(again.list().len(), 2);
        assert_eq!(again.active().unwrap().name, "Production");
        assert!(again.get("nope").is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
