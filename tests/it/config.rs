//! The configuration contract: bad settings exit 2 naming each variable; secrets never print.

use airwave_tests::server_bin;
use std::process::Command;

fn run(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(server_bin())
        .args(args)
        .env_clear()
        .env("AIRWAVE_DATA_DIR", dir.path())
        .env("AIRWAVE_BIND", "127.0.0.1:0")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn an_unknown_database_scheme_exits_2_naming_database_url() {
    let out = run(&[("DATABASE_URL", "bogus://x")], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATABASE_URL"));
}

#[test]
fn production_without_jwt_secret_exits_2_naming_it() {
    let out = run(
        &[
            ("AIRWAVE_ENV", "production"),
            ("AIRWAVE_PUBLIC_URL", "https://ops.example.com"),
        ],
        &["serve"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("JWT_SECRET"), "{err}");
}

#[test]
fn every_problem_is_named_in_one_run() {
    let out = run(
        &[
            ("DATABASE_URL", "bogus://x"),
            ("AIRWAVE_ENV", "production"),
            ("REDIS_URL", "nope"),
            ("AIRWAVE_DB_MAX_CONNECTIONS", "0"),
        ],
        &["config", "check"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for name in [
        "DATABASE_URL",
        "JWT_SECRET",
        "REDIS_URL",
        "AIRWAVE_DB_MAX_CONNECTIONS",
        "AIRWAVE_PUBLIC_URL",
    ] {
        assert!(err.contains(name), "{name} not named in:\n{err}");
    }
}

#[test]
fn config_check_prints_the_effective_configuration_without_secrets() {
    let out = run(
        &[
            (
                "JWT_SECRET",
                "a-very-long-secret-that-must-never-print-0123456789",
            ),
            ("CREATOMATE_API_KEY", "cm_secret_key_value"),
            (
                "DATABASE_URL",
                "postgres://app:pg-password-here@db.internal:5432/airwave",
            ),
            (
                "REDIS_URL",
                "redis://:redis-secret-value@cache.internal:6379",
            ),
        ],
        &["config", "check"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("db.internal") && text.contains("cache.internal"));
    for secret in [
        "never-print",
        "cm_secret_key_value",
        "pg-password-here",
        "redis-secret-value",
    ] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
}

#[test]
fn s3_storage_settings_are_checked_and_its_secret_never_prints() {
    let out = run(
        &[
            ("AWS_S3_BUCKET", "airwave-blobs"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_S3_FORCE_PATH_STYLE", "on"),
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "s3-secret-that-must-never-print"),
        ],
        &["config", "check"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("AWS_S3_BUCKET"), "{stdout}");
    assert!(
        !stdout.contains("s3-secret-that-must-never-print"),
        "{stdout}"
    );

    // Half a credential pair, an s3 backend without a bucket, a plain-http remote endpoint in
    // production: each named.
    let out = run(
        &[
            ("AIRWAVE_ENV", "production"),
            ("AIRWAVE_PUBLIC_URL", "https://ops.example.com"),
            (
                "JWT_SECRET",
                "a-very-long-secret-that-must-never-print-0123456789",
            ),
            ("AIRWAVE_STORAGE_BACKEND", "s3"),
            ("AWS_ENDPOINT_URL", "http://s3.example.com"),
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
        ],
        &["config", "check"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "AIRWAVE_STORAGE_BACKEND is `s3` but AWS_S3_BUCKET is not set",
        "AWS_ENDPOINT_URL must be https:// in production",
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together",
    ] {
        assert!(err.contains(expected), "`{expected}` not in:\n{err}");
    }
}
