//! The desktop console's core: all of its logic, with no Tauri dependency, so it is tested
//! headless against a real `airwave-server`. The Tauri shell (`src-tauri/`) only forwards typed
//! commands and events to it.
//!
//! - [`profiles`]: server profiles (name, URL, colour) in a JSON file — never a token;
//! - [`secrets`]: where API tokens live: the OS keychain in the app, memory in unit tests;
//! - [`session`]: log in (email/password → a role-scoped API token in the keychain), log out
//!   (revoke on the server, delete from the keychain);
//! - [`stream`]: the live operations stream, resumed with `Last-Event-ID`, reconnecting with backoff;
//! - [`alerts`]: which health changes become a native notification (quiet hours, de-duplication);
//! - [`backups`]: the Backups view's ids checked, and the backups summed up for the Overview;
//! - [`charts`]: time series drawn to SVG with plotters, in light and dark themes;
//! - [`local`]: the embedded default — a sidecar `airwave-server` with an admin made for it.

pub mod alerts;
pub mod backups;
pub mod charts;
pub mod emails;
pub mod error;
pub mod files;
pub mod local;
pub mod profiles;
pub mod secrets;
pub mod session;
pub mod stream;
pub mod webhooks;

pub use error::{Error, ErrorKind};

/// The TypeScript side of what the shell hands the UI: `ui/src/lib/console.gen.ts` is generated
/// from these types and a stale file fails this test (`AIRWAVE_UPDATE_TS=1` rewrites it).
#[cfg(test)]
mod typescript {
    use super::{alerts, backups, emails, error, profiles, stream};
    use ts_rs::{Config, TS};

    #[test]
    fn typescript_bindings_are_current() {
        let cfg = Config::default();
        let decls = [
            error::ErrorKind::decl(&cfg),
            error::Error::decl(&cfg),
            profiles::Profile::decl(&cfg),
            profiles::ProfilesView::decl(&cfg),
            alerts::Prefs::decl(&cfg),
            alerts::Notification::decl(&cfg),
            stream::ConnState::decl(&cfg),
            stream::StreamEvent::decl(&cfg),
            emails::EmailSearch::decl(&cfg),
            backups::BackupsSummary::decl(&cfg),
        ];
        let mut fresh = String::from(
            "// Generated from crates/console-core by its `typescript` unit test: do not edit.\n\
             // Regenerate with `AIRWAVE_UPDATE_TS=1 cargo test -p airwave-console-core typescript`.\n",
        );
        for d in decls {
            fresh.push_str("\nexport ");
            fresh.push_str(&d);
            fresh.push('\n');
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../ui/src/lib/console.gen.ts");
        if std::env::var_os("AIRWAVE_UPDATE_TS").is_some() {
            std::fs::write(&path, &fresh).expect("write console.gen.ts");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == fresh,
            "ui/src/lib/console.gen.ts is stale: run `AIRWAVE_UPDATE_TS=1 cargo test -p airwave-console-core typescript`"
        );
    }
}
