//! The token round trip through a real OS keychain: on Linux, the Secret Service of a GNOME
//! Keyring that `scripts/test` starts (unlocked from stdin) inside a private D-Bus session.
//! `AIRWAVE_TEST_KEYCHAIN=1` says a keychain is there; without it (plain `cargo test` on a machine
//! without one) the test only checks the clear "no keychain" error.

use airwave_console_core::secrets::{KeyringStore, SecretStore};
use airwave_console_core::ErrorKind;

#[test]
fn tokens_round_trip_through_the_os_keychain() {
    let store = KeyringStore;
    let profile = format!("test-{}", std::process::id());
    if std::env::var("AIRWAVE_TEST_KEYCHAIN").is_err() {
        assert!(
            std::env::var("AIRWAVE_TEST_REQUIRE_SERVICES").is_err(),
            "scripts/test runs this test with a keychain (AIRWAVE_TEST_KEYCHAIN=1)"
        );
        // Without a keychain the answer is a clear error, never a silent fallback to a file.
        if let Err(e) = store.set(&profile, "awt_x") {
            assert_eq!(e.kind, ErrorKind::NoKeychain, "{e}");
            assert!(e.message.contains("Secret Service"), "{e}");
        } else {
            store.delete(&profile).unwrap();
        }
        return;
    }
    assert_eq!(store.get(&profile).unwrap(), None);
    store.set(&profile, "awt_first").unwrap();
    store.set(&profile, "awt_second").unwrap();
    assert_eq!(
        store.get(&profile).unwrap().as_deref(),
        Some("awt_second"),
        "one entry per profile, replaced"
    );
    let other = format!("{profile}-other");
    store.set(&other, "awt_other").unwrap();
    store.delete(&profile).unwrap();
    assert_eq!(store.get(&profile).unwrap(), None);
    assert_eq!(store.get(&other).unwrap().as_deref(), Some("awt_other"));
    store.delete(&other).unwrap();
    store.delete(&other).unwrap();
}
