//! The SSRF guard on real connections: an HTTP client whose names resolve through the guard
//! (over UDP to a local DNS answerer) reaches an allowed receiver, and is refused — before any
//! connection — for names that resolve to loopback, link-local (cloud metadata) or a mix of
//! public and private addresses, and for names that do not resolve.

use crate::dns::{Answerer, Zone};
use airwave_server::outbound::{client, parse_allow_list, Guard, GuardedResolver};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A receiver on loopback that counts the requests it gets.
async fn receiver() -> (u16, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, hits)
}

#[tokio::test]
async fn names_that_resolve_to_private_addresses_are_refused_before_connecting() {
    let (port, hits) = receiver().await;
    let ip = |s: &str| s.parse().unwrap();
    let dns = Answerer::start(
        Zone::default()
            .ip("receiver.test", ip("127.0.0.1"))
            .ip("loopback.test", ip("127.0.0.1"))
            .ip("metadata.test", ip("169.254.169.254"))
            .ip("mixed.test", ip("8.8.8.8"))
            .ip("mixed.test", ip("10.0.0.1"))
            .ip("mapped.test", ip("::ffff:127.0.0.1")),
    )
    .await;
    let guard = Arc::new(Guard::new(
        parse_allow_list("receiver.test").unwrap(),
        false,
    ));
    let http = client(
        GuardedResolver::at(guard, dns.addr).unwrap(),
        Duration::from_secs(10),
    )
    .unwrap();
    let r = http
        .get(format!("http://receiver.test:{port}/hook"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    for (name, why) in [
        ("loopback.test", "loopback"),
        ("metadata.test", "link-local"),
        ("mixed.test", "private"),
        ("mapped.test", "loopback"),
        ("nowhere.test", "Unresolved"),
    ] {
        let err = http
            .get(format!("http://{name}:{port}/hook"))
            .send()
            .await
            .unwrap_err();
        // The guard's refusal is in the error's chain.
        let chain = format!("{err:?}");
        assert!(chain.contains(why), "{name}: {chain}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "a refused name was connected to"
    );
}
