//! Outgoing webhooks against a real local receiver: every delivery verified with the official
//! Standard Webhooks library (`standardwebhooks`), rotation included; retries with the same
//! `webhook-id`; `410 Gone`; `Retry-After`; redirects not followed; the circuit breaker holding
//! and then delivering everything; recovery since T re-delivering exactly the failed messages;
//! the SSRF guard at creation and at delivery (a name that rebinds to a private address); and
//! the API's bad paths and roles.

use crate::dns::{Answerer, SharedZone, Zone};
use airwave_api::{
    ApiClient, ClientError, ExecutionIn, Role, WebhookEndpointIn, WebhookEndpointPatch,
    WebhookErrorClass, WebhookMessageStatus, WebhookRecoverIn,
};
use airwave_tests::{eventually, TestApp};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// What the receiver answers.
#[derive(Clone, Debug)]
enum Reply {
    Status(u16),
    RetryAfter(u16, u64),
    Redirect,
}

#[derive(Clone, Debug)]
struct Hit {
    path: String,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
}

impl Hit {
    fn id(&self) -> String {
        self.headers["webhook-id"].to_str().unwrap().to_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn verifies_with(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&self.body, &self.headers)
            .is_ok()
    }
}

/// A local HTTP receiver that records every request and answers from a script (then its
/// default).
#[derive(Clone)]
struct Receiver {
    port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    default: Arc<Mutex<Reply>>,
}

