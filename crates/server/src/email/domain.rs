//! Domain authentication: does the sending domain publish the SPF, DKIM and DMARC records that
//! receivers check (`airwave-server email check-domain`)? Every look-up goes through the [`Dns`]
//! seam — [`HickoryDns`] (the system's resolver, or one name server given on the command line) in
//! the binary, a table in the unit tests — and each missing or broken record comes with the record
//! to publish. See `docs/email.md` ("Domain authentication").

use serde::Serialize;
use std::future::Future;
use std::net::SocketAddr;

/// A DNS look-up that could not be answered (a name server unreachable, a timeout, a refusal) —
/// not "no such record", which is an empty answer.
#[derive(Debug, thiserror::Error)]
#[error("cannot look up {rtype} {name}: {reason}")]
pub struct DnsError {
    pub name: String,
    pub rtype: &'static str,
    pub reason: String,
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    pub preference: u16,
    /// The exchange, lower case, without the trailing dot.
    pub exchange: String,
}

/// The look-ups the check needs. An empty answer means the name has no such record (or does not
/// exist); an error means the question could not be answered.
pub trait Dns: Sync {
    /// The TXT records at `name`, each one's character-strings joined (as SPF, DKIM and DMARC
    /// read them).
    fn txt(&self, name: &str) -> impl Future<Output = Result<Vec<String>, DnsError>> + Send;
    fn mx(&self, name: &str) -> impl Future<Output = Result<Vec<Mx>, DnsError>> + Send;
}

/// [`Dns`] through `hickory-resolver`.
pub struct HickoryDns(hickory_resolver::TokioResolver);

impl HickoryDns {
    /// The system's resolver (`/etc/resolv.conf`).
    pub fn system() -> Result<Self, DnsError> {
        let failed = |e: hickory_resolver::net::NetError| DnsError {
            name: "/etc/resolv.conf".into(),
            rtype: "resolver configuration",
            reason: e.to_string(),
        };
        let mut builder = hickory_resolver::Resolver::builder_tokio().map_err(failed)?;
        Self::tune(builder.options_mut());
        Ok(Self(builder.build().map_err(failed)?))
    }

    /// One name server (UDP, and TCP for long answers), nothing else.
    pub fn at(server: SocketAddr) -> Result<Self, DnsError> {
        use hickory_resolver::config::{NameServerConfig, ResolverConfig};
        let mut name_server = NameServerConfig::udp_and_tcp(server.ip());
        for connection in &mut name_server.connections {
            connection.port = server.port();
        }
        let config = ResolverConfig::from_parts(None, Vec::new(), vec![name_server]);
        let mut builder = hickory_resolver::Resolver::builder_with_config(
            config,
            hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
        );
        Self::tune(builder.options_mut());
        let resolver = builder.build().map_err(|e| DnsError {
            name: server.to_string(),
            rtype: "name server",
            reason: e.to_string(),
        })?;
        Ok(Self(resolver))
    }

    /// The resolver itself (the SSRF guard resolves through it too).
    pub fn into_resolver(self) -> hickory_resolver::TokioResolver {
        self.0
    }

    fn tune(options: &mut hickory_resolver::config::ResolverOpts) {
        options.timeout = std::time::Duration::from_secs(5);
        options.attempts = 2;
        // Names are absolute (we add the dot): no search list, no `ndots` games.
        options.ndots = 0;
        options.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
    }

    async fn lookup(
        &self,
        name: &str,
        rtype: hickory_resolver::proto::rr::RecordType,
    ) -> Result<Vec<hickory_resolver::proto::rr::RData>, DnsError> {
        use hickory_resolver::net::{DnsError as Dns, NetError, NoRecords};
        use hickory_resolver::proto::op::ResponseCode;
        match self.0.lookup(absolute(name), rtype).await {
            Ok(lookup) => Ok(lookup.answers().iter().map(|r| r.data.clone()).collect()),
            // "No such record" (the name exists without it, or does not exist) — not a server
            // failure (SERVFAIL, REFUSED) or a timeout, which say nothing about the record.
            Err(NetError::Dns(Dns::NoRecordsFound(NoRecords {
                response_code: ResponseCode::NoError | ResponseCode::NXDomain,
                ..
            }))) => Ok(Vec::new()),
            Err(e) => Err(DnsError {
                name: name.to_owned(),
                rtype: if rtype == hickory_resolver::proto::rr::RecordType::MX {
                    "MX"
                } else {
                    "TXT"
                },
                reason: e.to_string(),
            }),
        }
    }
}

fn absolute(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

impl Dns for HickoryDns {
    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        use hickory_resolver::proto::rr::{RData, RecordType};
        let answers = self.lookup(name, RecordType::TXT).await?;
        Ok(answers
            .into_iter()
            .filter_map(|r| match r {
                RData::TXT(txt) => {
                    let bytes: Vec<u8> = txt
                        .txt_data
                        .iter()
                        .flat_map(|s| s.iter().copied())
                        .collect();
                    Some(String::from_utf8_lossy(&bytes).into_owned())
                }
                _ => None,
            })
            .collect())
    }

    async fn mx(&self, name: &str) -> Result<Vec<Mx>, DnsError> {
        use hickory_resolver::proto::rr::{RData, RecordType};
        let answers = self.lookup(name, RecordType::MX).await?;
        Ok(answers
            .into_iter()
            .filter_map(|r| match r {
                RData::MX(mx) => Some(Mx {
                    preference: mx.preference,
                    exchange: mx
                        .exchange
                        .to_ascii()
                        .trim_end_matches('.')
                        .to_ascii_lowercase(),
                }),
                _ => None,
            })
            .collect())
    }
}

/// Who sends the domain's mail: what the records must say depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Resend: SPF and the bounce MX on the Return-Path subdomain (`send.DOMAIN`), DKIM at
    /// `resend._domainkey`.
    Resend,
    /// Any other sender (an SMTP relay): SPF on the domain itself, DKIM at the given selectors.
    Generic,
}

