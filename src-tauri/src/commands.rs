//! The commands the UI calls. Thin and typed: each returns `Result<T, Error>`, serialised as
//! `{kind, message}`. Nothing returned or emitted ever carries a token.

use crate::Console;
use airwave_api::{ops_event, HealthChangedEvent, HealthOut, UserOut};
use airwave_console_core::alerts::{Decision, Prefs};
use airwave_console_core::charts::{self, Theme};
use airwave_console_core::profiles::Profile;
use airwave_console_core::stream::{self, ConnState};
use airwave_console_core::{session, Error, ErrorKind};
use serde::Serialize;
use tauri::{AppHandle, Emitter, Runtime, State};

type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Serialize)]
pub struct ProfilesView {
    pub profiles: Vec<Profile>,
    pub active: Option<String>,
}

#[tauri::command]
pub async fn profiles(console: State<'_, Console>) -> Result<ProfilesView> {
    let p = console.profiles.lock().await;
    Ok(ProfilesView {
        profiles: p.list().to_vec(),
        active: p.active().map(|a| a.id.clone()),
    })
}

#[tauri::command]
pub async fn add_profile(
    console: State<'_, Console>,
    name: String,
    url: String,
    colour: Option<String>,
    production: bool,
) -> Result<Profile> {
    let profile = Profile::new(&name, &url, colour.as_deref(), production)?;
    let mut p = console.profiles.lock().await;
    p.upsert(profile.clone());
    p.save()?;
    Ok(profile)
}

/// Makes a profile the active one; the window title follows it.
#[tauri::command]
pub async fn select_profile<R: Runtime>(
    app: AppHandle<R>,
    console: State<'_, Console>,
    id: String,
) -> Result<()> {
    let mut p = console.profiles.lock().await;
    p.set_active(&id)?;
    p.save()?;
    if let Some(w) = tauri::Manager::get_webview_window(&app, "main") {
        let _ = w.set_title(&p.get(&id)?.window_title());
    }
    Ok(())
}

#[tauri::command]
pub async fn login(
    console: State<'_, Console>,
    id: String,
    email: String,
    password: String,
) -> Result<UserOut> {
    let mut p = console.profiles.lock().await;
    session::login(&mut p, console.secrets.as_ref(), &id, &email, &password).await
}

#[tauri::command]
pub async fn logout(console: State<'_, Console>, id: String) -> Result<()> {
    let mut p = console.profiles.lock().await;
    session::logout(&mut p, console.secrets.as_ref(), &id).await
}

#[tauri::command]
pub async fn health(console: State<'_, Console>, id: String) -> Result<HealthOut> {
    let p = console.profiles.lock().await;
    let client = session::client(&p, console.secrets.as_ref(), &id)?;
    drop(p);
    Ok(client.health().await?)
}

/// A component's latency history as an SVG chart sized to the view.
#[tauri::command]
pub async fn history_chart(
    console: State<'_, Console>,
    id: String,
    component: String,
    hours: u32,
    width: u32,
    height: u32,
    dark: bool,
) -> Result<String> {
    let p = console.profiles.lock().await;
    let client = session::client(&p, console.secrets.as_ref(), &id)?;
    drop(p);
    let until = chrono::Utc::now();
    let since = until - chrono::Duration::hours(i64::from(hours.clamp(1, 168)));
    let q = format!(
        "component={component}&since={}&until={}&points={}",
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (width / 3).clamp(10, 2000)
    );
    let h = client.health_history(&q.replace('+', "%2B")).await?;
    let series = charts::Series {
        name: component.clone(),
        points: h
            .points
            .iter()
            .filter_map(|p| p.observed_value.map(|v| (p.at, v)))
            .collect(),
    };
    charts::line_chart(
        &format!("{component} ({})", h.observed_unit.as_deref().unwrap_or("")),
        h.observed_unit.as_deref().unwrap_or(""),
        &[series],
        since,
        until,
        (width, height),
        if dark { Theme::Dark } else { Theme::Light },
    )
}

/// Subscribes to the profile's live stream: every event goes to the window as `ops-event`, the
/// connection state as `conn-state`; health changes may raise a native notification.
#[tauri::command]
pub async fn connect<R: Runtime>(
    app: AppHandle<R>,
    console: State<'_, Console>,
    id: String,
) -> Result<()> {
    let p = console.profiles.lock().await;
    let profile = p.get(&id)?.clone();
    let token = console.secrets.get(&profile.id)?.ok_or_else(|| {
        Error::new(
            ErrorKind::Unauthenticated,
            format!("log in to {} first", profile.name),
        )
    })?;
    drop(p);
    let handle = app.clone();
    let task = tauri::async_runtime::spawn(async move {
        let mut sub = stream::subscribe(profile.url.clone(), token, None, 256);
        let mut state = sub.state.clone();
        loop {
            tokio::select! {
                ev = sub.events.recv() => {
                    let Some(ev) = ev else { break };
                    if ev.event == ops_event::HEALTH_CHANGED {
                        if let Ok(change) = serde_json::from_value::<HealthChangedEvent>(ev.data.clone()) {
                            notify(&handle, &change);
                        }
                    }
                    let _ = handle.emit("ops-event", serde_json::json!({"id": ev.id, "event": ev.event, "data": ev.data}));
                }
                changed = state.changed() => {
                    if changed.is_err() { break }
                    let s = state.borrow().clone();
                    let _ = handle.emit("conn-state", conn_state_json(&s));
                    if s == ConnState::Unauthorized { break }
                }
            }
        }
    });
    if let Some(old) = console
        .stream
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .replace(task)
    {
        old.abort();
    }
    Ok(())
}

fn conn_state_json(s: &ConnState) -> serde_json::Value {
    match s {
        ConnState::Connecting => serde_json::json!({"state": "connecting"}),
        ConnState::Live => serde_json::json!({"state": "live"}),
        ConnState::Disconnected { since, reason } => {
            serde_json::json!({"state": "disconnected", "since": since, "reason": reason})
        }
        ConnState::Unauthorized => serde_json::json!({"state": "unauthorized"}),
    }
}

fn notify<R: Runtime>(app: &AppHandle<R>, change: &HealthChangedEvent) {
    let console = tauri::Manager::state::<Console>(app);
    let prefs = console
        .prefs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let decision = console
        .alerter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .decide(
            change,
            &prefs,
            chrono::Utc::now(),
            chrono::Local::now().time(),
        );
    if let Decision::Notify(n) = decision {
        let mut note = notify_rust::Notification::new();
        note.summary(&n.title).body(&n.body).appname("AIrWAVE Ops");
        if n.critical {
            note.urgency(notify_rust::Urgency::Critical);
        }
        if let Err(e) = note.show() {
            eprintln!("notification not shown: {e}");
        }
        let _ = app.emit(
            "notified",
            serde_json::json!({"title": n.title, "view": n.view}),
        );
    }
}

#[tauri::command]
pub fn set_prefs(console: State<'_, Console>, prefs: Prefs) -> Result<()> {
    *console.prefs.lock().unwrap_or_else(|e| e.into_inner()) = prefs;
    Ok(())
}

/// The tray's "pause notifications for 1 hour" (also callable from the UI).
#[tauri::command]
pub fn pause_notifications(console: State<'_, Console>, minutes: u32) -> Result<()> {
    pause_for(
        console.inner(),
        chrono::Duration::minutes(i64::from(minutes.clamp(1, 24 * 60))),
    );
    Ok(())
}

pub fn pause_for(console: &Console, d: chrono::Duration) {
    console
        .prefs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .paused_until = Some(chrono::Utc::now() + d);
}