impl Receiver {
    async fn start() -> Self {
        let r = Receiver {
            port: 0,
            hits: Arc::default(),
            script: Arc::default(),
            default: Arc::new(Mutex::new(Reply::Status(200))),
        };
        let state = r.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: bytes::Bytes| {
                let state = state.clone();
                async move {
                    use axum::response::IntoResponse;
                    state.hits.lock().unwrap().push(Hit {
                        path: uri.path().to_owned(),
                        headers,
                        body,
                    });
                    let reply = state
                        .script
                        .lock()
                        .unwrap()
                        .pop_front()
                        .unwrap_or_else(|| state.default.lock().unwrap().clone());
                    let status = |n: u16| axum::http::StatusCode::from_u16(n).unwrap();
                    match reply {
                        Reply::Status(n) => (status(n), "answer").into_response(),
                        Reply::RetryAfter(n, secs) => {
                            (status(n), [("retry-after", secs.to_string())], "later")
                                .into_response()
                        }
                        Reply::Redirect => (
                            axum::http::StatusCode::FOUND,
                            [("location", "/elsewhere")],
                            "moved",
                        )
                            .into_response(),
                    }
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { port, ..r }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn then(&self, replies: &[Reply]) {
        self.script.lock().unwrap().extend(replies.iter().cloned());
    }

    fn answer(&self, reply: Reply) {
        *self.default.lock().unwrap() = reply;
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn hits_of(&self, event_type: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.json()["type"] == event_type)
            .collect()
    }
}

/// The test servers' settings: the receiver on loopback allowed, quick retries.
const ENV: &[(&str, &str)] = &[
    ("AIRWAVE_WEBHOOK_ALLOW_HOSTS", "127.0.0.1/32"),
    ("AIRWAVE_WEBHOOK_RETRY_SCHEDULE", "1s,1s"),
];

struct Setup {
    app: TestApp,
    op: ApiClient,
    member: ApiClient,
    client_id: String,
}

async fn setup(extra: &[(&str, &str)]) -> Setup {
    let mut env: Vec<(&str, &str)> = ENV.to_vec();
    env.extend_from_slice(extra);
    let app = TestApp::spawn_with(&env).await;
    let (_, member) = app.member("ada@example.com").await;
    let client_id = member.create_client("Acme").await.unwrap().id;
    let (_, op) = app.user_with_role("op@example.com", Role::Operator).await;
    Setup {
        app,
        op,
        member,
        client_id,
    }
}

impl Setup {
    async fn endpoint(&self, url: &str, types: &[&str]) -> (String, String) {
        let created = self
            .op
            .create_webhook_endpoint(&WebhookEndpointIn {
                client_id: self.client_id.clone(),
                url: url.to_owned(),
                event_types: types.iter().map(|t| (*t).to_owned()).collect(),
                description: Some("the test receiver".into()),
                headers: None,
                rate_limit_per_s: None,
            })
            .await
            .unwrap();
        (created.endpoint.id, created.secret)
    }

    /// One render of a small template: `render.started` and `render.completed` follow.
    async fn render(&self) -> String {
        let template = json!({"width": 64, "height": 36, "background": "#102030", "layers": []});
        let m = airwave_tests::matrix_for(&self.member, &self.client_id, template).await;
        let e = self
            .member
            .create_execution(&m, &ExecutionIn::default())
            .await
            .unwrap();
        let done = airwave_tests::finished_execution(&self.member, &e.id).await;
        assert_eq!(
            done.status,
            airwave_api::ExecutionStatus::Completed,
            "{done:?}"
        );
        e.id
    }

    async fn messages(&self, endpoint: &str) -> Vec<airwave_api::WebhookMessageOut> {
        self.op
            .list_webhook_messages(endpoint, &[("limit", "200")])
            .await
            .unwrap()
            .items
    }
}

async fn until_hits(r: &Receiver, event_type: &str, n: usize) -> Vec<Hit> {
    eventually(&format!("{n} request(s) of {event_type}"), || async {
        let h = r.hits_of(event_type);
        (h.len() >= n).then_some(h)
    })
    .await
}

#[tokio::test]
async fn a_failing_receiver_gets_the_same_signed_message_until_it_answers_2xx() {
    let s = setup(&[]).await;
    let r = Receiver::start().await;
    let (endpoint, secret) = s.endpoint(&r.url(), &["render.completed"]).await;
    assert!(secret.starts_with("whsec_"));
    r.then(&[Reply::Status(500), Reply::Status(500)]);
    let execution = s.render().await;

    let hits = until_hits(&r, "render.completed", 3).await;
    let ids: Vec<String> = hits.iter().map(Hit::id).collect();
    assert!(
        ids.iter().all(|i| *i == ids[0] && i.starts_with("whm_")),
        "{ids:?}"
    );
    for h in &hits {
        assert!(h.verifies_with(&secret), "every attempt verifies");
        assert_eq!(h.path, "/hook");
        assert_eq!(h.headers["content-type"], "application/json");
    }
    let body = hits[2].json();
    assert_eq!(body["data"]["execution_id"], execution.as_str());
    assert_eq!(body["data"]["client_id"], s.client_id.as_str());
    assert!(
        body["data"].get("output_key").is_none(),
        "internal fields stay inside"
    );
    assert!(r.hits_of("render.started").is_empty(), "the filter holds");

    let message = eventually("the message delivered", || async {
        let m = s.messages(&endpoint).await;
        m.into_iter()
            .find(|m| m.status == WebhookMessageStatus::Delivered)
    })
    .await;
    assert_eq!(message.id, ids[0]);
    assert_eq!(message.attempts, 3);
    let detail = s.op.get_webhook_message(&message.id).await.unwrap();
    let codes: Vec<Option<i32>> = detail.attempt_log.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(500), Some(500), Some(200)]);
    assert_eq!(
        detail.attempt_log[0].error_class,
        Some(WebhookErrorClass::Status)
    );
    assert_eq!(
        detail.attempt_log[0].response_body.as_deref(),
        Some("answer")
    );
    assert!(detail.attempt_log[2].delivered);
    assert_eq!(
        detail.body.as_bytes(),
        &hits[2].body[..],
        "the body signed is the body sent"
    );
    let ep = s.op.get_webhook_endpoint(&endpoint).await.unwrap();
    assert_eq!(ep.consecutive_failures, 0);
    assert!(ep.health.is_some());

    // Out of attempts: three 500s fail the message for good.
    r.then(&[Reply::Status(500), Reply::Status(500), Reply::Status(500)]);
    s.render().await;
    eventually("a failed message", || async {
        let m = s.messages(&endpoint).await;
        m.into_iter()
            .find(|m| m.status == WebhookMessageStatus::Failed && m.attempts == 3)
    })
    .await;
    // Replay: the same id again, a fresh round, delivered.
    let failed = s
        .messages(&endpoint)
        .await
        .into_iter()
        .find(|m| m.status == WebhookMessageStatus::Failed)
        .unwrap();
    let replayed = s.op.replay_webhook_message(&failed.id).await.unwrap();
    assert_eq!(replayed.status, WebhookMessageStatus::Pending);
    eventually("the replayed message delivered", || async {
        let d = s.op.get_webhook_message(&failed.id).await.unwrap();
        (d.message.status == WebhookMessageStatus::Delivered).then_some(())
    })
    .await;
    assert_eq!(r.hits().iter().filter(|h| h.id() == failed.id).count(), 4);
    // A message waiting for its attempts is not replayed twice.
    let again = s.op.replay_webhook_message(&failed.id).await;
    assert!(again.is_ok(), "a delivered message may be sent again");
    match s.op.replay_webhook_message(&failed.id).await {
        Err(ClientError::Api(p)) => assert_eq!(p.code, "already_pending"),
        other => {
            // The second replay may already have been delivered: then it is a fresh replay.
            assert!(other.is_ok(), "{other:?}");
        }
    }
}

#[tokio::test]
async fn an_events_first_attempts_go_out_together_and_each_message_then_goes_on_alone() {
    let s = setup(&[]).await;
    let (plain, failing, limited) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let (a, secret_a) = s.endpoint(&plain.url(), &["render.completed"]).await;
    let (b, secret_b) = s.endpoint(&failing.url(), &["render.completed"]).await;
    // A rate-limited endpoint's message leaves the batch for a job of its own.
    let c =
        s.op.create_webhook_endpoint(&WebhookEndpointIn {
            client_id: s.client_id.clone(),
            url: limited.url(),
            event_types: vec!["render.completed".into()],
            description: None,
            headers: None,
            rate_limit_per_s: Some(5),
        })
        .await
        .unwrap();
    failing.then(&[Reply::Status(500)]);
    s.render().await;

    let b_hits = until_hits(&failing, "render.completed", 2).await;
    assert_eq!(
        b_hits[0].id(),
        b_hits[1].id(),
        "the retry is the same message"
    );
    let a_hits = until_hits(&plain, "render.completed", 1).await;
    let c_hits = until_hits(&limited, "render.completed", 1).await;
    assert!(a_hits[0].verifies_with(&secret_a));
    assert!(b_hits.iter().all(|h| h.verifies_with(&secret_b)));
    assert!(c_hits[0].verifies_with(&c.secret));
    let ids = [a_hits[0].id(), b_hits[0].id(), c_hits[0].id()];
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2],
        "a message per endpoint"
    );
    assert_eq!(
        a_hits[0].body, b_hits[0].body,
        "one body, serialised once, for every endpoint"
    );

    for (endpoint, attempts) in [(&a, 1), (&b, 2), (&c.endpoint.id, 1)] {
        let m = eventually("the message delivered", || async {
            s.messages(endpoint)
                .await
                .into_iter()
                .find(|m| m.status == WebhookMessageStatus::Delivered)
        })
        .await;
        assert_eq!(m.attempts, attempts, "{endpoint}");
        let d = s.op.get_webhook_message(&m.id).await.unwrap();
        let codes: Vec<Option<i32>> = d.attempt_log.iter().map(|a| a.status_code).collect();
        let want: Vec<Option<i32>> = if attempts == 1 {
            vec![Some(200)]
        } else {
            vec![Some(500), Some(200)]
        };
        assert_eq!(codes, want, "{endpoint}");
        assert!(d.attempt_log.last().unwrap().delivered);
        assert_eq!(
            d.attempt_log[0].request_headers["webhook-id"], m.id,
            "the attempt logs its request"
        );
        assert!(d.message.delivered_at.is_some());
        let ep = s.op.get_webhook_endpoint(endpoint).await.unwrap();
        assert_eq!(ep.consecutive_failures, 0, "{endpoint}");
        assert!(ep.last_success_at.is_some(), "{endpoint}");
    }
    // Nothing is sent twice: one hit per delivery, once settled.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(plain.hits().len(), 1);
    assert_eq!(failing.hits().len(), 2);
    assert_eq!(limited.hits().len(), 1);
}

