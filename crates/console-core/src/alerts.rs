//! Which health changes (and webhook endpoints' troubles) become a native notification.
//!
//! A webhook endpoint whose circuit opens (it keeps failing), or that is disabled, notifies and
//! opens the Webhooks view; its circuit closing again notifies that it recovered.
//!
//! A component that starts failing (or warning, if asked) notifies; one that recovers notifies;
//! a component's first check does not (it is the state the console opened on, shown in the
//! views). The same component in the same status notifies at most once per de-duplication window
//! (flapping does not spam). Nothing notifies while paused (the tray's "pause for 1 h") or in
//! quiet hours — the views still change; only the pop-up is held back.

use airwave_api::{HealthChangedEvent, HealthStatus, WebhookChangedEvent};
use chrono::{DateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Prefs {
    pub enabled: bool,
    /// Also notify when a component starts warning.
    pub warnings: bool,
    /// Local times `[start, end)`; may wrap midnight (22:00–07:00).
    pub quiet_hours: Option<(NaiveTime, NaiveTime)>,
    /// The same component and status notify at most once per this many seconds.
    #[cfg_attr(test, ts(type = "number"))]
    pub dedupe_secs: i64,
    /// The tray's "pause notifications" until this time.
    pub paused_until: Option<DateTime<Utc>>,
}

impl Default for Prefs {
    fn default() -> Self {
        Self {
            enabled: true,
            warnings: false,
            quiet_hours: None,
            dedupe_secs: 300,
            paused_until: None,
        }
    }
}

/// A notification to show.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Notification {
    pub title: String,
    pub body: String,
    pub critical: bool,
    /// The view a click opens.
    pub view: String,
}

/// Why nothing is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Suppressed {
    Disabled,
    FirstCheck,
    Warning,
    Duplicate,
    Paused,
    QuietHours,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Decision {
    Notify(Notification),
    Suppressed(Suppressed),
}

/// Remembers what was notified, for de-duplication.
#[derive(Debug, Default)]
pub struct Alerter {
    last: HashMap<(String, &'static str), DateTime<Utc>>,
}

fn label(component: &str) -> String {
    let name = component.split(':').next().unwrap_or(component);
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => component.into(),
    }
}

fn in_quiet_hours(now: NaiveTime, (start, end): (NaiveTime, NaiveTime)) -> bool {
    if start <= end {
        now >= start && now < end
    } else {
        now >= start || now < end
    }
}