/// What to check.
#[derive(Debug, Clone)]
pub struct Options {
    pub domain: String,
    pub provider: Provider,
    /// DKIM selectors; none: Resend's (`resend`), or for a generic provider the common ones.
    pub selectors: Vec<String>,
    /// The envelope sender's (Return-Path) domain; none: `send.DOMAIN` for Resend, the domain
    /// itself otherwise.
    pub return_path: Option<String>,
    /// Mechanisms the SPF record must include (`include:` domains), beyond the provider's own.
    pub spf_includes: Vec<String>,
    /// The Amazon SES region of a Resend domain (its bounce MX names it).
    pub resend_region: String,
}

/// Selectors tried when none are given for a generic provider.
pub const COMMON_SELECTORS: &[&str] = &[
    "default",
    "google",
    "selector1",
    "selector2",
    "s1",
    "s2",
    "k1",
    "mail",
    "dkim",
    "smtp",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Works, but could be better (or weaker than it looks).
    Warn,
    /// Missing or invalid: receivers will not authenticate the mail with it.
    Fail,
    /// The look-up itself failed: nothing is known.
    Error,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Error => "ERROR",
        }
    }
}

/// A record to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Publish {
    #[serde(rename = "type")]
    pub rtype: &'static str,
    pub name: String,
    pub value: String,
}

/// The verdict on one record.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `spf`, `return_path_mx`, `dkim` or `dmarc`.
    pub check: &'static str,
    /// The name looked up.
    pub name: String,
    pub status: Status,
    /// What was found there (the record), if anything.
    pub found: Vec<String>,
    /// What is right or wrong with it, worst first.
    pub notes: Vec<String>,
    /// The record to publish (or to publish instead), when something is missing or wrong.
    pub publish: Option<Publish>,
}

impl Finding {
    fn new(check: &'static str, name: &str) -> Self {
        Self {
            check,
            name: name.to_owned(),
            status: Status::Pass,
            found: Vec::new(),
            notes: Vec::new(),
            publish: None,
        }
    }

    fn note(&mut self, status: Status, note: impl Into<String>) {
        self.status = self.status.max(status);
        self.notes.push(note.into());
    }

    fn lookup_failed(mut self, e: &DnsError) -> Self {
        self.note(Status::Error, e.to_string());
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub domain: String,
    pub provider: Provider,
    pub findings: Vec<Finding>,
}

impl Report {
    /// Nothing failed (warnings allowed).
    pub fn passed(&self) -> bool {
        self.findings.iter().all(|f| f.status <= Status::Warn)
    }

    pub fn failures(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.status > Status::Warn)
            .count()
    }

    /// The report for a terminal.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let provider = match self.provider {
            Provider::Resend => "Resend",
            Provider::Generic => "a generic sender",
        };
        let mut out = format!(
            "Domain authentication of {} (sent through {provider})\n\n",
            self.domain
        );
        for f in &self.findings {
            let _ = writeln!(
                out,
                "{:<5} {:<6} {}",
                f.status.label(),
                f.check.replace("return_path_mx", "MX").to_uppercase(),
                f.name
            );
            for record in &f.found {
                let _ = writeln!(out, "             found:   {}", printable(record));
            }
            for note in &f.notes {
                let _ = writeln!(out, "             {}", printable(note));
            }
            if let Some(p) = &f.publish {
                let _ = writeln!(
                    out,
                    "             publish: {} {} \"{}\"",
                    p.rtype, p.name, p.value
                );
            }
        }
        let _ = match self.failures() {
            0 => writeln!(out, "\nall required records are in place"),
            n => writeln!(out, "\n{n} of {} checks failed", self.findings.len()),
        };
        out
    }
}

/// DNS text as a terminal may show it: control characters (a forged `\n ok …` line, escape
/// sequences) escaped.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// A domain name as the check takes it: lower case, no trailing dot, letters, digits, hyphens
/// and underscores in dot-separated labels of at most 63 characters.
pub fn normalise_domain(input: &str) -> Result<String, InvalidDomain> {
    let domain = input.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(domain)
    } else {
        Err(InvalidDomain(input.to_owned()))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a domain name (expected something like example.com)")]
pub struct InvalidDomain(pub String);

/// Looks every record up and judges it.
pub async fn check(dns: &impl Dns, options: &Options) -> Report {
    let domain = options.domain.as_str();
    let return_path = options
        .return_path
        .clone()
        .unwrap_or_else(|| match options.provider {
            Provider::Resend => format!("send.{domain}"),
            Provider::Generic => domain.to_owned(),
        });
    let mut includes: Vec<String> = options.spf_includes.clone();
    if options.provider == Provider::Resend && !includes.iter().any(|i| i == "amazonses.com") {
        includes.insert(0, "amazonses.com".into());
    }
    let mut findings = vec![spf(dns, &return_path, &includes).await];
    if options.provider == Provider::Resend {
        findings.push(return_path_mx(dns, &return_path, &options.resend_region).await);
    }
    findings.extend(dkim(dns, options).await);
    findings.push(dmarc(dns, domain, &return_path).await);
    Report {
        domain: domain.to_owned(),
        provider: options.provider,
        findings,
    }
}

fn is_spf(record: &str) -> bool {
    let lower = record.trim_start().to_ascii_lowercase();
    lower == "v=spf1" || lower.starts_with("v=spf1 ")
}

/// RFC 7208 §4.6.4: at most 10 terms that cause DNS look-ups, across every include.
const SPF_LOOKUP_LIMIT: usize = 10;

/// One parsed SPF term.
#[derive(Debug, PartialEq, Eq)]
enum SpfTerm {
    /// `include`, `a`, `mx`, `ptr`, `exists`: one look-up each; `include` is followed.
    Mechanism {
        name: String,
        target: Option<String>,
    },
    /// `redirect=`: one look-up, followed.
    Redirect(String),
    /// `ip4`, `ip6`, `all` and modifiers other than `redirect`: no look-up.
    Other { qualifier: char, name: String },
}

fn parse_spf(record: &str) -> Result<Vec<SpfTerm>, String> {
    let mut terms = Vec::new();
    for raw in record.split_ascii_whitespace().skip(1) {
        if let Some((name, value)) = raw.split_once('=') {
            if !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && !name.contains(':')
            {
                if name.eq_ignore_ascii_case("redirect") {
                    terms.push(SpfTerm::Redirect(value.to_ascii_lowercase()));
                } else {
                    terms.push(SpfTerm::Other {
                        qualifier: '+',
                        name: name.to_ascii_lowercase(),
                    });
                }
                continue;
            }
        }
        let (qualifier, rest) = match raw.chars().next() {
            Some(q @ ('+' | '-' | '~' | '?')) => (q, &raw[1..]),
            _ => ('+', raw),
        };
        let (name, target) = match rest.find([':', '/']) {
            Some(i) if rest.as_bytes()[i] == b':' => {
                (&rest[..i], Some(rest[i + 1..].to_ascii_lowercase()))
            }
            Some(i) => (&rest[..i], None),
            None => (rest, None),
        };
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "include" | "exists" if target.as_deref().is_none_or(str::is_empty) => {
                return Err(format!("`{raw}` needs a domain"));
            }
            "include" | "a" | "mx" | "ptr" | "exists" => {
                terms.push(SpfTerm::Mechanism { name, target })
            }
            "ip4" | "ip6" | "all" => terms.push(SpfTerm::Other { qualifier, name }),
            _ => return Err(format!("`{raw}` is not an SPF mechanism")),
        }
    }
    Ok(terms)
}

