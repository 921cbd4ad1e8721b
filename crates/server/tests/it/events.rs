//! Events reach every consumer: per-consumer positions, leases, retries, parking, and the outbox
//! and ops log read in commit order. On whichever database `AIRWAVE_TEST_DB` selects.

use airwave_server::clock::{Clock, ManualClock};
use airwave_server::db::{BeginWrite as _, Db};
use airwave_server::events::dispatcher::{self, DispatchPolicy, Dispatcher};
use airwave_server::events::outbox::{self, Position};
use airwave_server::events::{Consumer, Delivery, DeliveryError};
use airwave_server::health::HealthCheck as _;
use airwave_server::{emit_event, with_db};
use async_trait::async_trait;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const TYPE: &str = "test.happened";

/// A consumer that records every delivery; it can fail, or hang on the n-th event it is given.
struct Recorder {
    name: String,
    got: Mutex<Vec<(String, String, String)>>,
    fail: AtomicBool,
    permanent: AtomicBool,
    /// Hang (forever) when handed its n-th delivery, counting from 1; 0: never.
    hang_at: AtomicUsize,
    started: AtomicUsize,
}

impl Recorder {
    fn new(name: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            got: Mutex::new(Vec::new()),
            fail: AtomicBool::new(false),
            permanent: AtomicBool::new(false),
            hang_at: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
        })
    }

    /// (key, event id, subject) of each successful delivery, in order.
    fn got(&self) -> Vec<(String, String, String)> {
        self.got.lock().unwrap().clone()
    }

    fn ids(&self) -> HashSet<String> {
        self.got().into_iter().map(|(_, id, _)| id).collect()
    }
}

#[async_trait]
impl Consumer for Recorder {
    fn name(&self) -> &str {
        &self.name
    }

    fn event_types(&self) -> &[&'static str] {
        &[TYPE]
    }

    async fn deliver(&self, d: &Delivery<'_>) -> Result<(), DeliveryError> {
        let n = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        if self.hang_at.load(Ordering::SeqCst) == n {
            std::future::pending::<()>().await;
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(if self.permanent.load(Ordering::SeqCst) {
                DeliveryError::permanent("the receiver says no for good")
            } else {
                DeliveryError::retryable(format!("receiver down (try {})", d.attempt))
            });
        }
        self.got
            .lock()
            .unwrap()
            .push((d.key.clone(), d.event.id.clone(), d.event.subject.clone()));
        Ok(())
    }
}

fn dispatcher(
    db: &Db,
    clock: Arc<ManualClock>,
    consumers: &[Arc<Recorder>],
    instance: &str,
) -> Dispatcher {
    Dispatcher {
        db: db.clone(),
        clock,
        consumers: consumers
            .iter()
            .map(|c| c.clone() as Arc<dyn Consumer>)
            .collect(),
        policy: DispatchPolicy {
            batch: 10,
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(5),
            max_attempts: 2,
            ..DispatchPolicy::default()
        },
        instance: instance.into(),
    }
}

/// Commits one event about `subject`; returns its id.
async fn emit(db: &Db, clock: &dyn Clock, subject: &str, n: usize) -> String {
    let now = clock.now();
    with_db!(db, pool => {
        let mut tx = pool.begin_write().await.unwrap();
        emit_event!(&mut *tx, now, TYPE, subject, json!({"n": n})).unwrap();
        tx.commit().await.unwrap();
    });
    let id: String = with_db!(db, pool => {
        sqlx::query_scalar("SELECT id FROM events ORDER BY seq DESC LIMIT 1").fetch_one(pool).await.unwrap()
    });
    id
}

