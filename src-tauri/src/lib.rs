//! The Tauri shell: typed commands that call `airwave-console-core`, the live stream forwarded to
//! the window as events, native notifications and the tray. No logic lives here that the core
//! could hold; the webview never sees a token (the core keeps it in the OS keychain and makes
//! every request itself).

pub mod backups;
pub mod commands;
pub mod emails;
pub mod errors;
pub mod webhooks;

use airwave_api::HealthStatus;
use airwave_console_core::alerts::{tray_icon_rgba, Alerter, Prefs, StatusBoard};
use airwave_console_core::profiles::Profiles;
use airwave_console_core::secrets::{KeyringStore, SecretStore};
use std::path::PathBuf;
use std::sync::Mutex;
use tauri::menu::{Menu, MenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{Builder, Manager, Runtime};

/// What the commands share.
pub struct Console {
    pub profiles: tokio::sync::Mutex<Profiles>,
    pub secrets: std::sync::Arc<dyn SecretStore>,
    pub alerter: Mutex<Alerter>,
    /// Each component's status, for the tray icon's colour.
    pub board: Mutex<StatusBoard>,
    pub prefs: Mutex<Prefs>,
    /// Where the notification preferences are kept (`prefs.json` in the config dir).
    pub prefs_path: PathBuf,
    /// The running stream subscription (one at a time: the active profile's).
    pub stream: Mutex<Option<tauri::async_runtime::JoinHandle<()>>>,
    /// The local sidecar server, when the console started one.
    pub local: tokio::sync::Mutex<Option<airwave_console_core::local::LocalServer>>,
}

impl Console {
    pub fn new(
        config_dir: PathBuf,
        secrets: std::sync::Arc<dyn SecretStore>,
    ) -> Result<Self, airwave_console_core::Error> {
        Ok(Self {
            profiles: tokio::sync::Mutex::new(Profiles::load(&config_dir.join("profiles.json"))?),
            secrets,
            alerter: Mutex::new(Alerter::default()),
            board: Mutex::new(StatusBoard::default()),
            // Unreadable or absent preferences are the defaults (nothing in them is secret).
            prefs: Mutex::new(
                std::fs::read_to_string(config_dir.join("prefs.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default(),
            ),
            prefs_path: config_dir.join("prefs.json"),
            stream: Mutex::new(None),
            local: tokio::sync::Mutex::new(None),
        })
    }
}

/// The console's config dir (`~/.config/airwave-ops` on Linux), or `AIRWAVE_CONSOLE_CONFIG_DIR`.
pub fn config_dir() -> PathBuf {
    std::env::var_os("AIRWAVE_CONSOLE_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            dirs::config_dir()
                .unwrap_or_else(std::env::temp_dir)
                .join("airwave-ops")
        })
}

/// Commands and shared state, for the app and for mock-runtime tests alike.
pub fn configure<R: Runtime>(builder: Builder<R>, console: Console) -> Builder<R> {
    builder
        .manage(console)
        .invoke_handler(tauri::generate_handler![
            commands::profiles,
            commands::add_profile,
            commands::select_profile,
            commands::login,
            commands::logout,
            commands::health,
            commands::history_chart,
            commands::connect,
            commands::set_prefs,
            commands::pause_notifications,
            commands::queues,
            commands::uptime_chart,
            commands::queue_chart,
            commands::depth_chart,
            commands::remove_profile,
            commands::prefs,
            commands::report_error,
            commands::me,
            commands::job,
            emails::emails,
            emails::email,
            emails::resend_email,
            emails::email_templates,
            emails::email_preview,
            emails::suppressions,
            emails::add_suppression,
            emails::remove_suppression,
            webhooks::webhook_endpoints,
            webhooks::webhook_endpoint,
            webhooks::webhook_messages,
            webhooks::webhook_message,
            webhooks::replay_webhook,
            webhooks::recover_webhooks,
            webhooks::webhook_recovery,
            webhooks::rotate_webhook_secret,
            webhooks::revoke_previous_webhook_secret,
            webhooks::test_webhook,
            webhooks::set_webhook_enabled,
            backups::backups,
            backups::backup,
            backups::run_backup,
            backups::verify_backup,
            backups::drill,
            backups::backups_summary,
        ])
}

fn tray<R: Runtime>(app: &tauri::App<R>) -> tauri::Result<()> {
    let open = MenuItem::with_id(app, "open", "Open AIrWAVE Ops", true, None::<&str>)?;
    let pause = MenuItem::with_id(
        app,
        "pause",
        "Pause notifications for 1 hour",
        true,
        None::<&str>,
    )?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let menu = Menu::with_items(app, &[&open, &pause, &quit])?;
    let mut tray = TrayIconBuilder::with_id("status")
        .menu(&menu)
        .tooltip("AIrWAVE Ops");
    tray = tray.icon(tauri::image::Image::new_owned(
        tray_icon_rgba(None, TRAY_ICON_SIZE),
        TRAY_ICON_SIZE,
        TRAY_ICON_SIZE,
    ));
    tray.on_menu_event(|app, event| match event.id.as_ref() {
        "open" => open_view(app, "overview"),
        "pause" => commands::pause_for(app.state::<Console>().inner(), chrono::Duration::hours(1)),
        "quit" => app.exit(0),
        _ => {}
    })
    .build(app)?;
    Ok(())
}

const TRAY_ICON_SIZE: u32 = 32;

/// Colours the tray icon by the overall status when a component's status changes it.
pub fn set_tray_status<R: Runtime>(
    app: &tauri::AppHandle<R>,
    component: &str,
    status: HealthStatus,
) {
    let changed = app
        .state::<Console>()
        .board
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .update(component, status);
    if let (Some(overall), Some(tray)) = (changed, app.tray_by_id("status")) {
        let icon = tauri::image::Image::new_owned(
            tray_icon_rgba(Some(overall), TRAY_ICON_SIZE),
            TRAY_ICON_SIZE,
            TRAY_ICON_SIZE,
        );
        let _ = tray.set_icon(Some(icon));
        let _ = tray.set_tooltip(Some(format!("AIrWAVE Ops — {overall:?}")));
    }
}

/// Shows the window at `view` when the user clicks the notification (Linux: the notification
/// server's action signal, waited for on a thread of its own; elsewhere clicks just focus the app).
#[cfg(all(unix, not(target_os = "macos")))]
pub fn on_notification_click<R: Runtime>(
    app: &tauri::AppHandle<R>,
    shown: notify_rust::NotificationHandle,
    view: String,
) {
    let app = app.clone();
    std::thread::spawn(move || {
        shown.wait_for_action(|action| {
            if action == "default" || action == "Open" {
                open_view(&app, &view);
            }
        })
    });
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
pub fn on_notification_click<R: Runtime>(_: &tauri::AppHandle<R>, _: (), _: String) {}

/// Brings the main window up at `view`.
pub fn open_view<R: Runtime>(app: &tauri::AppHandle<R>, view: &str) {
    use tauri::Emitter as _;
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.unminimize();
        let _ = w.show();
        let _ = w.set_focus();
    }
    let _ = app.emit("open-view", view);
}

/// The `airwave-server` the local profile runs: `AIRWAVE_SERVER_BIN`, or the one beside this
/// executable (how the package installs it).
pub fn server_bin() -> PathBuf {
    std::env::var_os("AIRWAVE_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(|d| d.join("airwave-server")))
                .unwrap_or_else(|| PathBuf::from("airwave-server"))
        })
}

/// With no profile at all, start the local server and connect to it (the embedded default).
async fn start_local_if_unconfigured<R: Runtime>(app: tauri::AppHandle<R>) {
    use tauri::Emitter as _;
    let console = app.state::<Console>();
    let mut profiles = console.profiles.lock().await;
    if !profiles.list().is_empty() {
        return;
    }
    let bin = server_bin();
    let data = config_dir().join("local-server");
    let result = async {
        let server = airwave_console_core::local::LocalServer::start(&bin, &data).await?;
        let profile = airwave_console_core::local::bootstrap(
            &server,
            &bin,
            &mut profiles,
            console.secrets.as_ref(),
        )
        .await?;
        profiles.set_active(&profile.id)?;
        profiles.save()?;
        *console.local.lock().await = Some(server);
        Ok::<_, airwave_console_core::Error>(profile)
    }
    .await;
    drop(profiles);
    match result {
        Ok(profile) => {
            if let Some(w) = app.get_webview_window("main") {
                let _ = w.set_title(&profile.window_title());
            }
            let _ = app.emit("profiles-changed", ());
        }
        Err(e) => {
            let _ = app.emit(
                "console-error",
                serde_json::json!({"kind": e.kind, "message": e.message}),
            );
        }
    }
}

/// SIGTERM and SIGINT end the console like its Quit does, so the local server stops with it.
async fn exit_on_signal<R: Runtime>(app: tauri::AppHandle<R>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        app.exit(0);
    }
}

