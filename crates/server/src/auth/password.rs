//! Password hashing with argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes), off the async
//! runtime so a burst of logins cannot stall other requests, and **bounded**: at most one hash per
//! core runs at once, a short queue waits, and past it the answer is `503 busy` with
//! `Retry-After` — so a flood of unauthenticated logins or registrations costs at most
//! cores × 19 MiB, not 19 MiB each.

use crate::domain::Password;
use crate::error::{Error, Result};
use argon2::password_hash::{
    self, rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Hashes that may wait for a core, per core.
const QUEUE_PER_CORE: usize = 4;

type Work = Box<dyn FnOnce() + Send>;

/// One hashing thread per core, fed from a short queue. Dedicated threads (not the runtime's
/// blocking pool, which grows to hundreds) also bound the allocator: each thread reuses its own
/// 19 MiB instead of every new thread keeping another copy.
struct Gate {
    queue: std::sync::mpsc::SyncSender<Work>,
    /// Hashes queued or running.
    in_flight: Arc<AtomicUsize>,
    max_in_flight: usize,
}

impl Gate {
    fn new(cores: usize) -> Self {
        let max_in_flight = cores * (1 + QUEUE_PER_CORE);
        // Room for every admitted hash, so admission is decided by `in_flight` alone.
        let (queue, rx) = std::sync::mpsc::sync_channel::<Work>(max_in_flight);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..cores {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || loop {
                    let next = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match next {
                        Ok(work) => work(),
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        Self {
            queue,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight,
        }
    }
}

static GATE: LazyLock<Gate> = LazyLock::new(|| {
    Gate::new(std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get))
});

fn busy() -> Error {
    Error::Unavailable {
        code: "busy",
        detail: "the server is busy checking passwords; try again in a moment".into(),
        retry_after: Duration::from_secs(1),
    }
}

/// Runs `work` on a hashing thread; `503 busy` when every thread is busy and the queue is full.
async fn bounded<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    bounded_on(&GATE, work).await
}

async fn bounded_on<T: Send + 'static>(
    gate: &Gate,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    if gate.in_flight.fetch_add(1, Ordering::AcqRel) >= gate.max_in_flight {
        gate.in_flight.fetch_sub(1, Ordering::AcqRel);
        return Err(busy());
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let in_flight = gate.in_flight.clone();
    let job: Work = Box::new(move || {
        // A panicking hash is an error for its request, never a dead thread or a lost place.
        let out =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|_| {
                Err(Error::Internal(anyhow::anyhow!(
                    "password hashing panicked"
                )))
            });
        in_flight.fetch_sub(1, Ordering::AcqRel);
        let _ = tx.send(out);
    });
    if gate.queue.try_send(job).is_err() {
        gate.in_flight.fetch_sub(1, Ordering::AcqRel);
        return Err(busy());
    }
    rx.await
        .map_err(|_| Error::Internal(anyhow::anyhow!("a password hashing thread died")))?
}

/// Whether `e` is the gate's `503 busy`.
pub fn is_busy(e: &Error) -> bool {
    matches!(e, Error::Unavailable { code: "busy", .. })
}

/// Most Argon2 memory a stored hash may ask for (KiB); ours use 19 MiB.
const MAX_M_COST: u32 = 64 * 1024;

thread_local! {
    /// This hashing thread's Argon2 memory, reused by every hash it runs.
    static MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn internal(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(anyhow::anyhow!("{what}: {e}"))
}

/// Argon2 of `pwd` and `salt` into `out`, in this thread's reused memory.
fn argon2_into(
    argon: &Argon2<'_>,
    pwd: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    MEMORY.with(|m| {
        let mut m = m.borrow_mut();
        let need = argon.params().block_count();
        if m.len() < need {
            m.resize(need, Block::default());
        }
        argon.hash_password_into_with_memory(pwd, salt, out, &mut m[..need])
    })
}

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) of `pwd` with a fresh salt.
fn hash_now(pwd: &[u8]) -> Result<String> {
    let argon = Argon2::default();
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_buf)
        .map_err(|e| internal("argon2 salt", e))?;
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        argon2_into(&argon, pwd, salt_bytes, out).map_err(password_hash::Error::from)
    })
    .map_err(|e| internal("argon2 hash failed", e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params()).map_err(|e| internal("argon2 params", e))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `candidate` hashes to the PHC string `stored` (compared in constant time).
fn verify_now(stored: &str, candidate: &[u8]) -> Result<bool> {
    let unreadable = |e: password_hash::Error| internal("stored hash unreadable", e);
    let parsed = PasswordHash::new(stored).map_err(unreadable)?;
    let params = Params::try_from(&parsed).map_err(unreadable)?;
    if params.m_cost() > MAX_M_COST || params.t_cost() > 16 || params.p_cost() > 16 {
        return Err(internal(
            "stored hash unreadable",
            "asks for too much memory",
        ));
    }
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(unreadable)?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(|e| internal("stored hash unreadable", e))?,
        None => Version::default(),
    };
    let (Some(expected), Some(salt)) = (parsed.hash, parsed.salt) else {
        return Err(internal("stored hash unreadable", "no salt or hash"));
    };
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(unreadable)?;
    let argon = Argon2::new(algorithm, version, params);
    let computed = Output::init_with(expected.len(), |out| {
        argon2_into(&argon, candidate, salt_bytes, out).map_err(password_hash::Error::from)
    })
    .map_err(|e| internal("argon2 verify failed", e))?;
    // `Output`'s equality is constant-time.
    Ok(computed == expected)
}

