//! The command line: `serve` (default), `migrate`, `config check`, `admin create-user`,
//! `admin issue-token`. Exit status 2 means the configuration is invalid; 1 any other failure.

use crate::audit::Actor;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::startup::{self, Application};
use airwave_api::{ApiTokenIn, Role};
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::io::{BufRead as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "airwave-server",
    version,
    about = "AIrWAVE: the API and its workers in one binary"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API and the workers (the default).
    Serve {
        #[arg(long, value_enum, default_value = "all")]
        role: startup::Role,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Administration of users and tokens.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Draw one render's SVG (stdin) to PNG (stdout): what the server runs, in a child process,
    /// for each local render.
    #[command(hide = true)]
    RenderRaster {
        #[arg(long)]
        width: u32,
        #[arg(long)]
        height: u32,
        #[arg(long, default_value_t = 1024)]
        memory_mib: u64,
    },
    /// Error tracking.
    Sentry {
        #[command(subcommand)]
        command: SentryCommand,
    },
    /// E-mail tools.
    Email {
        #[command(subcommand)]
        command: EmailCommand,
    },
    /// Database tools.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Storage tools (see docs/storage.md).
    Storage {
        #[command(subcommand)]
        command: StorageCommand,
    },
    /// Database backups and restores (see docs/backup-restore.md).
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Benchmarks (one `bench=… key=value` line per scenario on stdout).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// The plans of the hot queries (assets by client, executions by status, approvals by
    /// status, asset search) and the indexes they use: PostgreSQL's `EXPLAIN (ANALYZE, BUFFERS)`,
    /// SQLite's `EXPLAIN QUERY PLAN`.
    Explain {
        /// PostgreSQL: plan with sequential scans off (which index would a query use once the
        /// table is large?).
        #[arg(long)]
        no_seqscan: bool,
    },
}

#[derive(Debug, Subcommand)]
enum StorageCommand {
    /// Applies and verifies the bucket's set-up: lifecycle rules (abort incomplete multipart
    /// uploads, expire `tmp/`), CORS for the browser origins in AIRWAVE_CORS_ORIGINS, and the
    /// public access block. Prints what it changed; safe to run again (other rules are kept).
    Setup,
    /// Compares the bucket with the backup bucket (AWS_S3_BACKUP_BUCKET): counts, sizes and
    /// contents (ETags, else sha256 of both). Exit status 1 when a key is missing or differs.
    VerifyBackup {
        /// Hash every object on both sides, even where the ETags agree.
        #[arg(long)]
        deep: bool,
        /// Then copy what is missing or differs from the store to the backup bucket, and check
        /// again.
        #[arg(long)]
        copy_missing: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Takes a backup now (in this process) and prints it; `--drill` restores it into a scratch
    /// database and compares, too.
    Run {
        #[arg(long)]
        drill: bool,
    },
    /// Lists the newest backups with their drills.
    List {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Runs a restore drill of a backup now: restore into scratch, compare tables, time it.
    Verify { id: String },
    /// Restores a backup into the database at `--target` (a sqlite:// path or postgres:// URL).
    /// The live database is refused unless `--force-live` and its name typed to confirm (stop the
    /// server first).
    Restore {
        id: String,
        #[arg(long)]
        target: String,
        #[arg(long)]
        force_live: bool,
        /// The confirmation without a prompt: the live database's name (scripts).
        #[arg(long, value_name = "NAME")]
        confirm: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum SentryCommand {
    /// Sends one test event to `SENTRY_DSN` and waits until it has left (prints its id).
    Test,
}

#[derive(Debug, Subcommand)]
enum EmailCommand {
    /// Looks up the sending domain's SPF, DKIM and DMARC records and says what is missing, with
    /// the record to publish. Exit status 1 when a required record is missing, invalid or could
    /// not be looked up.
    CheckDomain {
        /// The domain (default: that of AIRWAVE_EMAIL_FROM).
        domain: Option<String>,
        /// Who sends the mail (default: resend when the transport is Resend, else generic).
        #[arg(long, value_enum)]
        provider: Option<crate::email::domain::Provider>,
        /// A DKIM selector to check (repeatable; default: `resend`, or the common selectors).
        #[arg(long = "selector", value_name = "SELECTOR")]
        selectors: Vec<String>,
        /// The Return-Path (envelope sender) domain (default: send.DOMAIN for Resend, else DOMAIN).
        #[arg(long, value_name = "DOMAIN")]
        return_path: Option<String>,
        /// A domain the SPF record must include (repeatable), e.g. your SMTP relay's.
        #[arg(long = "spf-include", value_name = "DOMAIN")]
        spf_includes: Vec<String>,
        /// The Amazon SES region of the Resend domain (its bounce MX names it).
        #[arg(long, default_value = "us-east-1")]
        resend_region: String,
        /// Ask this name server (IP:PORT) instead of the system's resolver.
        #[arg(long, value_name = "IP:PORT")]
        nameserver: Option<std::net::SocketAddr>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// The job queue: enqueue (single, bulk), processing at each concurrency (also with 20 % of
    /// jobs failing once), and pickup latency. postgres uses DATABASE_URL; redis uses REDIS_URL.
    Queue {
        #[arg(long, value_enum)]
        backend: crate::bench::Backend,
        #[arg(long, default_value_t = 10_000)]
        jobs: usize,
        /// Comma-separated concurrencies for the processing scenarios.
        #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
        concurrency: Vec<usize>,
        #[arg(long, default_value_t = 200)]
        latency_samples: usize,
    },
    /// E-mail: template rendering per core, a plain lettre loop to `SMTP_URL`, and the same
    /// messages recorded and sent by the `email` queue's worker (messages/s, recorded→accepted).
    Email {
        #[arg(long, default_value_t = 10_000)]
        messages: usize,
        #[arg(long, default_value_t = 10)]
        concurrency: usize,
    },
    /// Webhooks: `--events` events fanned out to `--endpoints` endpoints on a local receiver
    /// (events × endpoints deliveries) through the real pipeline on the chosen queue backend,
    /// next to the receiver's ceiling with a plain client (deliveries/s, event→attempt p50/p99).
    Webhooks {
        #[arg(long, value_enum)]
        backend: crate::bench::Backend,
        #[arg(long, default_value_t = 100)]
        events: usize,
        #[arg(long, default_value_t = 100)]
        endpoints: usize,
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
    },
    /// Backups: a backup and its drill of a database with at least `--assets` assets (seeded once),
    /// next to plain pg_dump/pg_restore of the same database (PostgreSQL, DATABASE_URL).
    Backup {
        #[arg(long, default_value_t = 1_000_000)]
        assets: u64,
    },
    /// Uploads: one file of `--mib` MiB written raw to disk (the limit), put straight into the
    /// configured store, uploaded in one request, and through tus; throughput and peak RSS growth.
    /// The server runs in this process on AIRWAVE_BIND (use 127.0.0.1:0).
    Upload {
        #[arg(long, default_value_t = 5120)]
        mib: u64,
        /// The tus scenario's PATCH size.
        #[arg(long, default_value_t = 256)]
        chunk_mib: u64,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the environment and print the effective configuration, secrets redacted.
    Check,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create a user. The password comes from AIRWAVE_ADMIN_PASSWORD, or the first line of stdin.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "admin")]
        role: Role,
        #[arg(long, default_value = "Administrator")]
        name: String,
    },
    /// Issue an API token for a user and print it (alone, on stdout). It is shown only once.
    IssueToken {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// The token's role (default: the user's role; never more than it).
        #[arg(long)]
        role: Option<Role>,
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
}

/// Parses the command line, runs the command, and maps failures to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A rasterising child: no configuration, no runtime, nothing but the drawing.
    if let Some(Command::RenderRaster {
        width,
        height,
        memory_mib,
    }) = cli.command
    {
        return crate::render::local::child_main(width, height, memory_mib);
    }
    let config = match Config::from_process_env() {
        Ok(c) => c,
        Err(errors) => {
            eprint!("airwave-server: {errors}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Sentry {
        command: SentryCommand::Test,
    }) = cli.command
    {
        return match crate::tracking::send_test(&config.tracking) {
            Ok(id) => {
                println!("sentry test event sent: {id}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("airwave-server: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // Error tracking first (its panic hook and transport), then logging, which feeds it.
    let sentry = crate::tracking::init(&config.tracking);
    crate::telemetry::init(config.log_json, sentry.is_some());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("airwave-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("airwave-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_backup(b: &airwave_api::BackupOut) {
    let drill = b
        .latest_drill
        .as_ref()
        .map_or("no drill".to_owned(), print_drill);
    println!(
        "{}  {:<9} {:<9} {:>12} bytes  sha256 {}  {} ms  {}",
        b.id,
        <&str>::from(b.status),
        b.trigger,
        b.size_bytes.unwrap_or(0),
        b.sha256.as_deref().unwrap_or("-"),
        b.duration_ms.unwrap_or(0),
        drill
    );
    if let Some(e) = &b.error {
        println!("    error: {e}");
    }
}

fn print_drill(d: &airwave_api::DrillOut) -> String {
    let mut s = format!(
        "drill {} {}: restore (RTO) {} ms, data age (RPO) {} s, {} tables checked",
        d.id,
        <&str>::from(d.status),
        d.restore_ms.unwrap_or(0),
        d.rpo_seconds.unwrap_or(0),
        d.tables_checked.unwrap_or(0)
    );
    for m in &d.mismatches {
        s.push_str(&format!("\n    mismatch: {m}"));
    }
    if let Some(e) = &d.error {
        s.push_str(&format!("\n    error: {e}"));
    }
    s
}

async fn backup(config: Config, command: BackupCommand) -> anyhow::Result<()> {
    // A restore needs only the blob store (the backup's manifest is there): the live database
    // may be the one lost, and is neither opened nor migrated.
    if let BackupCommand::Restore {
        id,
        target,
        force_live,
        confirm,
    } = command
    {
        let live_name = config.database.url.database_name();
        if force_live {
            let typed = match confirm {
                Some(c) => c,
                None => {
                    eprint!(
                        "This overwrites the live database `{live_name}`. Type its name to go on: "
                    );
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim().to_owned()
                }
            };
            if typed != live_name {
                anyhow::bail!(
                    "not confirmed: `{typed}` is not `{live_name}`; nothing was restored"
                );
            }
        }
        let stats = crate::backups::restore_into(&config, &id, &target, force_live).await?;
        let rows: i64 = stats.iter().map(|t| t.rows).sum();
        println!(
            "restored {id} into {}: {} tables, {rows} rows",
            redact(&target),
            stats.len()
        );
        return Ok(());
    }
    let state = startup::build_state(config, Arc::new(SystemClock)).await?;
    match command {
        BackupCommand::Run { drill } => {
            let id = crate::backups::insert_for_cli(&state).await?;
            let ran = crate::backups::run_backup(&state, id.as_str()).await;
            let b = crate::backups::get(&state, id.as_str()).await?;
            print_backup(&b);
            ran?;
            if drill {
                let d = crate::backups::drill_for_cli(&state, id.as_str()).await?;
                println!("{}", print_drill(&d));
                if d.status != airwave_api::DrillStatus::Passed {
                    anyhow::bail!("the drill failed");
                }
            }
            Ok(())
        }
        BackupCommand::List { limit } => {
            for b in crate::backups::list(&state, limit.clamp(1, 200)).await? {
                print_backup(&b);
            }
            Ok(())
        }
        BackupCommand::Verify { id } => {
            let d = crate::backups::drill_for_cli(&state, &id).await?;
            println!("{}", print_drill(&d));
            if d.status != airwave_api::DrillStatus::Passed {
                anyhow::bail!("the drill failed");
            }
            Ok(())
        }
        BackupCommand::Restore { .. } => unreachable!("handled above"),
    }
}

/// A target URL without its password, for printing.
fn redact(target: &str) -> String {
    match url::Url::parse(target) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => target.to_owned(),
    }
}

async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve {
        role: startup::Role::All,
    }) {
        Command::Serve { role } => {
            let stop = startup::shutdown_signal()?;
            let app = Application::build(config, role).await?;
            if let Some(addr) = app.local_addr() {
                tracing::info!(%addr, db = app.state().db.kind(), "airwave-server listening");
                // The one line on stdout: scripts and tests read the address from it.
                println!("airwave-server listening on http://{addr}");
                std::io::stdout().flush().ok();
            }
            app.run_until_stopped(stop).await
        }
        Command::Migrate => {
            let state = startup::build_state(config, Arc::new(SystemClock)).await?;
            println!("migrations applied ({})", state.db.kind());
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            print!("{}", config.describe());
            println!("configuration is valid");
            Ok(())
        }
        Command::Admin { command } => admin(config, command).await,
        Command::Email { command } => email(&config, command).await,
        Command::Backup { command } => backup(config, command).await,
        Command::Storage { command } => storage(&config, command).await,
        Command::Db {
            command: DbCommand::Explain { no_seqscan },
        } => {
            let db = crate::db::Db::connect(&config.database).await?;
            for p in crate::db::explain::explain(&db, no_seqscan).await? {
                let uses = if p.indexes.is_empty() {
                    "no index".to_owned()
                } else {
                    p.indexes.join(", ")
                };
                println!("== {} ({}): uses {uses}", p.name, db.kind());
                println!("{}", p.sql);
                for line in &p.lines {
                    println!("  {line}");
                }
            }
            Ok(())
        }
        // Handled in `main`, before configuration and the runtime.
        Command::RenderRaster { .. } => anyhow::bail!("render-raster runs on its own"),
        Command::Sentry { .. } => anyhow::bail!("sentry test runs on its own"),
        Command::Bench {
            command:
                BenchCommand::Queue {
                    backend,
                    jobs,
                    concurrency,
                    latency_samples,
                },
        } => {
            crate::bench::queue(&config, backend, jobs, &concurrency, latency_samples.max(1)).await
        }
        Command::Bench {
            command:
                BenchCommand::Webhooks {
                    backend,
                    events,
                    endpoints,
                    concurrency,
                },
        } => crate::webhooks::bench::run(&config, backend, events, endpoints, concurrency).await,
        Command::Bench {
            command: BenchCommand::Backup { assets },
        } => crate::backups::bench::run(config, assets).await,
        Command::Bench {
            command: BenchCommand::Upload { mib, chunk_mib },
        } => crate::storage::bench::run(config, mib.max(1), chunk_mib.max(1)).await,
        Command::Bench {
            command:
                BenchCommand::Email {
                    messages,
                    concurrency,
                },
        } => crate::email::bench::run(&config, messages, concurrency).await,
    }
}

async fn email(config: &Config, command: EmailCommand) -> anyhow::Result<()> {
    use crate::email::domain::{self, HickoryDns, Provider};
    let EmailCommand::CheckDomain {
        domain,
        provider,
        selectors,
        return_path,
        spf_includes,
        resend_region,
        nameserver,
        json,
    } = command;
    let domain = match domain {
        Some(d) => d,
        None => config
            .email
            .from
            .parse::<lettre::message::Mailbox>()
            .map(|m| m.email.domain().to_owned())
            .context("AIRWAVE_EMAIL_FROM has no domain: name one")?,
    };
    let domain = domain::normalise_domain(&domain)?;
    let return_path = return_path
        .as_deref()
        .map(domain::normalise_domain)
        .transpose()?;
    let spf_includes = spf_includes
        .iter()
        .map(|d| domain::normalise_domain(d))
        .collect::<Result<Vec<_>, _>>()?;
    let provider = provider.unwrap_or(match config.email.transport {
        crate::email::settings::TransportConfig::Resend { .. } => Provider::Resend,
        _ => Provider::Generic,
    });
    let options = domain::Options {
        domain,
        provider,
        selectors,
        return_path,
        spf_includes,
        resend_region,
    };
    let dns = match nameserver {
        Some(addr) => HickoryDns::at(addr)?,
        None => HickoryDns::system()?,
    };
    let report = domain::check(&dns, &options).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    std::io::stdout().flush().ok();
    if !report.passed() {
        anyhow::bail!(
            "the domain's authentication is incomplete: {} of {} checks failed",
            report.failures(),
            report.findings.len()
        );
    }
    Ok(())
}

async fn admin(config: Config, command: AdminCommand) -> anyhow::Result<()> {
    let state = startup::build_state(config, Arc::new(SystemClock)).await?;
    let cli_actor = Actor::default();
    match command {
        AdminCommand::CreateUser { email, role, name } => {
            let password = match std::env::var("AIRWAVE_ADMIN_PASSWORD") {
                Ok(p) if !p.is_empty() => p,
                _ => {
                    let mut line = String::new();
                    std::io::stdin()
                        .lock()
                        .read_line(&mut line)
                        .context("cannot read the password from stdin")?;
                    line.trim_end_matches(['\n', '\r']).to_owned()
                }
            };
            let user = crate::auth::create_user(&state, &email, &password, &name, role, &cli_actor)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "created {} ({}) with role {}",
                user.email, user.id, user.role
            );
        }
        AdminCommand::IssueToken {
            email,
            name,
            role,
            expires_in_days,
        } => {
            let user = crate::auth::find_by_email(&state, &email)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .ok_or_else(|| anyhow::anyhow!("no user with e-mail address {email}"))?;
            let user_id = user.id.clone().try_into().map_err(anyhow::Error::new)?;
            let input = ApiTokenIn {
                name,
                role,
                expires_in_days,
            };
            let actor = Actor {
                user_id: Some(user.id.clone()),
                ..cli_actor
            };
            let created = crate::auth::issue_token(&state, &user_id, user.role, &input, &actor)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", created.token);
        }
    }
    state.db.close().await;
    Ok(())
}

async fn storage(config: &Config, command: StorageCommand) -> anyhow::Result<()> {
    use crate::storage::settings::StorageConfig;
    match command {
        StorageCommand::Setup => {
            let StorageConfig::S3(options) = &config.storage else {
                println!("storage: the folder backend needs no set-up (set AWS_S3_BUCKET for S3)");
                return Ok(());
            };
            let store = crate::storage::s3::S3Store::connect(options).await;
            println!("storage setup: bucket {}", options.bucket);
            let wanted = crate::storage::setup::Wanted::from_config(config);
            let steps = crate::storage::setup::run(&store, &wanted).await?;
            for s in &steps {
                println!("{}", s.line);
            }
            let mut changed = steps.iter().filter(|s| s.changed).count();
            // The backup bucket: the same, but no browser ever reaches it.
            if let Some(b) = &config.backup_bucket {
                let copy = crate::storage::s3::S3Store::connect(&b.options).await;
                println!("storage setup: backup bucket {}", b.options.bucket);
                let wanted = crate::storage::setup::Wanted {
                    cors_origins: Vec::new(),
                    ..wanted
                };
                let steps = crate::storage::setup::run(&copy, &wanted).await?;
                for s in &steps {
                    println!("{}", s.line);
                }
                changed += steps.iter().filter(|s| s.changed).count();
            }
            println!("storage setup: {changed} change(s), every part read back and verified");
            Ok(())
        }
        StorageCommand::VerifyBackup { deep, copy_missing } => {
            let (StorageConfig::S3(options), Some(backup)) =
                (&config.storage, &config.backup_bucket)
            else {
                anyhow::bail!("no backup bucket: set AWS_S3_BACKUP_BUCKET (S3 storage only)");
            };
            let store = crate::storage::s3::S3Store::connect(options).await;
            let copy = crate::storage::s3::S3Store::connect(&backup.options).await;
            println!(
                "verify-backup: {} against {}{}",
                options.bucket,
                backup.options.bucket,
                if deep {
                    " (deep: every object hashed)"
                } else {
                    ""
                }
            );
            let mut report = crate::storage::verify::verify(&store, &copy, deep).await?;
            for line in report.lines() {
                println!("{line}");
            }
            if copy_missing && !report.ok() {
                let n = crate::storage::verify::copy_missing(&store, &copy, &report).await?;
                println!(
                    "copied: {n} object(s) from the store to the backup bucket; checking again"
                );
                report = crate::storage::verify::verify(&store, &copy, deep).await?;
                for line in report.lines() {
                    println!("{line}");
                }
            }
            if !report.ok() {
                anyhow::bail!(
                    "the backup bucket is not a copy of the store: {} missing, {} of another size, {} with other contents",
                    report.missing.len(),
                    report.size_differs.len(),
                    report.content_differs.len()
                );
            }
            println!("verify-backup: OK, every object of the store has an equal copy");
            Ok(())
        }
    }
}