#[tokio::test]
async fn during_a_rotation_deliveries_verify_with_both_secrets_and_after_revoking_with_the_new_one_only(
) {
    let s = setup(&[]).await;
    let r = Receiver::start().await;
    let (endpoint, old) = s.endpoint(&r.url(), &["webhook.test"]).await;
    let first = s.op.test_webhook_endpoint(&endpoint).await.unwrap();
    assert!(first.delivered, "{first:?}");
    assert_eq!(first.status_code, Some(200));

    let rotated = s.op.rotate_webhook_secret(&endpoint, false).await.unwrap();
    assert_ne!(rotated.secret, old);
    assert_eq!(rotated.generation, 2);
    assert!(rotated.previous_secret_until.is_some());
    s.op.test_webhook_endpoint(&endpoint).await.unwrap();
    let hit = r.hits().last().unwrap().clone();
    assert!(hit.verifies_with(&old) && hit.verifies_with(&rotated.secret));
    assert_eq!(
        hit.headers["webhook-signature"]
            .to_str()
            .unwrap()
            .split(' ')
            .count(),
        2
    );

    // A second rotation during the overlap needs `force`.
    match s.op.rotate_webhook_secret(&endpoint, false).await {
        Err(ClientError::Api(p)) => {
            assert_eq!((p.status, p.code.as_str()), (409, "rotation_in_progress"))
        }
        other => panic!("{other:?}"),
    }
    s.op.revoke_previous_webhook_secret(&endpoint)
        .await
        .unwrap();
    s.op.test_webhook_endpoint(&endpoint).await.unwrap();
    let hit = r.hits().last().unwrap().clone();
    assert!(!hit.verifies_with(&old) && hit.verifies_with(&rotated.secret));
    let forced = s.op.rotate_webhook_secret(&endpoint, true).await.unwrap();
    assert_eq!(forced.generation, 3);
    assert!(
        s.app
            .db
            .count_where("audit_log", "action = 'webhook.secret.rotate'")
            .await
            == 2
    );
    // No secret is stored.
    let dump = s.app.db.dump("webhook_endpoints").await.join("\n");
    for secret in [&old, &rotated.secret, &forced.secret] {
        assert!(!dump.contains(secret.trim_start_matches("whsec_")));
    }
}

