//! `airwave-server email check-domain` against a local DNS answerer: the real binary, its real
//! resolver (hickory) over UDP to loopback, answers built with hickory-proto.

use crate::dns::{Answerer, Zone};
use airwave_tests::server_bin;

async fn check_domain(dns: &Answerer, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let nameserver = dns.addr.to_string();
    tokio::process::Command::new(server_bin())
        .args(["email", "check-domain", "--nameserver", &nameserver])
        .args(args)
        .env_clear()
        .env("AIRWAVE_DATA_DIR", dir.path())
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap()
}

/// A DKIM record longer than one character-string (255 bytes), split as DNS hosts publish it.
fn long_dkim_record() -> (String, String) {
    let key = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA".to_owned() + &"A".repeat(344);
    let record = format!("p={key}");
    let (a, b) = record.split_at(200);
    (a.to_owned(), b.to_owned())
}

fn resend_zone() -> Zone {
    let (dkim_a, dkim_b) = long_dkim_record();
    Zone::default()
        .txt("send.example.com", &["v=spf1 include:amazonses.com ~all"])
        .txt(
            "amazonses.com",
            &["v=spf1 ip4:199.255.192.0/22 ip4:199.127.232.0/22 -all"],
        )
        .mx("send.example.com", "feedback-smtp.us-east-1.amazonses.com.")
        .txt("resend._domainkey.example.com", &[&dkim_a, &dkim_b])
        .txt("example.com", &["google-site-verification=abc"])
        .txt(
            "_dmarc.example.com",
            &["v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com"],
        )
}

#[tokio::test]
async fn a_complete_resend_domain_passes_from_the_configured_sender() {
    let dns = Answerer::start(resend_zone()).await;
    // No domain given: the From address's; Resend configured: Resend's records.
    let env = [
        ("AIRWAVE_EMAIL_FROM", "AIrWAVE <notifications@Example.com>"),
        ("RESEND_API_KEY", "re_test_key"),
    ];
    let out = check_domain(&dns, &env, &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Domain authentication of example.com (sent through Resend)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("all required records are in place"),
        "{stdout}"
    );

    let out = check_domain(&dns, &env, &["--json"]).await;
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings: Vec<(&str, &str, &str)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["check"].as_str().unwrap(),
                f["name"].as_str().unwrap(),
                f["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        findings,
        vec![
            ("spf", "send.example.com", "pass"),
            ("return_path_mx", "send.example.com", "pass"),
            ("dkim", "resend._domainkey.example.com", "pass"),
            ("dmarc", "_dmarc.example.com", "pass"),
        ]
    );
    // The two character-strings of the DKIM record were read as one.
    let dkim = &report["findings"][2]["found"][0];
    assert_eq!(dkim.as_str().map(str::len), Some(2 + 44 + 344), "{dkim}");
}

#[tokio::test]
async fn a_bare_domain_fails_and_is_told_each_record_to_publish() {
    let dns = Answerer::start(resend_zone()).await;
    let out = check_domain(&dns, &[], &["example.org", "--provider", "resend"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    for line in [
        "publish: TXT send.example.org \"v=spf1 include:amazonses.com ~all\"",
        "publish: MX send.example.org \"10 feedback-smtp.us-east-1.amazonses.com\"",
        "publish: TXT resend._domainkey.example.org \"p=<the public key Resend shows for the domain>\"",
        "publish: TXT _dmarc.example.org \"v=DMARC1; p=none; rua=mailto:dmarc-reports@example.org\"",
        "4 of 4 checks failed",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in\n{stdout}");
    }
    assert!(stderr.contains("4 of 4 checks failed"), "{stderr}");
}

#[tokio::test]
async fn a_generic_sender_is_checked_on_the_domain_itself_with_its_selector() {
    let zone = Zone::default()
        .txt("example.net", &["v=spf1 include:relay.example.com -all"])
        .txt("relay.example.com", &["v=spf1 ip4:10.0.0.0/8 -all"])
        .txt(
            "mta1._domainkey.example.net",
            &["v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="],
        )
        .txt(
            "_dmarc.example.net",
            &["v=DMARC1; p=none; rua=mailto:d@example.net"],
        );
    let dns = Answerer::start(zone).await;
    let args = [
        "example.net",
        "--selector",
        "mta1",
        "--spf-include",
        "relay.example.com",
    ];
    let out = check_domain(&dns, &[("SMTP_URL", "smtp://127.0.0.1:2525")], &args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "warnings do not fail: {stdout}");
    assert!(
        stdout.contains("(sent through a generic sender)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warn  DMARC  _dmarc.example.net"),
        "{stdout}"
    );
    assert!(stdout.contains("`p=none` only monitors"), "{stdout}");
    assert!(
        stdout.contains("ok    DKIM   mta1._domainkey.example.net"),
        "{stdout}"
    );

    // The relay's include missing: named, and the record with it added.
    let out = check_domain(
        &dns,
        &[],
        &[
            "example.net",
            "--selector",
            "mta1",
            "--spf-include",
            "mail.example.org",
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("publish: TXT example.net \"v=spf1 include:relay.example.com include:mail.example.org -all\""),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_failing_lookup_is_reported_as_unknown_not_as_missing() {
    let dns = Answerer::start(resend_zone().failing("_dmarc.example.com")).await;
    let out = check_domain(&dns, &[], &["example.com", "--provider", "resend"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("ERROR DMARC  _dmarc.example.com"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("publish: TXT _dmarc"),
        "nothing is proposed for what could not be read: {stdout}"
    );
    assert!(stdout.contains("1 of 4 checks failed"), "{stdout}");
}

#[tokio::test]
async fn a_name_that_is_not_a_domain_is_refused_before_any_lookup() {
    let dns = Answerer::start(Zone::default()).await;
    for bad in ["https://example.com", "example", "exa mple.com"] {
        let out = check_domain(&dns, &[], &[bad]).await;
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("is not a domain name"), "{bad}: {stderr}");
        assert!(out.stdout.is_empty(), "{bad}");
    }
}
