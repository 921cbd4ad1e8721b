//! Settings declared once. Each variable — name, type, default, bounds, whether it is secret, its
//! doc line — is a [`Setting`] in the module that owns it (`db`, `queue`, `render`, …). The same
//! declaration drives parsing ([`Reader`]: every problem collected, each naming its variable),
//! `config check` ([`describe`]) and `docs/configuration.md` ([`reference`], kept current by a
//! test).

use secrecy::SecretString;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;
use url::Url;

/// One environment variable.
#[derive(Debug, Clone)]
pub struct Setting {
    pub name: Cow<'static, str>,
    pub kind: Kind,
    /// Its line in the operator manual.
    pub doc: Cow<'static, str>,
}

/// What a variable holds, with its default and bounds.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A whole number from `min` to `max`, in `unit` (`ms`, `s`, `minutes`, `bytes`, or none).
    Int {
        default: i64,
        min: i64,
        max: i64,
        unit: &'static str,
    },
    /// A number from `min` to `max`.
    Float { default: f64, min: f64, max: f64 },
    /// One of a few words.
    Choice {
        default: &'static str,
        options: &'static [&'static str],
    },
    /// An optional URL of one of `schemes`; `secret` when it may carry credentials.
    Url {
        schemes: &'static [&'static str],
        default: Option<&'static str>,
        secret: bool,
    },
    /// An optional secret of at least `min_len` characters.
    Secret { min_len: usize },
    /// Text with a default.
    Text { default: &'static str },
    /// Parsed by its owner (addresses, paths, lists, the database URL); `default` and `values`
    /// describe it.
    Custom {
        default: &'static str,
        values: &'static str,
        secret: bool,
    },
    /// Names a backend this build does not have yet: refused when set.
    NotYetBuilt { comes_with: &'static str },
}

impl Setting {
    pub const fn new(name: &'static str, kind: Kind, doc: &'static str) -> Self {
        Self {
            name: Cow::Borrowed(name),
            kind,
            doc: Cow::Borrowed(doc),
        }
    }

    /// A whole number of milliseconds.
    pub const fn millis(
        name: &'static str,
        default: i64,
        min: i64,
        max: i64,
        doc: &'static str,
    ) -> Self {
        Self::int(name, default, min, max, "ms", doc)
    }

    /// A whole number (with a unit word for the docs).
    pub const fn int(
        name: &'static str,
        default: i64,
        min: i64,
        max: i64,
        unit: &'static str,
        doc: &'static str,
    ) -> Self {
        Self::new(
            name,
            Kind::Int {
                default,
                min,
                max,
                unit,
            },
            doc,
        )
    }

    pub fn is_secret(&self) -> bool {
        matches!(
            self.kind,
            Kind::Secret { .. }
                | Kind::Url { secret: true, .. }
                | Kind::Custom { secret: true, .. }
                | Kind::NotYetBuilt { .. }
        )
    }
}

/// A part of the configuration: its settings and what the manual says before them.
#[derive(Debug, Clone)]
pub struct Section {
    pub title: &'static str,
    pub intro: &'static str,
    pub settings: Vec<Setting>,
}

/// Reads declared variables and collects every problem instead of stopping at the first.
pub struct Reader<'a> {
    vars: &'a BTreeMap<String, String>,
    pub errors: Vec<String>,
}

fn unit_words(unit: &str) -> String {
    match unit {
        "" => String::new(),
        "ms" => " milliseconds".into(),
        "s" => " seconds".into(),
        u => format!(" {u}"),
    }
}

impl<'a> Reader<'a> {
    pub fn new(vars: &'a BTreeMap<String, String>) -> Self {
        Self {
            vars,
            errors: Vec::new(),
        }
    }

