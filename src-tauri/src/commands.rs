//! The commands the UI calls. Thin and typed: each returns `Result<T, Error>`, serialised as
//! `{kind, message}`. Nothing returned or emitted ever carries a token.

use crate::Console;
use airwave_api::{
    ops_event, HealthChangedEvent, HealthHistoryOut, HealthOut, JobDetailOut, QueueOut, UserOut,
};
use airwave_console_core::alerts::{Decision, Prefs};
use airwave_console_core::charts::{self, Theme};
use airwave_console_core::profiles::{Profile, ProfilesView};
use airwave_console_core::stream::{self, ConnState};
use airwave_console_core::{session, Error, ErrorKind};
use tauri::{AppHandle, Emitter, Runtime, State};

type Result<T> = std::result::Result<T, Error>;

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
    allow_plain_http: Option<bool>,
) -> Result<Profile> {
    let mut profile = Profile::new(&name, &url, colour.as_deref(), production)?;
    profile.allow_plain_http = allow_plain_http.unwrap_or(false) && profile.url.scheme() == "http";
    profile.check_transport()?;
    let mut p = console.profiles.lock().await;
    // Re-added under the same name: its old token (bound to the old origin) is forgotten.
    if let Ok(old) = p.get(&profile.id) {
        if old.url.origin() != profile.url.origin() {
            console.secrets.delete(&session::keychain_key(old))?;
        }
    }
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

/// The server's health report (every component's latest check); it also colours the tray.
#[tauri::command]
pub async fn health<R: Runtime>(
    app: AppHandle<R>,
    console: State<'_, Console>,
    id: String,
) -> Result<HealthOut> {
    let client = client_for(&console, &id).await?;
    let report = client.health().await?;
    for (component, checks) in &report.checks {
        if let Some(c) = checks.first().filter(|_| component != "uptime") {
            crate::set_tray_status(&app, component, c.status);
        }
    }
    Ok(report)
}

/// The queues with their counts and rates (for the Overview's totals).
#[tauri::command]
pub async fn queues(console: State<'_, Console>, id: String) -> Result<Vec<QueueOut>> {
    let client = client_for(&console, &id).await?;
    Ok(client.list_queues().await?)
}

/// Who is logged in on profile `id`, with their role (the views shown follow it).
#[tauri::command]
pub async fn me(console: State<'_, Console>, id: String) -> Result<UserOut> {
    let client = client_for(&console, &id).await?;
    Ok(client.me().await?)
}

/// One job with its attempts (the command palette finds a job by its id).
#[tauri::command]
pub async fn job(console: State<'_, Console>, id: String, job_id: String) -> Result<JobDetailOut> {
    let ok = job_id.strip_prefix("job_").is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 60 && rest.chars().all(|c| c.is_ascii_alphanumeric())
    });
    if !ok {
        return Err(Error::new(
            ErrorKind::Invalid,
            format!("{job_id:?} is not a job id (job_…)"),
        ));
    }
    let client = client_for(&console, &id).await?;
    Ok(client.get_job(&job_id).await?)
}

/// A client for profile `id`, its token renewed first when it is due (a renewal that fails is
/// reported and retried on the next call; the call itself goes on with the current token).
pub(crate) async fn client_for(console: &Console, id: &str) -> Result<airwave_api::ApiClient> {
    let mut p = console.profiles.lock().await;
    let secrets = console.secrets.as_ref();
    match session::renew_if_due(&mut p, secrets, id, chrono::Utc::now()).await {
        Ok(session::Renewal::Renewed {
            old_not_revoked: Some(e),
        }) => eprintln!("renewed the console token of {id}; the old one expires by itself ({e})"),
        Err(e) if e.kind != ErrorKind::Unauthenticated => {
            eprintln!("could not renew the console token of {id}: {e}");
        }
        _ => {}
    }
    session::client(&p, secrets, id)
}

/// A component's history over the last `hours` (1 h – 7 d), `points` buckets.
async fn history(
    console: &Console,
    id: &str,
    component: &str,
    hours: u32,
    points: u32,
) -> Result<(HealthHistoryOut, Range)> {
    let client = client_for(console, id).await?;
    let (range, q) = last_hours(hours, 168);
    let q = url::form_urlencoded::Serializer::for_suffix(q, 0)
        .append_pair("component", component)
        .append_pair("points", &points.clamp(10, 2000).to_string())
        .finish();
    Ok((client.health_history(&q).await?, range))
}