/// A record that is one SPF policy and only one.
enum SpfRecord {
    None,
    One(String),
    Many(Vec<String>),
}

fn spf_of(records: Vec<String>) -> SpfRecord {
    let mut spf: Vec<String> = records.into_iter().filter(|r| is_spf(r)).collect();
    match spf.len() {
        0 => SpfRecord::None,
        1 => SpfRecord::One(spf.remove(0)),
        _ => SpfRecord::Many(spf),
    }
}

async fn spf(dns: &impl Dns, name: &str, required_includes: &[String]) -> Finding {
    let mut finding = Finding::new("spf", name);
    let suggested = {
        let mut value = String::from("v=spf1");
        if required_includes.is_empty() {
            value.push_str(" mx");
        }
        for include in required_includes {
            value.push_str(&format!(" include:{include}"));
        }
        value.push_str(" ~all");
        Publish {
            rtype: "TXT",
            name: name.to_owned(),
            value,
        }
    };
    let records = match dns.txt(name).await {
        Ok(r) => r,
        Err(e) => return finding.lookup_failed(&e),
    };
    let record = match spf_of(records) {
        SpfRecord::None => {
            finding.note(
                Status::Fail,
                "no SPF record (a TXT record starting `v=spf1`)",
            );
            if required_includes.is_empty() {
                finding.notes.push(
                    "add `include:` for the service that sends your mail (its documentation names it)"
                        .into(),
                );
            }
            finding.publish = Some(suggested);
            return finding;
        }
        SpfRecord::Many(all) => {
            finding.found = all;
            finding.note(
                Status::Fail,
                "more than one SPF record: receivers treat that as a permanent error (RFC 7208 §4.5); merge them into one",
            );
            finding.publish = Some(suggested);
            return finding;
        }
        SpfRecord::One(r) => r,
    };
    finding.found.push(record.clone());
    let terms = match parse_spf(&record) {
        Ok(t) => t,
        Err(e) => {
            finding.note(Status::Fail, format!("not a valid SPF record: {e}"));
            finding.publish = Some(suggested);
            return finding;
        }
    };
    let top_includes: Vec<&str> = terms
        .iter()
        .filter_map(|t| match t {
            SpfTerm::Mechanism {
                name,
                target: Some(target),
                ..
            } if name == "include" => Some(target.as_str()),
            _ => None,
        })
        .collect();
    let missing: Vec<&String> = required_includes
        .iter()
        .filter(|i| !top_includes.contains(&i.as_str()))
        .collect();
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|i| format!("include:{i}")).collect();
        finding.note(
            Status::Fail,
            format!(
                "does not authorise the sender: {} is missing",
                names.join(", ")
            ),
        );
        finding.publish = Some(Publish {
            rtype: "TXT",
            name: name.to_owned(),
            value: with_includes(&record, &missing),
        });
    }
    match terms.iter().rev().find_map(|t| match t {
        SpfTerm::Other { qualifier, name } if name == "all" => Some(*qualifier),
        _ => None,
    }) {
        Some('+') => finding.note(
            Status::Warn,
            "`+all` lets anyone send as this domain: end with `~all` or `-all`",
        ),
        Some('?') => finding.note(
            Status::Warn,
            "`?all` says nothing about other senders: end with `~all` or `-all`",
        ),
        Some(_) => {}
        None if !terms.iter().any(|t| matches!(t, SpfTerm::Redirect(_))) => finding.note(
            Status::Warn,
            "no `all` at the end: mail from anywhere else is neutral; end with `~all` or `-all`",
        ),
        None => {}
    }
    match count_lookups(dns, name, &terms).await {
        Ok(Lookups::Counted(n)) if n > SPF_LOOKUP_LIMIT => finding.note(
            Status::Fail,
            format!(
                "{n} DNS look-ups (include, a, mx, ptr, exists, redirect, counted through every include): more than {SPF_LOOKUP_LIMIT} is a permanent error (RFC 7208 §4.6.4); flatten some includes"
            ),
        ),
        Ok(Lookups::Counted(n)) => finding
            .notes
            .push(format!("{n} of {SPF_LOOKUP_LIMIT} DNS look-ups used")),
        Ok(Lookups::Broken(why)) => finding.note(Status::Fail, why),
        Err(e) => finding.note(Status::Error, e.to_string()),
    }
    finding
}