    /// A set, non-blank variable's value (trimmed).
    pub fn raw(&self, name: &str) -> Option<&'a str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn error(&mut self, e: impl Into<String>) {
        self.errors.push(e.into());
    }

    /// An `Int` setting, within its bounds (the default when unset or invalid).
    pub fn int(&mut self, s: &Setting) -> i64 {
        let Kind::Int {
            default,
            min,
            max,
            unit,
        } = s.kind
        else {
            unreachable!("{} is not declared as a whole number", s.name)
        };
        let Some(v) = self.raw(&s.name) else {
            return default;
        };
        let Ok(n) = v.parse::<i64>() else {
            self.error(format!(
                "{} is `{v}`, which is not a whole number{}",
                s.name,
                if unit.is_empty() {
                    String::new()
                } else {
                    format!(" of{}", unit_words(unit))
                }
            ));
            return default;
        };
        if !(min..=max).contains(&n) {
            self.error(format!(
                "{} must be between {min} and {max}{} (got {n})",
                s.name,
                unit_words(unit)
            ));
            return default;
        }
        n
    }

    /// An `Int` setting in milliseconds, as a duration.
    pub fn millis(&mut self, s: &Setting) -> Duration {
        Duration::from_millis(u64::try_from(self.int(s)).unwrap_or(0))
    }

    /// An `Int` setting in seconds, as a duration.
    pub fn secs(&mut self, s: &Setting) -> Duration {
        Duration::from_secs(u64::try_from(self.int(s)).unwrap_or(0))
    }

    pub fn float(&mut self, s: &Setting) -> f64 {
        let Kind::Float { default, min, max } = s.kind else {
            unreachable!("{} is not declared as a number", s.name)
        };
        let Some(v) = self.raw(&s.name) else {
            return default;
        };
        match v.parse::<f64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            Ok(n) => {
                self.error(format!(
                    "{} must be between {min} and {max} (got {n})",
                    s.name
                ));
                default
            }
            Err(_) => {
                self.error(format!("{} is `{v}`, which is not a number", s.name));
                default
            }
        }
    }

    pub fn choice(&mut self, s: &Setting) -> &'static str {
        let Kind::Choice { default, options } = s.kind else {
            unreachable!("{} is not declared as a choice", s.name)
        };
        let Some(v) = self.raw(&s.name) else {
            return default;
        };
        match options.iter().find(|o| **o == v) {
            Some(o) => o,
            None => {
                self.error(format!(
                    "{} is `{v}`; expected {}",
                    s.name,
                    options
                        .iter()
                        .map(|o| format!("`{o}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ));
                default
            }
        }
    }

    /// A `Url` setting: the variable's URL, else the default, else `None`.
    pub fn url(&mut self, s: &Setting) -> Option<Url> {
        let Kind::Url {
            schemes, default, ..
        } = s.kind
        else {
            unreachable!("{} is not declared as a URL", s.name)
        };
        let Some(v) = self.raw(&s.name) else {
            return default.and_then(|d| Url::parse(d).ok());
        };
        match Url::parse(v) {
            Ok(u) if schemes.contains(&u.scheme()) => Some(u),
            Ok(u) => {
                self.error(format!(
                    "{} has scheme `{}`; expected {}",
                    s.name,
                    u.scheme(),
                    schemes
                        .iter()
                        .map(|s| format!("{s}://"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ));
                None
            }
            Err(e) => {
                self.error(format!("{} is not a valid URL ({e})", s.name));
                None
            }
        }
    }

    pub fn secret(&mut self, s: &Setting) -> Option<SecretString> {
        let Kind::Secret { min_len } = s.kind else {
            unreachable!("{} is not declared as a secret", s.name)
        };
        let v = self.raw(&s.name)?;
        if v.chars().count() < min_len {
            self.error(format!(
                "{} must be at least {min_len} characters long",
                s.name
            ));
        }
        Some(SecretString::from(v.to_owned()))
    }

    pub fn text(&mut self, s: &Setting) -> String {
        let Kind::Text { default } = s.kind else {
            unreachable!("{} is not declared as text", s.name)
        };
        self.raw(&s.name).unwrap_or(default).to_owned()
    }

    /// Refuses every `NotYetBuilt` setting that is set.
    pub fn refuse_not_yet_built(&mut self, settings: &[Setting]) {
        for s in settings {
            if let Kind::NotYetBuilt { comes_with } = s.kind {
                if self.raw(&s.name).is_some() {
                    self.error(format!(
                        "{} is set, but this build has no {comes_with} yet; unset it (it is refused rather than silently ignored)",
                        s.name
                    ));
                }
            }
        }
    }
}

/// Whether a URL's host is this machine (`localhost`, 127.0.0.0/8, ::1): where production may
/// use plain `http://`.
pub fn is_loopback(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    if digits.len() <= 4 {
        return n.to_string();
    }
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// The default and the allowed values of a setting, as the manual shows them.
fn default_and_values(s: &Setting) -> (String, String) {
    match &s.kind {
        Kind::Int {
            default,
            min,
            max,
            unit,
        } => (
            format!("`{default}`"),
            format!(
                "{} – {}{}",
                thousands(*min),
                thousands(*max),
                unit_words(unit)
            ),
        ),
        Kind::Float { default, min, max } => (format!("`{default}`"), format!("{min} – {max}")),
        Kind::Choice { default, options } => (
            format!("`{default}`"),
            options
                .iter()
                .map(|o| format!("`{o}`"))
                .collect::<Vec<_>>()
                .join(" or "),
        ),
        Kind::Url {
            schemes,
            default,
            secret,
        } => (
            default.map_or_else(|| "unset".to_owned(), |d| format!("`{d}`")),
            format!(
                "{}{}",
                schemes
                    .iter()
                    .map(|s| format!("`{s}://…`"))
                    .collect::<Vec<_>>()
                    .join(" or "),
                if *secret {
                    " (its password is never printed)"
                } else {
                    ""
                }
            ),
        ),
        Kind::Secret { min_len } => (
            "unset".into(),
            if *min_len > 0 {
                format!("secret, at least {min_len} characters")
            } else {
                "secret".into()
            },
        ),
        Kind::Text { default } => (format!("`{default}`"), "text".into()),
        Kind::Custom {
            default, values, ..
        } => ((*default).into(), (*values).into()),
        Kind::NotYetBuilt { comes_with } => (
            "unset".into(),
            format!("refused when set (comes with {comes_with})"),
        ),
    }
}

/// `docs/configuration.md`: the preface, then every section's table, from the declarations.
pub fn reference(preface: &str, sections: &[Section]) -> String {
    let mut out = String::from(preface.trim_end());
    out.push('\n');
    for section in sections {
        let _ = write!(out, "\n## {}\n\n", section.title);
        if !section.intro.is_empty() {
            out.push_str(section.intro.trim());
            out.push_str("\n\n");
        }
        out.push_str("| variable | default | values | meaning |\n| --- | --- | --- | --- |\n");
        for s in &section.settings {
            let (default, values) = default_and_values(s);
            let _ = writeln!(
                out,
                "| `{}` | {default} | {values} | {} |",
                s.name,
                s.doc.replace('\n', " ")
            );
        }
    }
    out
}

/// `config check`: each declared variable with the value in force, secrets redacted.
pub fn describe(vars: &BTreeMap<String, String>, sections: &[Section]) -> String {
    let reader = Reader::new(vars);
    let mut out = String::new();
    for s in sections.iter().flat_map(|s| &s.settings) {
        let value = match (reader.raw(&s.name), &s.kind) {
            (None, _) => format!("(default: {})", default_and_values(s).0.trim_matches('`')),
            // A URL with a host prints with its password redacted; any other secret not at all.
            (Some(v), Kind::Url { secret: true, .. } | Kind::Custom { secret: true, .. }) => {
                Url::parse(v)
                    .ok()
                    .filter(|u| u.has_host())
                    .map_or_else(|| "[redacted]".into(), |u| crate::db::redact_url(&u))
            }
            (Some(_), _) if s.is_secret() => "[redacted]".into(),
            (Some(v), _) => v.to_owned(),
        };
        let _ = writeln!(out, "{:<36} = {value}", s.name);
    }
    out
}