impl Alerter {
    /// Decides for one `webhook.changed` event: only an endpoint's circuit opening or closing
    /// and its being disabled notify (deliveries do not).
    pub fn decide_webhook(
        &mut self,
        e: &WebhookChangedEvent,
        prefs: &Prefs,
        now: DateTime<Utc>,
        local: NaiveTime,
    ) -> Decision {
        if !prefs.enabled {
            return Decision::Suppressed(Suppressed::Disabled);
        }
        let (title, critical, key) = match e.kind.as_str() {
            "circuit_opened" => ("A webhook endpoint is failing", false, "circuit_opened"),
            "disabled" => ("A webhook endpoint was disabled", true, "disabled"),
            "circuit_closed" => ("A webhook endpoint recovered", false, "circuit_closed"),
            _ => return Decision::Suppressed(Suppressed::FirstCheck),
        };
        if let Some(why) = self.gate(format!("webhook:{}", e.endpoint_id), key, prefs, now, local) {
            return Decision::Suppressed(why);
        }
        let body = format!(
            "{} (client {}){}",
            e.endpoint_id,
            e.client_id,
            e.detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
        Decision::Notify(Notification {
            title: title.into(),
            body: crate::secrets::redact(&body),
            critical,
            view: "webhooks".into(),
        })
    }

    /// Paused, quiet hours or a duplicate within the window: why not to notify (else the
    /// notification is remembered for de-duplication).
    fn gate(
        &mut self,
        subject: String,
        key: &'static str,
        prefs: &Prefs,
        now: DateTime<Utc>,
        local: NaiveTime,
    ) -> Option<Suppressed> {
        if prefs.paused_until.is_some_and(|t| now < t) {
            return Some(Suppressed::Paused);
        }
        if prefs.quiet_hours.is_some_and(|q| in_quiet_hours(local, q)) {
            return Some(Suppressed::QuietHours);
        }
        let k = (subject, key);
        if self
            .last
            .get(&k)
            .is_some_and(|t| (now - *t).num_seconds() < prefs.dedupe_secs)
        {
            return Some(Suppressed::Duplicate);
        }
        self.last.insert(k, now);
        None
    }

    /// Decides for one `health.changed` event at `now` (`local` is the wall-clock time of day
    /// for quiet hours).
    pub fn decide(
        &mut self,
        e: &HealthChangedEvent,
        prefs: &Prefs,
        now: DateTime<Utc>,
        local: NaiveTime,
    ) -> Decision {
        use HealthStatus::*;
        if !prefs.enabled {
            return Decision::Suppressed(Suppressed::Disabled);
        }
        // The backups component only ever warns (an overdue backup, a failed drill), and that
        // is a launch-day emergency: it notifies even with warnings off, and opens Backups.
        let backups = e.component.starts_with("backups:");
        let (title, critical, key) = match (e.previous, e.status) {
            (None, Pass) => return Decision::Suppressed(Suppressed::FirstCheck),
            (_, Fail) => (format!("{} is failing", label(&e.component)), true, "fail"),
            (_, Warn) if !prefs.warnings && !backups => {
                return Decision::Suppressed(Suppressed::Warning)
            }
            (_, Warn) => (
                format!("{} is degraded", label(&e.component)),
                false,
                "warn",
            ),
            (Some(_), Pass) => (format!("{} recovered", label(&e.component)), false, "pass"),
        };
        if let Some(why) = self.gate(e.component.clone(), key, prefs, now, local) {
            return Decision::Suppressed(why);
        }
        let mut body = e
            .output
            .clone()
            .unwrap_or_else(|| format!("{} is {:?}", e.component, e.status).to_lowercase());
        if let (Some(v), Some(u)) = (e.observed_value, &e.observed_unit) {
            body.push_str(&format!(" ({v} {u})"));
        }
        Decision::Notify(Notification {
            title,
            body: crate::secrets::redact(&body),
            critical,
            view: if backups { "backups" } else { "health" }.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ev(
        component: &str,
        previous: Option<HealthStatus>,
        status: HealthStatus,
    ) -> HealthChangedEvent {
        HealthChangedEvent {
            component: component.into(),
            status,
            previous,
            observed_value: None,
            observed_unit: None,
            output: Some("connection refused".into()),
            time: Utc::now(),
        }
    }

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn a_failing_webhook_endpoint_notifies_once_and_opens_webhooks() {
        let mut a = Alerter::default();
        let prefs = Prefs::default();
        let ev = |kind: &str| WebhookChangedEvent {
            endpoint_id: "whe_1".into(),
            client_id: "cli_1".into(),
            kind: kind.into(),
            message_id: None,
            detail: Some("5 consecutive failures".into()),
            time: Utc::now(),
        };
        match a.decide_webhook(&ev("circuit_opened"), &prefs, Utc::now(), t(12, 0)) {
            Decision::Notify(n) => {
                assert_eq!(n.view, "webhooks");
                assert!(n.body.contains("whe_1") && n.body.contains("5 consecutive"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            a.decide_webhook(&ev("circuit_opened"), &prefs, Utc::now(), t(12, 0)),
            Decision::Suppressed(Suppressed::Duplicate)
        );
        assert!(matches!(
            a.decide_webhook(&ev("delivered"), &prefs, Utc::now(), t(12, 0)),
            Decision::Suppressed(_)
        ));
        assert!(matches!(
            a.decide_webhook(&ev("disabled"), &prefs, Utc::now(), t(12, 0)),
            Decision::Notify(Notification { critical: true, .. })
        ));
    }

    #[test]
    fn an_overdue_backup_notifies_even_with_warnings_off_and_opens_backups() {
        let mut a = Alerter::default();
        let prefs = Prefs {
            warnings: false,
            ..Prefs::default()
        };
        let d = a.decide(
            &ev("backups:age", Some(HealthStatus::Pass), HealthStatus::Warn),
            &prefs,
            Utc::now(),
            t(12, 0),
        );
        match d {
            Decision::Notify(n) => assert_eq!(n.view, "backups"),
            other => panic!("{other:?}"),
        }
        let d = a.decide(
            &ev("queue:depth", Some(HealthStatus::Pass), HealthStatus::Warn),
            &prefs,
            Utc::now(),
            t(12, 0),
        );
        assert!(matches!(d, Decision::Suppressed(Suppressed::Warning)));
    }

    #[test]
    fn failures_and_recoveries_notify_first_checks_do_not() {
        use HealthStatus::*;
        let mut a = Alerter::default();
        let p = Prefs::default();
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
        assert_eq!(
            a.decide(&ev("queue:responseTime", None, Pass), &p, now, t(12, 0)),
            Decision::Suppressed(Suppressed::FirstCheck)
        );
        let Decision::Notify(n) = a.decide(
            &ev("queue:responseTime", Some(Pass), Fail),
            &p,
            now,
            t(12, 0),
        ) else {
            panic!("a failure notifies")
        };
        assert_eq!(
            (n.title.as_str(), n.critical, n.view.as_str()),
            ("Queue is failing", true, "health")
        );
        assert!(matches!(
            a.decide(
                &ev("queue:responseTime", Some(Fail), Pass),
                &p,
                now,
                t(12, 0)
            ),
            Decision::Notify(Notification {
                critical: false,
                ..
            })
        ));
        assert_eq!(
            a.decide(
                &ev("queue:responseTime", Some(Pass), Warn),
                &p,
                now,
                t(12, 0)
            ),
            Decision::Suppressed(Suppressed::Warning)
        );
    }

    #[test]
    fn flapping_is_de_duplicated_within_the_window() {
        use HealthStatus::*;
        let mut a = Alerter::default();
        let p = Prefs::default();
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
        assert!(matches!(
            a.decide(&ev("db", Some(Pass), Fail), &p, now, t(12, 0)),
            Decision::Notify(_)
        ));
        let later = now + chrono::Duration::seconds(60);
        assert_eq!(
            a.decide(&ev("db", Some(Pass), Fail), &p, later, t(12, 1)),
            Decision::Suppressed(Suppressed::Duplicate)
        );
        let much_later = now + chrono::Duration::seconds(301);
        assert!(matches!(
            a.decide(&ev("db", Some(Pass), Fail), &p, much_later, t(12, 5)),
            Decision::Notify(_)
        ));
    }

    #[test]
    fn quiet_hours_wrap_midnight_and_pausing_holds_everything() {
        use HealthStatus::*;
        let mut a = Alerter::default();
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 23, 0, 0).unwrap();
        let quiet = Prefs {
            quiet_hours: Some((t(22, 0), t(7, 0))),
            ..Prefs::default()
        };
        assert_eq!(
            a.decide(&ev("db", Some(Pass), Fail), &quiet, now, t(23, 30)),
            Decision::Suppressed(Suppressed::QuietHours)
        );
        assert_eq!(
            a.decide(&ev("db", Some(Pass), Fail), &quiet, now, t(6, 59)),
            Decision::Suppressed(Suppressed::QuietHours)
        );
        assert!(matches!(
            a.decide(&ev("db", Some(Pass), Fail), &quiet, now, t(7, 0)),
            Decision::Notify(_)
        ));
        let paused = Prefs {
            paused_until: Some(now + chrono::Duration::hours(1)),
            ..Prefs::default()
        };
        assert_eq!(
            a.decide(&ev("queue", Some(Pass), Fail), &paused, now, t(12, 0)),
            Decision::Suppressed(Suppressed::Paused)
        );
        let off = Prefs {
            enabled: false,
            ..Prefs::default()
        };
        assert_eq!(
            a.decide(&ev("queue", Some(Pass), Fail), &off, now, t(12, 0)),
            Decision::Suppressed(Suppressed::Disabled)
        );
    }
}

/// Each component's latest status, for the tray icon's colour (the worst one wins).
#[derive(Debug, Default)]
pub struct StatusBoard {
    components: HashMap<String, HealthStatus>,
}

impl StatusBoard {
    /// Records a component's status; returns the overall status when it changed.
    pub fn update(&mut self, component: &str, status: HealthStatus) -> Option<HealthStatus> {
        let before = self.overall();
        self.components.insert(component.to_owned(), status);
        let after = self.overall();
        (after != before).then_some(after).flatten()
    }

    /// Forgets everything (another profile became active).
    pub fn clear(&mut self) {
        self.components.clear();
    }

    pub fn overall(&self) -> Option<HealthStatus> {
        let s = self.components.values();
        if self.components.is_empty() {
            None
        } else if s.clone().any(|s| *s == HealthStatus::Fail) {
            Some(HealthStatus::Fail)
        } else if s.clone().any(|s| *s == HealthStatus::Warn) {
            Some(HealthStatus::Warn)
        } else {
            Some(HealthStatus::Pass)
        }
    }
}

/// The tray icon for an overall status: a filled disc (green, amber, red; grey when unknown) on
/// a transparent square, as RGBA pixels `size`×`size`.
pub fn tray_icon_rgba(status: Option<HealthStatus>, size: u32) -> Vec<u8> {
    let [r, g, b] = match status {
        Some(HealthStatus::Pass) => [0x16, 0xa3, 0x4a],
        Some(HealthStatus::Warn) => [0xd9, 0x77, 0x06],
        Some(HealthStatus::Fail) => [0xdc, 0x26, 0x26],
        None => [0x64, 0x74, 0x8b],
    };
    let c = (size as f64 - 1.0) / 2.0;
    let radius = size as f64 / 2.0 - 1.0;
    let mut px = Vec::with_capacity((size * size * 4) as usize);
    for y in 0..size {
        for x in 0..size {
            let d = ((x as f64 - c).powi(2) + (y as f64 - c).powi(2)).sqrt();
            // One pixel of anti-aliasing at the edge.
            let alpha = ((radius - d + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
            px.extend_from_slice(&[r, g, b, alpha]);
        }
    }
    px
}

#[cfg(test)]
mod status_tests {
    use super::*;

    #[test]
    fn the_worst_component_colours_the_tray() {
        let mut b = StatusBoard::default();
        assert_eq!(b.overall(), None);
        assert_eq!(b.update("db", HealthStatus::Pass), Some(HealthStatus::Pass));
        assert_eq!(b.update("queue", HealthStatus::Pass), None);
        assert_eq!(
            b.update("queue", HealthStatus::Fail),
            Some(HealthStatus::Fail)
        );
        assert_eq!(b.update("db", HealthStatus::Warn), None);
        assert_eq!(
            b.update("queue", HealthStatus::Pass),
            Some(HealthStatus::Warn)
        );
        let red = tray_icon_rgba(Some(HealthStatus::Fail), 32);
        assert_eq!(red.len(), 32 * 32 * 4);
        let centre = (16 * 32 + 16) * 4;
        assert_eq!(&red[centre..centre + 4], &[0xdc, 0x26, 0x26, 255]);
        assert_eq!(red[3], 0, "corners are transparent");
    }
}