/// `record` with `include:` terms added before its `all`.
fn with_includes(record: &str, includes: &[&String]) -> String {
    let mut terms: Vec<String> = record.split_ascii_whitespace().map(str::to_owned).collect();
    let at = terms
        .iter()
        .position(|t| {
            t.trim_start_matches(['+', '-', '~', '?'])
                .eq_ignore_ascii_case("all")
        })
        .unwrap_or(terms.len());
    for (i, include) in includes.iter().enumerate() {
        terms.insert(at + i, format!("include:{include}"));
    }
    terms.join(" ")
}

enum Lookups {
    Counted(usize),
    /// An include or redirect leads nowhere valid.
    Broken(String),
}

/// Counts the look-up terms of `terms` and of every record they include or redirect to,
/// breadth first, stopping once past the limit (which also ends include loops).
async fn count_lookups(dns: &impl Dns, name: &str, terms: &[SpfTerm]) -> Result<Lookups, DnsError> {
    let mut count = 0;
    let mut pending: std::collections::VecDeque<String> = Default::default();
    queue_lookups(terms, &mut count, &mut pending);
    while let Some(target) = pending.pop_front() {
        if count > SPF_LOOKUP_LIMIT {
            break;
        }
        let record = match spf_of(dns.txt(&target).await?) {
            SpfRecord::One(r) => r,
            SpfRecord::None => {
                return Ok(Lookups::Broken(format!(
                    "`{target}` (included from {name}'s policy) has no SPF record: a permanent error for receivers"
                )));
            }
            SpfRecord::Many(_) => {
                return Ok(Lookups::Broken(format!(
                    "`{target}` (included from {name}'s policy) has more than one SPF record: a permanent error for receivers"
                )));
            }
        };
        match parse_spf(&record) {
            Ok(terms) => queue_lookups(&terms, &mut count, &mut pending),
            Err(e) => {
                return Ok(Lookups::Broken(format!(
                    "`{target}`'s SPF record (included) is invalid: {e}"
                )));
            }
        }
    }
    Ok(Lookups::Counted(count))
}

/// Adds the look-ups of `terms` to `count` and the records they lead to to `pending`.
fn queue_lookups(
    terms: &[SpfTerm],
    count: &mut usize,
    pending: &mut std::collections::VecDeque<String>,
) {
    for term in terms {
        match term {
            SpfTerm::Mechanism { name, target, .. } => {
                *count += 1;
                if name == "include" {
                    // A macro (`%{i}`) names a different record for each sender: not followed.
                    if let Some(t) = target.as_ref().filter(|t| !t.contains('%')) {
                        pending.push_back(t.clone());
                    }
                }
            }
            SpfTerm::Redirect(target) => {
                *count += 1;
                if !target.contains('%') {
                    pending.push_back(target.clone());
                }
            }
            SpfTerm::Other { .. } => {}
        }
    }
}

async fn return_path_mx(dns: &impl Dns, name: &str, region: &str) -> Finding {
    let mut finding = Finding::new("return_path_mx", name);
    let expected = format!("feedback-smtp.{region}.amazonses.com");
    let records = match dns.mx(name).await {
        Ok(r) => r,
        Err(e) => return finding.lookup_failed(&e),
    };
    finding.found = records
        .iter()
        .map(|mx| format!("{} {}", mx.preference, mx.exchange))
        .collect();
    let feedback = |mx: &&Mx| {
        mx.exchange.starts_with("feedback-smtp.") && mx.exchange.ends_with(".amazonses.com")
    };
    match records.iter().find(feedback) {
        Some(mx) if mx.exchange == expected => {}
        Some(mx) => finding.note(
            Status::Warn,
            format!(
                "points at {} while the expected region is {region} (check the region Resend shows for the domain)",
                mx.exchange
            ),
        ),
        None => {
            finding.note(
                Status::Fail,
                "no MX record for bounces and complaints: Resend cannot verify the domain without it",
            );
            finding.publish = Some(Publish {
                rtype: "MX",
                name: name.to_owned(),
                value: format!("10 {expected}"),
            });
        }
    }
    finding
}

async fn dkim(dns: &impl Dns, options: &Options) -> Vec<Finding> {
    let domain = options.domain.as_str();
    let (selectors, searching): (Vec<String>, bool) =
        match (&options.provider, options.selectors.is_empty()) {
            (_, false) => (options.selectors.clone(), false),
            (Provider::Resend, true) => (vec!["resend".into()], false),
            (Provider::Generic, true) => (
                COMMON_SELECTORS.iter().map(|s| (*s).to_owned()).collect(),
                true,
            ),
        };
    let placeholder = match options.provider {
        Provider::Resend => "p=<the public key Resend shows for the domain>",
        Provider::Generic => "v=DKIM1; k=rsa; p=<the public key your mail service gives you>",
    };
    let mut findings = Vec::new();
    for selector in &selectors {
        let name = format!("{selector}._domainkey.{domain}");
        let mut finding = Finding::new("dkim", &name);
        let records = match dns.txt(&name).await {
            Ok(r) => r,
            Err(e) => {
                findings.push(finding.lookup_failed(&e));
                continue;
            }
        };
        if records.is_empty() {
            if !searching {
                finding.note(
                    Status::Fail,
                    format!("no DKIM key for selector `{selector}`"),
                );
                finding.publish = Some(Publish {
                    rtype: "TXT",
                    name,
                    value: placeholder.into(),
                });
                findings.push(finding);
            }
            continue;
        }
        finding.found = records.clone();
        if records.len() > 1 {
            finding.note(
                Status::Fail,
                "more than one TXT record: receivers cannot tell which key to use; keep one",
            );
        } else {
            judge_dkim(&records[0], &mut finding);
        }
        if finding.status > Status::Warn {
            finding.publish = Some(Publish {
                rtype: "TXT",
                name,
                value: placeholder.into(),
            });
        }
        findings.push(finding);
    }
    if searching && findings.is_empty() {
        let mut finding = Finding::new("dkim", &format!("<selector>._domainkey.{domain}"));
        finding.note(
            Status::Fail,
            format!(
                "no DKIM key at the common selectors ({}); if your mail service uses another one, pass it with --selector",
                COMMON_SELECTORS.join(", ")
            ),
        );
        finding.publish = Some(Publish {
            rtype: "TXT",
            name: format!("<selector>._domainkey.{domain}"),
            value: placeholder.into(),
        });
        findings.push(finding);
    }
    findings
}