type Range = (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>);

/// The last `hours` (1 to `max`) up to now, and that range as a `since=…&until=…` query.
fn last_hours(hours: u32, max: u32) -> (Range, String) {
    let until = chrono::Utc::now();
    let since = until - chrono::Duration::hours(i64::from(hours.clamp(1, max)));
    let stamp =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("since", &stamp(since))
        .append_pair("until", &stamp(until))
        .finish();
    ((since, until), q)
}

fn theme(dark: bool) -> Theme {
    if dark {
        Theme::Dark
    } else {
        Theme::Light
    }
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
    let (h, (since, until)) = history(&console, &id, &component, hours, width / 3).await?;
    let unit = h.observed_unit.as_deref().unwrap_or("");
    let series = charts::Series {
        name: component.clone(),
        points: h
            .points
            .iter()
            .filter_map(|p| p.observed_value.map(|v| (p.at, v)))
            .collect(),
    };
    charts::line_chart(
        &format!("{component} ({unit})"),
        unit,
        &[series],
        since,
        until,
        (width, height),
        theme(dark),
    )
}

/// A component's status over time as uptime bars (one per bucket, coloured by its worst status).
#[tauri::command]
pub async fn uptime_chart(
    console: State<'_, Console>,
    id: String,
    component: String,
    hours: u32,
    width: u32,
    height: u32,
    dark: bool,
) -> Result<String> {
    let (h, _) = history(&console, &id, &component, hours, (width / 6).max(10)).await?;
    charts::uptime_bars(&h.points, (width, height), theme(dark))
}

/// A queue's throughput and failures per minute over the last `hours`: enqueued, completed and
/// failed attempts as three series (from the server's per-minute queue metrics).
#[tauri::command]
pub async fn queue_chart(
    console: State<'_, Console>,
    id: String,
    queue: String,
    hours: u32,
    width: u32,
    height: u32,
    dark: bool,
) -> Result<String> {
    if queue.is_empty()
        || queue.len() > 64
        || !queue
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::new(
            ErrorKind::Invalid,
            "queue names are letters, digits, - and _",
        ));
    }
    let client = client_for(&console, &id).await?;
    let ((since, until), q) = last_hours(hours, 48);
    let m = client.queue_metrics(&queue, &q).await?;
    let series = |name: &str, f: fn(&airwave_api::QueueMinuteOut) -> u64| charts::Series {
        name: name.into(),
        points: m.minutes.iter().map(|p| (p.minute, f(p) as f64)).collect(),
    };
    charts::line_chart(
        &format!("{queue}: jobs per minute"),
        "jobs/min",
        &[
            series("enqueued", |p| p.enqueued),
            series("completed", |p| p.completed),
            series("failed", |p| p.failed),
        ],
        since,
        until,
        (width, height),
        theme(dark),
    )
}

/// Queue depth (waiting + delayed + retrying + active jobs) as the console observed it from the
/// stream's `queue.stats` events: `points` are `[time, depth]` pairs (at most 2 000, the UI keeps
/// the last hour), drawn like every other chart.
#[tauri::command]
pub fn depth_chart(
    queue: String,
    points: Vec<(chrono::DateTime<chrono::Utc>, f64)>,
    width: u32,
    height: u32,
    dark: bool,
) -> Result<String> {
    if points.len() > 2_000 || queue.len() > 64 {
        return Err(Error::new(
            ErrorKind::Invalid,
            "at most 2000 points for a queue name of at most 64 characters",
        ));
    }
    let until = points.last().map(|p| p.0).unwrap_or_else(chrono::Utc::now);
    let since = points
        .first()
        .map(|p| p.0)
        .filter(|s| *s < until)
        .unwrap_or(until - chrono::Duration::minutes(5));
    charts::line_chart(
        &format!("{queue}: depth"),
        "jobs",
        &[charts::Series {
            name: "depth".into(),
            points,
        }],
        since,
        until,
        (width, height),
        theme(dark),
    )
}