/// Runs passes over every consumer until nothing is owed to any of them. (On PostgreSQL an
/// event becomes readable once every older transaction of the cluster has ended, so another
/// test's open transaction can delay it for a moment.)
async fn drain(d: &Dispatcher) {
    for _ in 0..6000 {
        for c in &d.consumers {
            d.run_consumer_once(c.as_ref()).await.unwrap();
        }
        let lags = dispatcher::lag(&d.db, d.clock.as_ref(), &d.consumers)
            .await
            .unwrap();
        if lags.iter().all(|l| l.undelivered == 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the dispatcher never ran dry");
}

/// Waits until `n` events of the test type are final (readable): on PostgreSQL an event becomes
/// readable once every older transaction of the cluster has ended.
async fn wait_final(db: &Db, n: usize) {
    for _ in 0..6000 {
        if outbox::read_after(db, Position::START, 1000)
            .await
            .unwrap()
            .len()
            >= n
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the events never became readable");
}

/// One pass over `c` that reads something (retrying while the events are not final yet).
async fn pass_reading(d: &Dispatcher, c: &dyn Consumer) -> dispatcher::Pass {
    for _ in 0..6000 {
        let p = d.run_consumer_once(c).await.unwrap();
        if p.read > 0 || p.tried > 0 {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("nothing became readable");
}

#[tokio::test]
async fn two_consumers_of_one_type_both_get_every_event_across_a_killed_dispatcher() {
    let (db, _dir) = crate::fresh_db().await;
    let clock = crate::clock();
    let a = Recorder::new("test-a");
    let b = Recorder::new("test-b");
    let first = dispatcher(&db, clock.clone(), &[a.clone(), b.clone()], "instance-1");
    first.register().await.unwrap();
    let mut emitted: Vec<(String, String)> = Vec::new();
    for n in 0..60 {
        let subject = format!("sub_{}", n % 6);
        emitted.push((emit(&db, clock.as_ref(), &subject, n).await, subject));
    }
    // `a` hangs in the middle of a batch; `b` must still get everything.
    a.hang_at.store(25, Ordering::SeqCst);
    let stop = CancellationToken::new();
    let task = tokio::spawn(first.clone().run_until_stopped(stop.clone()));
    for _ in 0..6000 {
        if b.got().len() == 60 && a.started.load(Ordering::SeqCst) >= 25 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(b.got().len(), 60, "the other consumer was held back");
    assert_eq!(a.got().len(), 24, "a hangs on its 25th event");
    // Kill the dispatcher mid-delivery (no release of its leases), let its lease run out, and
    // start another instance.
    task.abort();
    let _ = task.await;
    clock.advance(chrono::Duration::seconds(31));
    let second = dispatcher(&db, clock.clone(), &[a.clone(), b.clone()], "instance-2");
    drain(&second).await;

    let all: HashSet<String> = emitted.iter().map(|(id, _)| id.clone()).collect();
    for c in [&a, &b] {
        assert_eq!(c.ids(), all, "{} missed events", c.name);
        // Duplicates only with the same key, and only the event in flight when it was killed.
        let mut keys: HashMap<String, HashSet<String>> = HashMap::new();
        for (key, id, _) in c.got() {
            assert_eq!(key, format!("{}:{id}", c.name));
            keys.entry(id).or_default().insert(key);
        }
        assert!(keys.values().all(|k| k.len() == 1));
        // Each subject's events arrive in commit order (first deliveries).
        let mut seen = HashSet::new();
        let firsts: Vec<(String, String)> = c
            .got()
            .into_iter()
            .filter(|(_, id, _)| seen.insert(id.clone()))
            .map(|(_, id, s)| (id, s))
            .collect();
        for s in 0..6 {
            let subject = format!("sub_{s}");
            let want: Vec<&String> = emitted
                .iter()
                .filter(|(_, x)| *x == subject)
                .map(|(id, _)| id)
                .collect();
            let got: Vec<&String> = firsts
                .iter()
                .filter(|(_, x)| *x == subject)
                .map(|(id, _)| id)
                .collect();
            assert_eq!(got, want, "{}: {subject} out of order", c.name);
        }
    }
    // At most the event in flight when it was killed comes twice (its delivery may have ended
    // before its position was written).
    for c in [&a, &b] {
        assert!(
            (60..=61).contains(&c.got().len()),
            "{}: {}",
            c.name,
            c.got().len()
        );
    }
    let lags = dispatcher::lag(&db, clock.as_ref(), &second.consumers)
        .await
        .unwrap();
    assert!(
        lags.iter()
            .all(|l| l.undelivered == 0 && l.oldest_undelivered_at.is_none()),
        "{lags:?}"
    );
}

#[tokio::test]
async fn a_failing_consumer_parks_its_events_and_holds_back_only_their_subjects() {
    let (db, _dir) = crate::fresh_db().await;
    let clock = crate::clock();
    let a = Recorder::new("test-failing");
    let b = Recorder::new("test-fine");
    let d = dispatcher(&db, clock.clone(), &[a.clone(), b.clone()], "instance-1");
    d.register().await.unwrap();
    a.fail.store(true, Ordering::SeqCst);
    let x1 = emit(&db, clock.as_ref(), "sub_x", 1).await;
    let x2 = emit(&db, clock.as_ref(), "sub_x", 2).await;
    let y1 = emit(&db, clock.as_ref(), "sub_y", 3).await;
    wait_final(&db, 3).await;

    let pb = pass_reading(&d, b.as_ref()).await;
    assert_eq!((pb.tried, pb.failed), (3, 0));
    assert_eq!(
        b.ids().len(),
        3,
        "the healthy consumer got everything at once"
    );

    let pa = pass_reading(&d, a.as_ref()).await;
    assert_eq!(
        (pa.tried, pa.failed),
        (2, 2),
        "x2 waits behind x1 without being tried"
    );
    let lag = &dispatcher::lag(&db, clock.as_ref(), &d.consumers)
        .await
        .unwrap()[0];
    assert_eq!((lag.undelivered, lag.pending, lag.parked), (3, 3, 0));
    assert!(lag.oldest_undelivered_at.is_some());

    // Not due yet: nothing is tried. After the backoff the second try fails too: parked.
    assert_eq!(d.run_consumer_once(a.as_ref()).await.unwrap().tried, 0);
    clock.advance(chrono::Duration::minutes(10));
    let pa = d.run_consumer_once(a.as_ref()).await.unwrap();
    assert_eq!((pa.tried, pa.failed), (2, 2));
    let parked = dispatcher::pending(&db, "test-failing", true, 100)
        .await
        .unwrap();
    let parked_ids: Vec<&str> = parked.iter().map(|p| p.event_id.as_str()).collect();
    assert_eq!(parked_ids, vec![x1.as_str(), y1.as_str()]);
    assert!(parked
        .iter()
        .all(|p| p.attempts == 2 && p.last_error.as_deref() == Some("receiver down (try 2)")));
    // Parked events are never retried by themselves.
    clock.advance(chrono::Duration::days(1));
    assert_eq!(d.run_consumer_once(a.as_ref()).await.unwrap().tried, 0);

    // The health check says so.
    let check = airwave_server::events::health::EventLagCheck {
        db: db.clone(),
        clock: clock.clone(),
        consumers: d.consumers.clone(),
        warn_after: Duration::from_secs(7 * 86_400),
        fail_after: Duration::from_secs(8 * 86_400),
    };
    let out = check.check().await;
    assert_eq!(out.status, airwave_api::HealthStatus::Warn);
    assert!(out.output.unwrap().contains("test-failing: 2 parked"));

    // The receiver is back; an operator retries: x1 and y1 go, then x2 behind x1, in order.
    a.fail.store(false, Ordering::SeqCst);
    let actor = airwave_server::audit::Actor::default();
    let n = dispatcher::retry_parked(&db, clock.as_ref(), &actor, "test-failing", None)
        .await
        .unwrap();
    assert_eq!(n, 2);
    drain(&d).await;
    let order: Vec<String> = a.got().into_iter().map(|(_, id, _)| id).collect();
    assert_eq!(order, vec![x1.clone(), y1.clone(), x2.clone()]);
    let lag = &dispatcher::lag(&db, clock.as_ref(), &d.consumers)
        .await
        .unwrap()[0];
    assert_eq!((lag.undelivered, lag.pending, lag.parked), (0, 0, 0));
    let audited: i64 = with_db!(&db, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'events.retry_parked'").fetch_one(pool).await.unwrap()
    });
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn a_permanent_failure_is_parked_at_once() {
    let (db, _dir) = crate::fresh_db().await;
    let clock = crate::clock();
    let a = Recorder::new("test-permanent");
    a.fail.store(true, Ordering::SeqCst);
    a.permanent.store(true, Ordering::SeqCst);
    let d = dispatcher(&db, clock.clone(), std::slice::from_ref(&a), "instance-1");
    d.register().await.unwrap();
    emit(&db, clock.as_ref(), "sub_p", 1).await;
    pass_reading(&d, a.as_ref()).await;
    let parked = dispatcher::pending(&db, "test-permanent", true, 10)
        .await
        .unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].attempts, 1);
}

#[tokio::test]
async fn a_second_instance_does_not_deliver_while_the_first_holds_the_lease() {
    let (db, _dir) = crate::fresh_db().await;
    let clock = crate::clock();
    let a = Recorder::new("test-leased");
    let one = dispatcher(&db, clock.clone(), std::slice::from_ref(&a), "instance-1");
    let two = dispatcher(&db, clock.clone(), std::slice::from_ref(&a), "instance-2");
    one.register().await.unwrap();
    emit(&db, clock.as_ref(), "sub_l", 1).await;
    assert_eq!(pass_reading(&one, a.as_ref()).await.tried, 1);
    emit(&db, clock.as_ref(), "sub_l", 2).await;
    assert!(two.run_consumer_once(a.as_ref()).await.unwrap().not_ours);
    // Released at shutdown: the other instance goes on at once.
    one.release().await.unwrap();
    assert_eq!(pass_reading(&two, a.as_ref()).await.tried, 1);
    assert_eq!(a.got().len(), 2);
}

/// Writers that overlap (each transaction sleeps between its inserts, some roll back) and one
/// reader following "after my position": every committed row is read exactly once.
#[tokio::test]
async fn the_outbox_reader_never_skips_a_row_that_commits_late() {
    let (db, _dir) = crate::fresh_db().await;
    let clock = crate::clock();
    let done = CancellationToken::new();
    let mut writers = Vec::new();
    for w in 0..2 {
        let db = db.clone();
        let clock = clock.clone();
        writers.push(tokio::spawn(async move {
            let mut committed = Vec::new();
            for i in 0..40 {
                let now = clock.now();
                let ids = [format!("{w}-{i}-a"), format!("{w}-{i}-b")];
                with_db!(&db, pool => {
                    let mut tx = pool.begin_write().await.unwrap();
                    emit_event!(&mut *tx, now, TYPE, &ids[0], json!({})).unwrap();
                    tokio::time::sleep(Duration::from_millis((i * 7 + w * 3) % 5)).await;
                    emit_event!(&mut *tx, now, TYPE, &ids[1], json!({})).unwrap();
                    if i % 9 == 4 {
                        tx.rollback().await.unwrap();
                    } else {
                        tx.commit().await.unwrap();
                        committed.extend(ids);
                    }
                });
            }
            committed
        }));
    }
    let reader = {
        let db = db.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut at = Position::START;
            let mut read: Vec<String> = Vec::new();
            loop {
                let finished = done.is_cancelled();
                let batch = outbox::read_after(&db, at, 7).await.unwrap();
                if let Some(last) = batch.last() {
                    at = last.position;
                }
                let empty = batch.is_empty();
                read.extend(batch.into_iter().map(|e| e.subject));
                // Done when the writers are and nothing committed is left after the position
                // (rows can be committed but not yet final while another test's transaction
                // holds the cluster's xmin back: wait for them, do not stop early).
                if finished && empty && outbox::count_after(&db, at, &[TYPE]).await.unwrap().0 == 0
                {
                    return read;
                }
                if empty {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    let mut committed = Vec::new();
    for w in writers {
        committed.extend(w.await.unwrap());
    }
    done.cancel();
    let read = reader.await.unwrap();
    let unique: HashSet<&String> = read.iter().collect();
    assert_eq!(unique.len(), read.len(), "a row was read twice");
    assert_eq!(
        unique,
        committed.iter().collect::<HashSet<_>>(),
        "a row was skipped (or a rolled-back one read)"
    );
}

/// The deterministic case on PostgreSQL: a transaction that began first and commits last.
#[tokio::test]
async fn an_event_committed_late_is_read_after_one_committed_early() {
    let (db, _dir) = crate::fresh_db().await;
    let Db::Postgres(pool) = &db else { return };
    let now = chrono::Utc::now();
    let mut late = pool.begin().await.unwrap();
    emit_event!(&mut *late, now, TYPE, "late", json!({})).unwrap();
    let mut early = pool.begin().await.unwrap();
    emit_event!(&mut *early, now, TYPE, "early", json!({})).unwrap();
    early.commit().await.unwrap();
    let first = outbox::read_after(&db, Position::START, 10).await.unwrap();
    assert!(
        first.is_empty(),
        "nothing is final while the older transaction runs: {first:?}"
    );
    late.commit().await.unwrap();
    // Once every older transaction of the cluster has ended (other tests run beside this one).
    let mut all = Vec::new();
    for _ in 0..6000 {
        all = outbox::read_after(&db, Position::START, 10).await.unwrap();
        if all.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let subjects: Vec<&str> = all.iter().map(|e| e.subject.as_str()).collect();
    assert_eq!(subjects, vec!["late", "early"]);
}

/// The live stream's log, appended to by several tasks at once and followed by id.
#[tokio::test]
async fn the_ops_log_reader_never_skips_an_append() {
    let (db, _dir) = crate::fresh_db().await;
    let done = CancellationToken::new();
    let mut writers = Vec::new();
    for w in 0..3 {
        let db = db.clone();
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..40 {
                let id = airwave_server::ops::log::append(
                    &db,
                    chrono::Utc::now(),
                    "test",
                    &json!({"w": w, "i": i}),
                )
                .await
                .unwrap();
                ids.push(id);
            }
            ids
        }));
    }
    let reader = {
        let db = db.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut last = 0;
            let mut read = Vec::new();
            loop {
                let finished = done.is_cancelled();
                let rows = airwave_server::ops::log::after(&db, last, 5).await.unwrap();
                if let Some(r) = rows.last() {
                    last = r.id;
                }
                let empty = rows.is_empty();
                read.extend(rows.into_iter().map(|r| r.id));
                if finished && empty {
                    return read;
                }
                if empty {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    let mut appended = Vec::new();
    for w in writers {
        appended.extend(w.await.unwrap());
    }
    done.cancel();
    let read = reader.await.unwrap();
    appended.sort_unstable();
    assert_eq!(read, appended, "the reader skipped or repeated an append");
}

/// A consumer's position moves past events it does not take, so a consumer of rare event types
/// does not read the same others again on every pass.
#[tokio::test]
async fn the_position_moves_past_events_of_other_types() {
    let (db, _dir) = crate::fresh_db().await;
    let clock = crate::clock();
    let a = Recorder::new("test-rare");
    let d = dispatcher(&db, clock.clone(), std::slice::from_ref(&a), "instance-1");
    d.register().await.unwrap();
    let now = clock.now();
    for i in 0..5 {
        with_db!(&db, pool => {
            let mut tx = pool.begin_write().await.unwrap();
            emit_event!(&mut *tx, now, "other.type", &format!("sub_{i}"), json!({})).unwrap();
            tx.commit().await.unwrap();
        });
    }
    let last: i64 = with_db!(&db, pool => {
        sqlx::query_scalar("SELECT MAX(seq) FROM events").fetch_one(pool).await.unwrap()
    });
    for _ in 0..6000 {
        let p = d.run_consumer_once(a.as_ref()).await.unwrap();
        assert_eq!(p.tried, 0, "none of its type");
        let at: i64 = with_db!(&db, pool => {
            sqlx::query_scalar("SELECT cursor_seq FROM event_consumers WHERE name = 'test-rare'").fetch_one(pool).await.unwrap()
        });
        if at == last {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the position never moved past the other events");
}