pub async fn hash(password: &Password) -> Result<String> {
    let pw = password.expose().to_owned();
    bounded(move || hash_now(pw.as_bytes())).await
}

/// Whether `candidate` matches `stored`. With `stored = None` (no such user) a dummy hash is
/// checked anyway, so the answer takes as long either way.
pub async fn verify(stored: Option<String>, candidate: &str) -> Result<bool> {
    let candidate = candidate.to_owned();
    bounded(move || {
        let known = stored.is_some();
        let stored = match stored {
            Some(s) => s,
            None => dummy_hash()?,
        };
        Ok(verify_now(&stored, candidate.as_bytes())? && known)
    })
    .await
}

/// The argon2id hash of a random password nobody knows, with the same parameters, made once.
fn dummy_hash() -> Result<String> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h.clone());
    }
    let h = hash_now(crate::auth::signing::random_token("").as_bytes())?;
    Ok(DUMMY.get_or_init(|| h).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let pw = Password::parse("correct horse battery", None).unwrap();
        let h = hash(&pw).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(Some(h.clone()), "correct horse battery")
            .await
            .unwrap());
        assert!(!verify(Some(h), "wrong horse battery").await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_hashes_runs_one_per_core_a_short_queue_waits_and_the_rest_come_back_later()
    {
        let gate = Arc::new(Gate::new(2));
        let peak = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        // The hashes block until released, so nothing finishes while the flood arrives.
        let release = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (gate, peak, now, release) =
                    (gate.clone(), peak.clone(), now.clone(), release.clone());
                tokio::spawn(async move {
                    bounded_on(&gate, move || {
                        let n = now.fetch_add(1, Ordering::AcqRel) + 1;
                        peak.fetch_max(n, Ordering::AcqRel);
                        let (lock, cv) = &*release;
                        let _g = cv.wait_while(lock.lock().unwrap(), |r| !*r).unwrap();
                        now.fetch_sub(1, Ordering::AcqRel);
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        for _ in 0..2000 {
            if gate.in_flight.load(Ordering::Acquire) == gate.max_in_flight {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        *release.0.lock().unwrap() = true;
        release.1.notify_all();
        let (mut ran, mut refused) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => ran += 1,
                Err(e) if is_busy(&e) => refused += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(peak.load(Ordering::Acquire), 2, "one per core at once");
        assert_eq!(
            (ran, refused),
            (2 + 2 * QUEUE_PER_CORE, 200 - 2 - 2 * QUEUE_PER_CORE)
        );
    }

    #[test]
    fn hashes_are_standard_phc_strings_the_argon2_crate_verifies_and_vice_versa() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let ours = hash_now(b"correct horse battery").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse battery", &parsed)
            .is_ok());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        assert!(verify_now(&theirs, b"correct horse battery").unwrap());
        assert!(!verify_now(&theirs, b"wrong horse battery").unwrap());
        assert!(verify_now(
            "$argon2id$v=19$m=9999999,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            b"x"
        )
        .is_err());
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        assert!(!verify(None, "anything at all").await.unwrap());
    }
}