/// `tag=value; …` (DKIM and DMARC records), tags lower case, values trimmed.
fn tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| match t.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_owned()),
            None => (t.to_ascii_lowercase(), String::new()),
        })
        .collect()
}

fn judge_dkim(record: &str, finding: &mut Finding) {
    use base64::Engine as _;
    let tags = tags(record);
    let get = |tag: &str| tags.iter().find(|(k, _)| k == tag).map(|(_, v)| v.as_str());
    if let Some(v) = get("v") {
        if tags[0].0 != "v" || v != "DKIM1" {
            finding.note(
                Status::Fail,
                "`v=` must come first and be `DKIM1` (RFC 6376 §3.6.1)",
            );
        }
    }
    let key_type = get("k").unwrap_or("rsa").to_ascii_lowercase();
    let Some(p) = get("p") else {
        finding.note(Status::Fail, "no public key (`p=`)");
        return;
    };
    let p: String = p.chars().filter(|c| !c.is_whitespace()).collect();
    if p.is_empty() {
        finding.note(Status::Fail, "the key is revoked (`p=` is empty)");
        return;
    }
    let Ok(key) = base64::engine::general_purpose::STANDARD
        .decode(&p)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&p))
    else {
        finding.note(Status::Fail, "the public key (`p=`) is not valid base64");
        return;
    };
    match key_type.as_str() {
        // A 1024-bit RSA SubjectPublicKeyInfo is 162 bytes, 2048-bit 294.
        "rsa" if key.len() < 140 => finding.note(
            Status::Warn,
            format!(
                "the RSA key is short ({} bytes, under 1024 bits): use 2048 bits",
                key.len()
            ),
        ),
        "rsa" if key.len() < 270 => finding.note(
            Status::Warn,
            "the RSA key is about 1024 bits: 2048 bits is recommended (RFC 8301)",
        ),
        "rsa" => finding.notes.push(format!(
            "RSA key, about {} bits",
            (key.len().saturating_sub(38)) * 8
        )),
        "ed25519" if key.len() == 32 => finding.notes.push("Ed25519 key".into()),
        "ed25519" => finding.note(Status::Fail, "an Ed25519 key must be 32 bytes"),
        other => finding.note(Status::Fail, format!("unknown key type `k={other}`")),
    }
    if get("t").is_some_and(|t| t.split(':').any(|f| f.trim() == "y")) {
        finding.note(
            Status::Warn,
            "`t=y`: the domain is testing DKIM, receivers may ignore failures; remove it",
        );
    }
}

/// The last two labels (a stand-in for the organisational domain: no public suffix list).
fn organisational(domain: &str) -> Option<String> {
    let labels: Vec<&str> = domain.split('.').collect();
    (labels.len() > 2).then(|| labels[labels.len() - 2..].join("."))
}