#[tokio::test]
async fn gone_disables_retry_after_is_honoured_and_redirects_are_not_followed() {
    let s = setup(&[]).await;
    let r = Receiver::start().await;
    let (endpoint, _) = s.endpoint(&r.url(), &["render.completed"]).await;

    // 429 with Retry-After: 120 — the next attempt waits two minutes, not the schedule's 1 s.
    r.then(&[Reply::RetryAfter(429, 120)]);
    s.render().await;
    let m = eventually("a retrying message", || async {
        s.messages(&endpoint)
            .await
            .into_iter()
            .find(|m| m.attempts == 1 && m.status == WebhookMessageStatus::Pending)
    })
    .await;
    let detail = s.op.get_webhook_message(&m.id).await.unwrap();
    let started = detail.attempt_log[0].started_at;
    let wait = m.next_attempt_at.unwrap() - started;
    assert!(wait >= chrono::Duration::seconds(119), "{wait}");
    assert_eq!(detail.attempt_log[0].response_headers["retry-after"], "120");
    // Nothing else happens meanwhile (the schedule's 1 s would have tried again by now).
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(r.hits_of("render.completed").len(), 1);

    // A redirect is a failure, and is not followed.
    let (redirected, _) = s
        .endpoint(
            &format!("http://127.0.0.1:{}/moved", r.port),
            &["webhook.test"],
        )
        .await;
    r.then(&[Reply::Redirect]);
    let attempt = s.op.test_webhook_endpoint(&redirected).await.unwrap();
    assert!(!attempt.delivered);
    assert_eq!(attempt.status_code, Some(302));
    assert_eq!(attempt.error_class, Some(WebhookErrorClass::Redirect));
    assert!(r.hits().iter().all(|h| h.path != "/elsewhere"));

    // 410 Gone disables the endpoint at once; its waiting message fails.
    let (gone, _) = s.endpoint(&r.url(), &["render.started"]).await;
    r.then(&[Reply::Status(410)]);
    s.render().await;
    let ep = eventually("the endpoint disabled", || async {
        let e = s.op.get_webhook_endpoint(&gone).await.unwrap();
        (!e.enabled).then_some(e)
    })
    .await;
    assert!(ep.disabled_reason.unwrap().contains("410"));
    // The client's member is told by e-mail.
    let mail = s
        .app
        .mail_to("ada@example.com", "webhook_disabled")
        .await
        .expect("the endpoint-disabled mail");
    assert!(
        mail.text.contains(&r.url()) && mail.text.contains("410"),
        "{}",
        mail.text
    );
    let before = r.hits().len();
    s.render().await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        r.hits()
            .iter()
            .skip(before)
            .filter(|h| h.json()["type"] == "render.started")
            .count(),
        0,
        "a disabled endpoint gets nothing"
    );
    match s.op.test_webhook_endpoint(&gone).await {
        Err(ClientError::Api(p)) => assert_eq!(p.code, "endpoint_disabled"),
        other => panic!("{other:?}"),
    }
    // Enabling it again works.
    let back =
        s.op.update_webhook_endpoint(
            &gone,
            &WebhookEndpointPatch {
                enabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(back.enabled);
}

/// The receiver is down (503) for a while: after two failures the circuit opens and the other
/// messages wait without spending attempts; when it is back the probe closes the circuit and
/// every message arrives, each `webhook-id` delivered once.
#[tokio::test]
async fn a_receiver_that_is_down_opens_the_circuit_and_gets_everything_when_it_is_back() {
    let s = setup(&[
        ("AIRWAVE_WEBHOOK_CIRCUIT_FAILURES", "2"),
        ("AIRWAVE_WEBHOOK_CIRCUIT_COOLDOWN_SECS", "1"),
        ("AIRWAVE_WEBHOOK_RETRY_SCHEDULE", "5s,5s"),
    ])
    .await;
    let r = Receiver::start().await;
    let (endpoint, secret) = s.endpoint(&r.url(), &[]).await;
    r.answer(Reply::Status(503));
    for _ in 0..3 {
        s.render().await;
    }
    let ep = eventually("the circuit open", || async {
        let e = s.op.get_webhook_endpoint(&endpoint).await.unwrap();
        (e.circuit == airwave_api::WebhookCircuit::Open).then_some(e)
    })
    .await;
    assert!(ep.circuit_retry_at.is_some());
    eventually("every message held or probing", || async {
        let m = s.messages(&endpoint).await;
        (m.len() == 6 && m.iter().all(|m| m.status != WebhookMessageStatus::Failed)).then_some(())
    })
    .await;
    let failures_while_down = r.hits().len();
    r.answer(Reply::Status(200));
    eventually("every message delivered", || async {
        let m = s.messages(&endpoint).await;
        (m.len() == 6
            && m.iter()
                .all(|m| m.status == WebhookMessageStatus::Delivered))
        .then_some(())
    })
    .await;
    let ok: Vec<Hit> = r.hits().into_iter().skip(failures_while_down).collect();
    let mut ids: Vec<String> = ok.iter().map(Hit::id).collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(
        (before, ids.len()),
        (6, 6),
        "each message delivered once after the outage"
    );
    assert!(ok.iter().all(|h| h.verifies_with(&secret)));
    let ep = s.op.get_webhook_endpoint(&endpoint).await.unwrap();
    assert_eq!(ep.circuit, airwave_api::WebhookCircuit::Closed);
    assert_eq!(ep.consecutive_failures, 0);
}

#[tokio::test]
async fn recovery_since_t_redelivers_exactly_the_failed_messages_after_t() {
    let s = setup(&[
        ("AIRWAVE_WEBHOOK_RETRY_SCHEDULE", "none"),
        ("AIRWAVE_WEBHOOK_CIRCUIT_FAILURES", "100"),
    ])
    .await;
    let r = Receiver::start().await;
    let (endpoint, _) = s.endpoint(&r.url(), &["render.completed"]).await;
    r.answer(Reply::Status(500));
    s.render().await;
    let early = eventually("the first failure", || async {
        s.messages(&endpoint)
            .await
            .into_iter()
            .find(|m| m.status == WebhookMessageStatus::Failed)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let t = chrono::Utc::now();
    for _ in 0..3 {
        s.render().await;
    }
    eventually("four failed", || async {
        let m = s.messages(&endpoint).await;
        (m.iter()
            .filter(|m| m.status == WebhookMessageStatus::Failed)
            .count()
            == 4)
            .then_some(())
    })
    .await;
    let dry =
        s.op.recover_webhook_endpoint(
            &endpoint,
            &WebhookRecoverIn {
                since: t,
                dry_run: true,
            },
        )
        .await
        .unwrap();
    assert_eq!((dry.count, dry.recovery.is_none()), (3, true));
    assert_eq!(r.hits().len(), 4, "a dry run sends nothing");
    r.answer(Reply::Status(200));
    let started =
        s.op.recover_webhook_endpoint(
            &endpoint,
            &WebhookRecoverIn {
                since: t,
                dry_run: false,
            },
        )
        .await
        .unwrap();
    let recovery = started.recovery.unwrap();
    assert_eq!(recovery.total, 3);
    let done = eventually("the recovery done", || async {
        let r = s.op.get_webhook_recovery(&recovery.id).await.unwrap();
        (r.status == airwave_api::WebhookRecoveryStatus::Done).then_some(r)
    })
    .await;
    assert_eq!(done.done, 3);
    eventually("three delivered", || async {
        let m = s.messages(&endpoint).await;
        (m.iter()
            .filter(|m| m.status == WebhookMessageStatus::Delivered)
            .count()
            == 3)
            .then_some(())
    })
    .await;
    let m = s.messages(&endpoint).await;
    let still_failed: Vec<&str> = m
        .iter()
        .filter(|m| m.status == WebhookMessageStatus::Failed)
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(
        still_failed,
        [early.id.as_str()],
        "the one before T stays failed"
    );
}

/// The SSRF guard: private and special addresses refused at creation, literally or through a
/// name; a name that resolved public at creation and private at delivery refused at delivery.
#[tokio::test]
async fn endpoints_that_reach_private_addresses_are_refused_at_creation_and_at_delivery() {
    let ip = |s: &str| s.parse().unwrap();
    let zone: SharedZone = Arc::new(std::sync::RwLock::new(
        Zone::default()
            .no_cache()
            .ip("private.test", ip("10.1.2.3"))
            .ip("metadata.test", ip("169.254.169.254"))
            .ip("v6.test", ip("fd00::1"))
            .ip("rebind.test", ip("93.184.216.34")),
    ));
    let dns = Answerer::start_shared(zone.clone()).await;
    let dns_addr = dns.addr.to_string();
    let s = setup(&[("AIRWAVE_WEBHOOK_DNS_SERVER", &dns_addr)]).await;
    let try_create = |url: String| {
        let op = s.op.clone();
        let client_id = s.client_id.clone();
        async move {
            op.create_webhook_endpoint(&WebhookEndpointIn {
                client_id,
                url,
                event_types: vec![],
                description: None,
                headers: None,
                rate_limit_per_s: None,
            })
            .await
        }
    };
    for url in [
        "http://10.0.0.1/hook",
        "http://192.168.1.1/",
        "http://0.0.0.0:8080/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://[::1]/",
        "http://[fd00::1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://127.0.0.2/",
        "http://private.test/hook",
        "http://metadata.test/",
        "http://v6.test/",
        "ftp://example.com/",
        "http://user:pw@example.com/",
    ] {
        match try_create(url.into()).await {
            Err(ClientError::Api(p)) => {
                assert_eq!(p.status, 422, "{url}");
                assert!(
                    matches!(p.code.as_str(), "url_refused" | "invalid_url"),
                    "{url}: {}",
                    p.code
                );
            }
            other => panic!("{url} was not refused: {other:?}"),
        }
    }
    match try_create("http://nowhere.test/".into()).await {
        Err(ClientError::Api(p)) => assert_eq!(p.code, "url_unresolved"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.app.db.count("webhook_endpoints").await,
        0,
        "nothing half-written"
    );

    // Public at creation, private at delivery: refused then, and the receiver gets nothing.
    let r = Receiver::start().await;
    let created = try_create(format!("http://rebind.test:{}/hook", r.port))
        .await
        .unwrap();
    *zone.write().unwrap() = Zone::default()
        .no_cache()
        .ip("rebind.test", ip("127.0.0.2"));
    let attempt =
        s.op.test_webhook_endpoint(&created.endpoint.id)
            .await
            .unwrap();
    assert!(!attempt.delivered);
    assert_eq!(
        attempt.error_class,
        Some(WebhookErrorClass::Refused),
        "{attempt:?}"
    );
    assert!(attempt.error.unwrap().contains("127.0.0.2"));
    assert!(r.hits().is_empty());
}

#[tokio::test]
async fn members_manage_their_own_clients_endpoints_and_bad_input_is_refused_clearly() {
    let s = setup(&[]).await;
    let r = Receiver::start().await;
    let http = s.app.http();
    let token = s.member.token().unwrap().to_owned();
    let post = |path: &str, body: Value| {
        http.post(s.app.url(path))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    // A member creates one for their client through /api/webhooks.
    let res = post(
        "/api/webhooks/endpoints",
        json!({"client_id": s.client_id, "url": r.url(), "event_types": ["export.ready"], "headers": {"Authorization": "Bearer theirs"}}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(created["header_names"], json!(["authorization"]));
    // The secret and the header's value are not shown again.
    let got: Value = http
        .get(s.app.url(&format!("/api/webhooks/endpoints/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(got.get("secret").is_none());
    assert!(!got.to_string().contains("theirs"));
    // The custom header is sent; its value is redacted in the attempt log.
    let attempt: Value = post(&format!("/api/webhooks/endpoints/{id}/test"), json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(attempt["delivered"], true, "{attempt}");
    assert_eq!(r.hits()[0].headers["authorization"], "Bearer theirs");
    assert_eq!(attempt["request_headers"]["authorization"], "[redacted]");

    // Another member sees nothing of it; support reads but cannot change.
    let (_, eve) = s.app.member("eve@example.com").await;
    let res = http
        .get(s.app.url(&format!("/api/webhooks/endpoints/{id}")))
        .bearer_auth(eve.token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let (_, support) = s.app.user_with_role("sam@example.com", Role::Support).await;
    assert!(support.get_webhook_endpoint(&id).await.is_ok());
    match support.rotate_webhook_secret(&id, false).await {
        Err(ClientError::Api(p)) => assert_eq!(p.status, 403),
        other => panic!("{other:?}"),
    }

    // Bad input: a clear 4xx with a stable code, and nothing written.
    let before = s.app.db.count("webhook_endpoints").await;
    for (body, code) in [
        (
            json!({"client_id": s.client_id, "url": r.url(), "event_types": ["render.exploded"]}),
            "invalid_event_types",
        ),
        (
            json!({"client_id": s.client_id, "url": "not a url", "event_types": []}),
            "invalid_url",
        ),
        (
            json!({"client_id": "cli_nope", "url": r.url(), "event_types": []}),
            "invalid_client_id",
        ),
        (
            json!({"client_id": s.client_id, "url": r.url(), "event_types": [], "headers": {"webhook-id": "x"}}),
            "invalid_headers",
        ),
        (
            json!({"client_id": s.client_id, "url": r.url(), "event_types": [], "rate_limit_per_s": 100000}),
            "invalid_rate_limit",
        ),
        (
            json!({"client_id": s.client_id, "url": r.url(), "event_types": [], "surprise": 1}),
            "invalid_body",
        ),
    ] {
        let res = post("/api/webhooks/endpoints", body.clone()).await.unwrap();
        assert!(res.status().is_client_error(), "{body}");
        let p: Value = res.json().await.unwrap();
        assert_eq!(p["code"], code, "{body}: {p}");
    }
    assert_eq!(s.app.db.count("webhook_endpoints").await, before);

    // The catalogue lists every type with a schema.
    let types = s.member.webhook_event_types().await.unwrap();
    for t in [
        "render.started",
        "render.completed",
        "render.failed",
        "approval.received",
        "export.ready",
        "webhook.test",
    ] {
        let entry = types
            .iter()
            .find(|e| e.name == t)
            .unwrap_or_else(|| panic!("{t}"));
        assert_eq!(entry.schema["type"], "object");
    }
}

/// What an outage of the queue can leave behind — a pending message whose job was never
/// enqueued, and a message held on a circuit that closed meanwhile — is given back to delivery
/// by the repair sweep, and each is delivered once.
#[tokio::test]
async fn the_repair_sweep_delivers_messages_an_outage_left_without_a_job() {
    let s = setup(&[]).await;
    let r = Receiver::start().await;
    let (endpoint, secret) = s.endpoint(&r.url(), &[]).await;
    let mut vars: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    for (k, v) in s.app.env() {
        vars.insert(k.clone(), v.clone());
    }
    let config = airwave_server::config::Config::from_vars(&vars).unwrap();
    let state =
        airwave_server::startup::build_state(config, Arc::new(airwave_server::clock::SystemClock))
            .await
            .unwrap();
    let long_ago = chrono::Utc::now() - chrono::Duration::minutes(30);
    let ids: Vec<String> = (0..2)
        .map(|_| airwave_server::ids::WebhookMessageId::new(chrono::Utc::now()).to_string())
        .collect();
    for (id, status) in ids.iter().zip(["pending", "held"]) {
        let body = json!({"type": "export.ready", "timestamp": "2026-12-04T00:00:00.000Z", "data": {"export_id": id}}).to_string();
        airwave_server::with_db!(&state.db, pool => {
            sqlx::query(
                "INSERT INTO webhook_messages (id, endpoint_id, client_id, event_id, event_type, body, status, next_attempt_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 'export.ready', $5, $6, $7, $7, $7)",
            )
            .bind(id).bind(&endpoint).bind(&s.client_id).bind(format!("evt_{id}")).bind(&body).bind(status).bind(long_ago)
            .execute(pool).await.unwrap();
        });
    }
    // Nothing happens by itself (no job).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(r.hits().is_empty());
    let n = airwave_server::webhooks::deliver::repair(
        &state.db,
        &*state.queue,
        &*state.clock,
        chrono::Duration::minutes(5),
    )
    .await
    .unwrap();
    assert_eq!(n, 2);
    let hits = until_hits(&r, "export.ready", 2).await;
    let mut got: Vec<String> = hits.iter().map(Hit::id).collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want);
    assert!(hits.iter().all(|h| h.verifies_with(&secret)));
    // Repairing again asks for nothing: both are delivered.
    eventually("both recorded delivered", || async {
        let m = s.messages(&endpoint).await;
        (m.iter()
            .filter(|m| m.status == WebhookMessageStatus::Delivered)
            .count()
            == 2)
            .then_some(())
    })
    .await;
    let again = airwave_server::webhooks::deliver::repair(
        &state.db,
        &*state.queue,
        &*state.clock,
        chrono::Duration::minutes(5),
    )
    .await
    .unwrap();
    assert_eq!(again, 0);
    assert_eq!(r.hits().len(), 2);
}