pub fn run() {
    let _sentry = errors::init();
    let console = match Console::new(config_dir(), std::sync::Arc::new(KeyringStore)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("AIrWAVE Ops cannot start: {e}");
            std::process::exit(1);
        }
    };
    let app = configure(Builder::default(), console)
        .setup(|app| {
            tray(app)?;
            let title = tauri::async_runtime::block_on(app.state::<Console>().profiles.lock())
                .active()
                .map(|p| p.window_title());
            if let (Some(title), Some(w)) = (title, app.get_webview_window("main")) {
                let _ = w.set_title(&title);
            }
            tauri::async_runtime::spawn(exit_on_signal(app.handle().clone()));
            tauri::async_runtime::spawn(start_local_if_unconfigured(app.handle().clone()));
            Ok(())
        })
        .build(tauri::generate_context!("../tauri.conf.json"))
        .unwrap_or_else(|e| {
            eprintln!("AIrWAVE Ops cannot start: {e}");
            std::process::exit(1);
        });
    app.run(|app, event| {
        // Stop the local server with the console.
        if let tauri::RunEvent::Exit = event {
            let console = app.state::<Console>();
            let local = tauri::async_runtime::block_on(console.local.lock()).take();
            if let Some(server) = local {
                tauri::async_runtime::block_on(server.stop());
            }
        }
    });
}