async fn dmarc(dns: &impl Dns, domain: &str, return_path: &str) -> Finding {
    let name = format!("_dmarc.{domain}");
    let mut finding = Finding::new("dmarc", &name);
    let suggested = Publish {
        rtype: "TXT",
        name: name.clone(),
        value: format!("v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}"),
    };
    let is_dmarc = |r: &String| {
        let lower = r.trim_start().to_ascii_lowercase();
        lower.starts_with("v=dmarc1")
            && lower[8..]
                .trim_start()
                .chars()
                .next()
                .is_none_or(|c| c == ';')
    };
    let mut records: Vec<String> = match dns.txt(&name).await {
        Ok(r) => r.into_iter().filter(is_dmarc).collect(),
        Err(e) => return finding.lookup_failed(&e),
    };
    let mut inherited = false;
    if records.is_empty() {
        if let Some(org) = organisational(domain) {
            let org_name = format!("_dmarc.{org}");
            match dns.txt(&org_name).await {
                Ok(r) => {
                    records = r.into_iter().filter(is_dmarc).collect();
                    if !records.is_empty() {
                        inherited = true;
                        finding.name = org_name;
                    }
                }
                Err(e) => return finding.lookup_failed(&e),
            }
        }
    }
    match records.len() {
        0 => {
            finding.note(
                Status::Fail,
                "no DMARC policy: Gmail and Yahoo require one from bulk senders, and without it a forged From is judged by each receiver alone",
            );
            finding.publish = Some(suggested);
            return finding;
        }
        1 => {}
        _ => {
            finding.found = records;
            finding.note(
                Status::Fail,
                "more than one DMARC record: receivers then apply none (RFC 7489 §6.6.3); keep one",
            );
            finding.publish = Some(suggested);
            return finding;
        }
    }
    let record = records.remove(0);
    finding.found.push(record.clone());
    if inherited {
        finding.notes.push(format!(
            "no record at {name}: the organisational domain's applies"
        ));
    }
    let tags = tags(&record);
    let get = |tag: &str| tags.iter().find(|(k, _)| k == tag).map(|(_, v)| v.as_str());
    // A subdomain under an inherited record follows `sp=` when there is one.
    let policy = if inherited {
        get("sp").or(get("p"))
    } else {
        get("p")
    };
    match policy.map(str::to_ascii_lowercase).as_deref() {
        Some("reject") | Some("quarantine") => {}
        Some("none") => finding.note(
            Status::Warn,
            "`p=none` only monitors: once the reports show your mail passing, raise it to `quarantine`, then `reject`",
        ),
        Some(other) => {
            finding.note(
                Status::Fail,
                format!("`p={other}` is not a policy (none, quarantine or reject)"),
            );
            finding.publish = Some(suggested.clone());
        }
        None => {
            finding.note(Status::Fail, "no policy (`p=`) right after `v=DMARC1`");
            finding.publish = Some(suggested.clone());
        }
    }
    if tags.get(1).is_some_and(|(k, _)| k != "p") && !inherited {
        finding.note(
            Status::Fail,
            "`p=` must follow `v=DMARC1` directly (RFC 7489 §6.3)",
        );
        finding.publish = Some(suggested.clone());
    }
    if let Some(pct) = get("pct") {
        match pct.parse::<u8>() {
            Ok(100) => {}
            Ok(n) if n < 100 => finding.note(
                Status::Warn,
                format!("`pct={n}`: the policy applies to {n} % of failing mail only"),
            ),
            _ => finding.note(Status::Fail, format!("`pct={pct}` is not 0–100")),
        }
    }
    if get("rua").is_none() {
        finding.note(
            Status::Warn,
            "no `rua=`: you will get no aggregate reports, so you cannot see who sends as you",
        );
    }
    let relaxed = |tag: &str| !get(tag).is_some_and(|v| v.eq_ignore_ascii_case("s"));
    if return_path != domain && !relaxed("aspf") {
        finding.note(
            Status::Warn,
            format!(
                "`aspf=s`: SPF passes for {return_path}, which strict alignment does not count for {domain}; only DKIM will align"
            ),
        );
    }
    finding
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A zone in a table: names without records answer empty; names in `broken` fail.
    #[derive(Default)]
    struct Zone {
        txt: HashMap<String, Vec<String>>,
        mx: HashMap<String, Vec<Mx>>,
        broken: Vec<String>,
    }

    impl Zone {
        fn txt(mut self, name: &str, value: &str) -> Self {
            self.txt.entry(name.into()).or_default().push(value.into());
            self
        }
        fn mx(mut self, name: &str, exchange: &str) -> Self {
            self.mx.entry(name.into()).or_default().push(Mx {
                preference: 10,
                exchange: exchange.into(),
            });
            self
        }
        fn broken(mut self, name: &str) -> Self {
            self.broken.push(name.into());
            self
        }
        fn fail(&self, name: &str, rtype: &'static str) -> Result<(), DnsError> {
            if self.broken.iter().any(|b| b == name) {
                return Err(DnsError {
                    name: name.into(),
                    rtype,
                    reason: "timed out".into(),
                });
            }
            Ok(())
        }
    }

    impl Dns for Zone {
        async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
            self.fail(name, "TXT")?;
            Ok(self.txt.get(name).cloned().unwrap_or_default())
        }
        async fn mx(&self, name: &str) -> Result<Vec<Mx>, DnsError> {
            self.fail(name, "MX")?;
            Ok(self.mx.get(name).cloned().unwrap_or_default())
        }
    }

    /// A base64 key of `len` bytes: DKIM's judge reads only its encoding and size (a 2048-bit
    /// RSA SubjectPublicKeyInfo is 294 bytes, 1024-bit 162).
    fn key(len: usize) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(vec![0x30; len])
    }

    fn resend(domain: &str) -> Options {
        Options {
            domain: domain.into(),
            provider: Provider::Resend,
            selectors: vec![],
            return_path: None,
            spf_includes: vec![],
            resend_region: "us-east-1".into(),
        }
    }

    fn generic(domain: &str) -> Options {
        Options {
            provider: Provider::Generic,
            ..resend(domain)
        }
    }

    fn resend_zone() -> Zone {
        Zone::default()
            .txt("send.example.com", "v=spf1 include:amazonses.com ~all")
            .txt(
                "amazonses.com",
                "v=spf1 ip4:199.255.192.0/22 ip4:199.127.232.0/22 -all",
            )
            .mx("send.example.com", "feedback-smtp.us-east-1.amazonses.com")
            .txt("resend._domainkey.example.com", &format!("p={}", key(294)))
            .txt(
                "_dmarc.example.com",
                "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com",
            )
    }

    fn finding<'a>(report: &'a Report, check: &str) -> &'a Finding {
        report
            .findings
            .iter()
            .find(|f| f.check == check)
            .unwrap_or_else(|| panic!("no {check} finding in {report:#?}"))
    }

    #[tokio::test]
    async fn a_complete_resend_domain_passes() {
        let report = check(&resend_zone(), &resend("example.com")).await;
        assert!(report.passed(), "{}", report.to_text());
        assert!(
            report.findings.iter().all(|f| f.status == Status::Pass),
            "{report:#?}"
        );
        assert_eq!(finding(&report, "spf").name, "send.example.com");
        assert_eq!(
            finding(&report, "dkim").name,
            "resend._domainkey.example.com"
        );
        assert!(finding(&report, "spf")
            .notes
            .contains(&"1 of 10 DNS look-ups used".to_owned()));
    }

    #[tokio::test]
    async fn an_empty_resend_domain_is_told_every_record_to_publish() {
        let report = check(&Zone::default(), &resend("example.com")).await;
        assert!(!report.passed());
        assert_eq!(report.failures(), 4);
        let publish: Vec<_> = report
            .findings
            .iter()
            .filter_map(|f| f.publish.clone())
            .collect();
        assert_eq!(
            publish,
            vec![
                Publish {
                    rtype: "TXT",
                    name: "send.example.com".into(),
                    value: "v=spf1 include:amazonses.com ~all".into()
                },
                Publish {
                    rtype: "MX",
                    name: "send.example.com".into(),
                    value: "10 feedback-smtp.us-east-1.amazonses.com".into()
                },
                Publish {
                    rtype: "TXT",
                    name: "resend._domainkey.example.com".into(),
                    value: "p=<the public key Resend shows for the domain>".into()
                },
                Publish {
                    rtype: "TXT",
                    name: "_dmarc.example.com".into(),
                    value: "v=DMARC1; p=none; rua=mailto:dmarc-reports@example.com".into()
                },
            ]
        );
        let text = report.to_text();
        assert!(
            text.contains(
                "publish: MX send.example.com \"10 feedback-smtp.us-east-1.amazonses.com\""
            ),
            "{text}"
        );
        assert!(text.contains("4 of 4 checks failed"), "{text}");
    }

    #[tokio::test]
    async fn an_spf_record_without_the_provider_gets_it_added_before_all() {
        let zone = Zone::default()
            .txt("send.example.com", "v=spf1 include:_spf.google.com -all")
            .txt("_spf.google.com", "v=spf1 ip4:1.2.3.0/24 ~all");
        let f = spf(&zone, "send.example.com", &["amazonses.com".into()]).await;
        assert_eq!(f.status, Status::Fail);
        assert_eq!(
            f.publish.map(|p| p.value).as_deref(),
            Some("v=spf1 include:_spf.google.com include:amazonses.com -all")
        );
    }

    #[tokio::test]
    async fn two_spf_records_fail_and_other_txt_records_are_ignored() {
        let zone = Zone::default()
            .txt("example.com", "google-site-verification=abc")
            .txt("example.com", "v=spf1 mx ~all")
            .txt("example.com", "v=spf1 include:amazonses.com ~all");
        let f = spf(&zone, "example.com", &[]).await;
        assert_eq!(f.status, Status::Fail);
        assert_eq!(f.found.len(), 2);
        assert!(f.notes[0].contains("more than one SPF record"));
    }

    #[tokio::test]
    async fn spf_counts_lookups_through_includes_and_fails_past_ten() {
        let mut zone = Zone::default().txt(
            "example.com",
            "v=spf1 include:a.example.net include:b.example.net ~all",
        );
        zone = zone.txt("a.example.net", "v=spf1 a mx include:c.example.net -all");
        zone = zone.txt("b.example.net", "v=spf1 ip4:10.0.0.1 -all");
        zone = zone.txt(
            "c.example.net",
            "v=spf1 mx a:x.example.net exists:%{i}.example.net -all",
        );
        // example.com: 2, a: 3, c: 3 → 8.
        let f = spf(&zone, "example.com", &[]).await;
        assert_eq!(f.status, Status::Pass, "{f:#?}");
        assert!(
            f.notes.contains(&"8 of 10 DNS look-ups used".to_owned()),
            "{f:#?}"
        );

        let zone = Zone::default()
            .txt("example.com", "v=spf1 include:loop.example.net -all")
            .txt("loop.example.net", "v=spf1 a mx include:example.com -all");
        let f = spf(&zone, "example.com", &[]).await;
        assert_eq!(
            f.status,
            Status::Fail,
            "an include loop ends past the limit: {f:#?}"
        );
        assert!(f.notes.iter().any(|n| n.contains("more than 10")), "{f:#?}");
    }

    #[tokio::test]
    async fn spf_includes_that_lead_nowhere_and_bad_terms_fail() {
        let zone = Zone::default().txt("example.com", "v=spf1 include:gone.example.net -all");
        let f = spf(&zone, "example.com", &[]).await;
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.notes
                .iter()
                .any(|n| n.contains("gone.example.net") && n.contains("no SPF record")),
            "{f:#?}"
        );

        for bad in [
            "v=spf1 include: -all",
            "v=spf1 ipv4:1.2.3.4 -all",
            "v=spf1 exists -all",
        ] {
            let zone = Zone::default().txt("example.com", bad);
            let f = spf(&zone, "example.com", &[]).await;
            assert_eq!(f.status, Status::Fail, "{bad}: {f:#?}");
            assert!(
                f.notes[0].starts_with("not a valid SPF record"),
                "{bad}: {f:#?}"
            );
        }
    }

    #[tokio::test]
    async fn spf_warns_about_plus_all_and_a_missing_all() {
        for (record, warning) in [
            ("v=spf1 mx +all", "`+all`"),
            ("v=spf1 mx all", "`+all`"),
            ("v=spf1 mx ?all", "`?all`"),
            ("v=spf1 mx", "no `all`"),
        ] {
            let zone = Zone::default().txt("example.com", record);
            let f = spf(&zone, "example.com", &[]).await;
            assert_eq!(f.status, Status::Warn, "{record}: {f:#?}");
            assert!(
                f.notes.iter().any(|n| n.contains(warning)),
                "{record}: {f:#?}"
            );
        }
        let zone = Zone::default()
            .txt("example.com", "v=spf1 redirect=_spf.example.net")
            .txt("_spf.example.net", "v=spf1 mx -all");
        assert_eq!(spf(&zone, "example.com", &[]).await.status, Status::Pass);
    }

    #[tokio::test]
    async fn a_lookup_that_fails_is_an_error_not_a_missing_record() {
        let zone = resend_zone().broken("resend._domainkey.example.com");
        let report = check(&zone, &resend("example.com")).await;
        let f = finding(&report, "dkim");
        assert_eq!(f.status, Status::Error);
        assert!(
            f.publish.is_none(),
            "nothing is known, so nothing is proposed"
        );
        assert!(f.notes[0].contains("timed out"));
        assert!(!report.passed());
    }

    #[tokio::test]
    async fn dkim_keys_are_judged() {
        for (record, status, note) in [
            (
                format!("v=DKIM1; k=rsa; p={}", key(294)),
                Status::Pass,
                "about 2048 bits",
            ),
            ("v=DKIM1; k=rsa; p=".to_owned(), Status::Fail, "revoked"),
            ("v=DKIM1; k=rsa".to_owned(), Status::Fail, "no public key"),
            (
                "v=DKIM1; p=not*base64".to_owned(),
                Status::Fail,
                "not valid base64",
            ),
            (
                "k=rsa; v=DKIM1; p=AAAA".to_owned(),
                Status::Fail,
                "must come first",
            ),
            (
                "v=DKIM1; k=dsa; p=AAAA".to_owned(),
                Status::Fail,
                "unknown key type",
            ),
            (
                "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".to_owned(),
                Status::Pass,
                "Ed25519",
            ),
            (
                "v=DKIM1; k=ed25519; p=AAAA".to_owned(),
                Status::Fail,
                "32 bytes",
            ),
            (
                format!("v=DKIM1; p={}", key(162)),
                Status::Warn,
                "about 1024 bits",
            ),
            (
                format!("v=DKIM1; p={}", key(100)),
                Status::Warn,
                "under 1024 bits",
            ),
            (
                format!("v=DKIM1; t=y; p={}", key(294)),
                Status::Warn,
                "testing",
            ),
        ] {
            let mut f = Finding::new("dkim", "x");
            judge_dkim(&record, &mut f);
            assert_eq!(f.status, status, "{record}: {f:#?}");
            assert!(f.notes.iter().any(|n| n.contains(note)), "{record}: {f:#?}");
        }
    }

    #[tokio::test]
    async fn a_generic_domain_finds_dkim_at_a_common_selector_or_asks_for_one() {
        let zone = Zone::default()
            .txt("example.com", "v=spf1 include:_spf.mail.example.net -all")
            .txt("_spf.mail.example.net", "v=spf1 ip4:10.1.0.0/16 -all")
            .txt(
                "s1._domainkey.example.com",
                &format!("v=DKIM1; p={}", key(294)),
            )
            .txt(
                "_dmarc.example.com",
                "v=DMARC1; p=reject; rua=mailto:d@example.com",
            );
        let report = check(&zone, &generic("example.com")).await;
        assert!(report.passed(), "{}", report.to_text());
        let dkim: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.check == "dkim")
            .collect();
        assert_eq!(dkim.len(), 1);
        assert_eq!(dkim[0].name, "s1._domainkey.example.com");

        let mut options = generic("example.com");
        options.selectors = vec!["mta1".into()];
        let report = check(&zone, &options).await;
        let f = finding(&report, "dkim");
        assert_eq!(
            (f.name.as_str(), f.status),
            ("mta1._domainkey.example.com", Status::Fail)
        );

        let report = check(&Zone::default(), &generic("example.com")).await;
        let f = finding(&report, "dkim");
        assert_eq!(f.status, Status::Fail);
        assert!(f.notes[0].contains("--selector"), "{f:#?}");
    }

    #[tokio::test]
    async fn dmarc_policies_are_judged() {
        for (record, status, note) in [
            (
                "v=DMARC1; p=reject; rua=mailto:d@example.com",
                Status::Pass,
                None,
            ),
            (
                "v=DMARC1; p=none; rua=mailto:d@example.com",
                Status::Warn,
                Some("only monitors"),
            ),
            ("v=DMARC1; p=quarantine", Status::Warn, Some("no `rua=`")),
            (
                "v=DMARC1; p=block; rua=mailto:d@example.com",
                Status::Fail,
                Some("not a policy"),
            ),
            (
                "v=DMARC1; rua=mailto:d@example.com",
                Status::Fail,
                Some("no policy"),
            ),
            (
                "v=DMARC1; rua=mailto:d@example.com; p=reject",
                Status::Fail,
                Some("directly"),
            ),
            (
                "v=DMARC1; p=reject; pct=20; rua=mailto:d@example.com",
                Status::Warn,
                Some("20 %"),
            ),
            (
                "v=DMARC1; p=reject; pct=300; rua=mailto:d@example.com",
                Status::Fail,
                Some("0–100"),
            ),
            (
                "v=DMARC1; p=reject; aspf=s; rua=mailto:d@example.com",
                Status::Warn,
                Some("only DKIM will align"),
            ),
        ] {
            let zone = Zone::default().txt("_dmarc.example.com", record);
            let f = dmarc(&zone, "example.com", "send.example.com").await;
            assert_eq!(f.status, status, "{record}: {f:#?}");
            if let Some(note) = note {
                assert!(f.notes.iter().any(|n| n.contains(note)), "{record}: {f:#?}");
            }
        }
        let zone = Zone::default()
            .txt(
                "_dmarc.example.com",
                "v=DMARC1; p=reject; rua=mailto:d@example.com",
            )
            .txt("_dmarc.example.com", "v=DMARC1; p=none");
        assert_eq!(
            dmarc(&zone, "example.com", "example.com").await.status,
            Status::Fail
        );
        let zone = Zone::default().txt("_dmarc.example.com", "v=DMARC1x; p=reject");
        assert_eq!(
            dmarc(&zone, "example.com", "example.com").await.status,
            Status::Fail
        );
    }

    #[tokio::test]
    async fn a_subdomain_inherits_the_organisational_policy_and_its_sp() {
        let zone = Zone::default().txt(
            "_dmarc.example.com",
            "v=DMARC1; p=reject; sp=none; rua=mailto:d@example.com",
        );
        let f = dmarc(&zone, "mail.example.com", "mail.example.com").await;
        assert_eq!(f.name, "_dmarc.example.com");
        assert_eq!(
            f.status,
            Status::Warn,
            "sp=none applies to the subdomain: {f:#?}"
        );
        assert!(f.notes[0].contains("organisational domain"));
    }

    #[tokio::test]
    async fn control_characters_in_records_cannot_forge_report_lines() {
        let zone = Zone::default().txt("example.com", "v=spf1 mx ~all\n\x1b[1Aok    DKIM   forged");
        let report = check(&zone, &generic("example.com")).await;
        let text = report.to_text();
        assert!(!text.contains('\x1b'), "{text}");
        assert!(!text.contains("\nok    DKIM   forged"), "{text}");
        assert!(text.contains("\\u{1b}"), "{text}");
    }

    #[test]
    fn domains_are_normalised_and_junk_is_refused() {
        assert_eq!(
            normalise_domain(" Example.COM. ").ok().as_deref(),
            Some("example.com")
        );
        for bad in [
            "",
            "localhost",
            "https://example.com",
            "a..b",
            "-a.com",
            "a b.com",
            "ex@mple.com",
        ] {
            assert!(normalise_domain(bad).is_err(), "{bad}");
        }
    }
}