/// Forgets a profile: its token is revoked (when logged in) and deleted from the keychain.
#[tauri::command]
pub async fn remove_profile(console: State<'_, Console>, id: String) -> Result<()> {
    let mut p = console.profiles.lock().await;
    if p.get(&id)?.email.is_some() {
        // A server that cannot be reached must not keep the profile alive.
        let _ = session::logout(&mut p, console.secrets.as_ref(), &id).await;
    }
    console
        .secrets
        .delete(&session::keychain_key(p.get(&id)?))?;
    p.remove(&id)?;
    p.save()
}

#[tauri::command]
pub fn prefs(console: State<'_, Console>) -> Result<Prefs> {
    Ok(console
        .prefs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone())
}

/// An uncaught UI error: scrubbed of tokens, secrets in URLs and e-mail addresses, logged, and
/// sent to Sentry when a DSN is configured.
#[tauri::command]
pub fn report_error(message: String, stack: Option<String>, view: Option<String>) -> Result<()> {
    crate::errors::report_ui_error(&message, stack.as_deref(), view.as_deref());
    Ok(())
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
    session::token(&p, console.secrets.as_ref(), &id)?;
    drop(p);
    // Read at every connect, so a renewed token is picked up when the old one's stream ends.
    let (secrets, key) = (console.secrets.clone(), session::keychain_key(&profile));
    let token: stream::TokenSource = std::sync::Arc::new(move || secrets.get(&key).ok().flatten());
    console
        .board
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    let handle = app.clone();
    let task = tauri::async_runtime::spawn(async move {
        let mut sub = stream::subscribe_with(profile.url.clone(), token, None, 256);
        let mut state = sub.state.clone();
        loop {
            tokio::select! {
                ev = sub.events.recv() => {
                    let Some(ev) = ev else { break };
                    if ev.event == ops_event::HEALTH_CHANGED {
                        if let Ok(change) = serde_json::from_value::<HealthChangedEvent>(ev.data.clone()) {
                            crate::set_tray_status(&handle, &change.component, change.status);
                            notify(&handle, Change::Health(&change));
                        }
                    } else if ev.event == ops_event::WEBHOOK_CHANGED {
                        if let Ok(change) = serde_json::from_value::<airwave_api::WebhookChangedEvent>(ev.data.clone()) {
                            notify(&handle, Change::Webhook(&change));
                        }
                    }
                    let _ = handle.emit("ops-event", &ev);
                }
                changed = state.changed() => {
                    if changed.is_err() { break }
                    let s = state.borrow().clone();
                    let _ = handle.emit("conn-state", &s);
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

/// What may notify: a health change or a webhook endpoint's.
enum Change<'a> {
    Health(&'a HealthChangedEvent),
    Webhook(&'a airwave_api::WebhookChangedEvent),
}

fn notify<R: Runtime>(app: &AppHandle<R>, change: Change<'_>) {
    let console = tauri::Manager::state::<Console>(app);
    let prefs = console
        .prefs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (now, local) = (chrono::Utc::now(), chrono::Local::now().time());
    let mut alerter = console.alerter.lock().unwrap_or_else(|e| e.into_inner());
    let decision = match change {
        Change::Health(c) => alerter.decide(c, &prefs, now, local),
        Change::Webhook(c) => alerter.decide_webhook(c, &prefs, now, local),
    };
    drop(alerter);
    if let Decision::Notify(n) = decision {
        let mut note = notify_rust::Notification::new();
        note.summary(&n.title).body(&n.body).appname("AIrWAVE Ops");
        if n.critical {
            note.urgency(notify_rust::Urgency::Critical);
        }
        // Clicking the notification (its default action) opens the related view.
        note.action("default", "Open");
        match note.show() {
            Ok(shown) => crate::on_notification_click(app, shown, n.view.clone()),
            Err(e) => eprintln!("notification not shown: {e}"),
        }
        let _ = app.emit("notified", &n);
    }
}

/// Checks and keeps the notification preferences (in memory and in `prefs.json`).
#[tauri::command]
pub fn set_prefs(console: State<'_, Console>, prefs: Prefs) -> Result<()> {
    if !(0..=86_400).contains(&prefs.dedupe_secs) {
        return Err(Error::new(
            ErrorKind::Invalid,
            "the de-duplication window is 0 to 86400 seconds",
        ));
    }
    let text = serde_json::to_string_pretty(&prefs)
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot encode preferences: {e}")))?;
    airwave_console_core::files::write_private(&console.prefs_path, text.as_bytes())?;
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
