//! Sign-in limits: failed logins counted per account and per source address, and a bound on
//! how many password hashes run at once.
//!
//! Each login attempt is counted *before* its password is checked, so a burst of concurrent
//! guesses cannot slip past the limit while the hashes run; a successful login takes its
//! attempt back and clears the account's count. Once an account or an address has used up
//! its attempts in a window, further attempts are refused with 429 and `Retry-After` until
//! the window has passed again, the right password included: a lock that the right password
//! opened would tell a guesser when they had won. The lock always decays, so nobody is
//! locked out for good, and the moment a lock starts is the one thing written to the audit
//! log (once per lock, not per refused attempt, so a flood cannot grow the log).
//!
//! The counts live in two LRU maps of bounded size: a flood of made-up usernames or
//! addresses evicts the oldest entries instead of growing the server's memory. An attacker
//! could evict an account's count that way only by spending a password hash per eviction,
//! and hashes are bounded too: at most [`Limits::hashing_permits`] run at once and at most
//! [`Limits::hashing_queue`] wait; anything beyond is refused with 503 and `Retry-After`
//! before any work is done. One address holds at most [`Limits::hashing_per_address`] of those
//! places, so a flood from one address is refused on its own while everyone else's logins
//! still get in.
//!
//! The source address is the TCP peer ([`PeerAddr`]): behind a reverse proxy every visitor
//! shares the proxy's address, so the per-address limit is set well above the per-account
//! one. IPv6 peers are counted per /64, the block one subscriber usually holds.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lru::LruCache;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The sign-in limits in force.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Login attempts one account may fail within [`Limits::window`].
    pub account_attempts: u32,
    /// Login attempts one source address may fail within [`Limits::window`], whatever the
    /// usernames.
    pub address_attempts: u32,
    /// How long failed attempts are remembered, and how long a lock lasts.
    pub window: Duration,
    /// Accounts and addresses tracked at most, each; the least recently seen are forgotten.
    pub tracked: NonZeroUsize,
    /// Password hashes that may run at once.
    pub hashing_permits: usize,
    /// Logins that may wait for a hashing permit; more are refused with 503.
    pub hashing_queue: usize,
    /// Logins from one address (IPv6: one /64) that may be running or waiting at once;
    /// more from that address are refused with 503.
    pub hashing_per_address: usize,
    /// A rotated refresh token used again within this long is refused but leaves its session
    /// alive (two tabs of the console refreshing at once); later, the session is revoked.
    pub refresh_reuse_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Limits {
            account_attempts: 10,
            address_attempts: 100,
            window: Duration::from_secs(15 * 60),
            tracked: NonZeroUsize::new(10_000).expect("non-zero"),
            // Half the cores, so that hashing never takes every core from the requests
            // that do not hash.
            hashing_permits: (cpus / 2).max(1),
            hashing_queue: 32,
            hashing_per_address: 4,
            refresh_reuse_grace: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// The defaults, with the window taken from `SUIJI_LOGIN_WINDOW_SECS` and the attempts
    /// from `SUIJI_LOGIN_ACCOUNT_ATTEMPTS` and `SUIJI_LOGIN_ADDRESS_ATTEMPTS` where set.
    pub fn from_env() -> Limits {
        fn var<T: std::str::FromStr>(name: &str) -> Option<T> {
            let value = std::env::var(name).ok()?;
            let parsed = value.trim().parse().ok();
            if parsed.is_none() {
                tracing::warn!(name, value, "ignoring an unreadable setting");
            }
            parsed
        }
        let mut limits = Limits::default();
        if let Some(secs) = var::<u64>("SUIJI_LOGIN_WINDOW_SECS").filter(|s| *s > 0) {
            limits.window = Duration::from_secs(secs);
        }
        if let Some(n) = var::<u32>("SUIJI_LOGIN_ACCOUNT_ATTEMPTS").filter(|n| *n > 0) {
            limits.account_attempts = n;
        }
        if let Some(n) = var::<u32>("SUIJI_LOGIN_ADDRESS_ATTEMPTS").filter(|n| *n > 0) {
            limits.address_attempts = n;
        }
        limits
    }
}

/// Why a login was turned away before its password was looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Too many failed attempts for this account or from this address: 429.
    Throttled {
        /// When to try again.
        retry_after: Duration,
    },
    /// Too many logins are already waiting for a password check: 503.
    Busy {
        /// When to try again.
        retry_after: Duration,
    },
}

impl Refusal {
    /// The HTTP status the refusal is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Whole seconds to wait, rounded up, at least 1: the `Retry-After` value.
    pub fn retry_after_secs(&self) -> u64 {
        let (Refusal::Throttled { retry_after } | Refusal::Busy { retry_after }) = self;
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        secs.max(1)
    }

    /// The `Retry-After` header value.
    pub fn retry_after_header(&self) -> HeaderValue {
        HeaderValue::from(self.retry_after_secs())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let secs = self.retry_after_secs();
        let (code, message) = match self {
            Refusal::Throttled { .. } => (
                "too_many_attempts",
                format!("too many failed logins; try again in {secs} s"),
            ),
            Refusal::Busy { .. } => (
                "busy",
                format!("too many logins at once; try again in {secs} s"),
            ),
        };
        let body = json!({"error": {"code": code, "message": message, "retry_after": secs}});
        let mut response = (self.status(), axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, self.retry_after_header());
        response
    }
}

/// What a lock that has just started covers, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lock {
    /// The account of this username.
    Account(String),
    /// This source address (an IPv6 address stands for its /64).
    Address(IpAddr),
}

/// A login attempt refused by the limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    /// The answer to give.
    pub refusal: Refusal,
    /// The lock this attempt started, if it is the first one refused: to be audited.
    pub started: Option<Lock>,
}

#[derive(Debug, Clone)]
struct Window {
    started: Instant,
    attempts: u32,
    locked_until: Option<Instant>,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            started: now,
            attempts: 0,
            locked_until: None,
        }
    }

    /// Counts an attempt: `Ok` if allowed, else how long the lock has still to run and
    /// whether it started now.
    fn attempt(
        &mut self,
        now: Instant,
        allowed: u32,
        window: Duration,
    ) -> Result<(), (Duration, bool)> {
        match self.locked_until {
            Some(until) if until > now => return Err((until - now, false)),
            Some(_) => *self = Window::new(now),
            None if now.duration_since(self.started) >= window => *self = Window::new(now),
            None => {}
        }
        if self.attempts >= allowed {
            let until = now + window;
            self.locked_until = Some(until);
            return Err((window, true));
        }
        self.attempts += 1;
        Ok(())
    }
}

/// The sign-in limits' memory and the password hashing bound; one per server.
pub struct Throttle {
    limits: Limits,
    accounts: Mutex<LruCache<String, Window>>,
    addresses: Mutex<LruCache<IpAddr, Window>>,
    /// Logins admitted to hash: running plus waiting.
    admission: Arc<Semaphore>,
    hashing: Arc<Semaphore>,
    /// Admitted logins by address key; an address is here only while it holds a place, so
    /// the map never holds more than the admission bound.
    places: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The right to run one password hash; held until the hash is done.
#[derive(Debug)]
pub struct HashPermit {
    _hashing: OwnedSemaphorePermit,
    _admission: Option<Admission>,
}

/// A login's place among those admitted to hash (running or waiting), given back when dropped.
#[derive(Debug)]
pub struct Admission {
    _place: OwnedSemaphorePermit,
    _address: Option<AddressPlace>,
}

/// One of an address's places among the admitted logins, given back when dropped.
#[derive(Debug)]
struct AddressPlace {
    ip: IpAddr,
    places: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for AddressPlace {
    fn drop(&mut self) {
        let mut places = lock(&self.places);
        if let Some(held) = places.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                places.remove(&self.ip);
            }
        }
    }
}

/// Recovers a poisoned map: a panic while a count was updated leaves at worst one count off.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Throttle {
    /// A throttle with nothing counted yet.
    pub fn new(limits: Limits) -> Throttle {
        let permits = limits.hashing_permits.max(1);
        Throttle {
            accounts: Mutex::new(LruCache::new(limits.tracked)),
            addresses: Mutex::new(LruCache::new(limits.tracked)),
            admission: Arc::new(Semaphore::new(permits + limits.hashing_queue)),
            hashing: Arc::new(Semaphore::new(permits)),
            places: Arc::default(),
            limits,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Counts a login attempt for `username` from `address` (if known), or refuses it.
    /// A refused attempt is not counted.
    pub fn attempt(&self, username: &str, address: Option<IpAddr>) -> Result<(), Throttled> {
        let now = Instant::now();
        let window = self.limits.window;
        let address = address.map(address_key);
        // The address first: a flood from one address is then refused without touching the
        // accounts it names.
        if let Some(ip) = address {
            let mut addresses = lock(&self.addresses);
            let entry = addresses.get_or_insert_mut(ip, || Window::new(now));
            if let Err((wait, started)) = entry.attempt(now, self.limits.address_attempts, window) {
                return Err(Throttled {
                    refusal: Refusal::Throttled { retry_after: wait },
                    started: started.then_some(Lock::Address(ip)),
                });
            }
        }
        let mut accounts = lock(&self.accounts);
        let entry = accounts.get_or_insert_mut(username.to_owned(), || Window::new(now));
        if let Err((wait, started)) = entry.attempt(now, self.limits.account_attempts, window) {
            drop(accounts);
            // Refused attempts are not counted against the address either.
            if let Some(ip) = address {
                self.take_back(&self.addresses, &ip);
            }
            return Err(Throttled {
                refusal: Refusal::Throttled { retry_after: wait },
                started: started.then_some(Lock::Account(username.to_owned())),
            });
        }
        Ok(())
    }

    /// A login that was counted by [`Throttle::attempt`] succeeded: the account's count is
    /// cleared and the address gets its attempt back.
    pub fn succeeded(&self, username: &str, address: Option<IpAddr>) {
        lock(&self.accounts).pop(username);
        if let Some(ip) = address.map(address_key) {
            self.take_back(&self.addresses, &ip);
        }
    }

    /// A login counted by [`Throttle::attempt`] never had its password checked (the server
    /// was busy): both counts get the attempt back.
    pub fn not_checked(&self, username: &str, address: Option<IpAddr>) {
        self.take_back(&self.accounts, username);
        if let Some(ip) = address.map(address_key) {
            self.take_back(&self.addresses, &ip);
        }
    }

    fn take_back<K, Q>(&self, map: &Mutex<LruCache<K, Window>>, key: &Q)
    where
        K: std::hash::Hash + Eq + std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        if let Some(entry) = lock(map).peek_mut(key)
            && entry.locked_until.is_none()
        {
            entry.attempts = entry.attempts.saturating_sub(1);
        }
    }

    /// A place for a login from `address` among those admitted to hash, or
    /// [`Refusal::Busy`] at once when [`Limits::hashing_queue`] logins are already waiting or
    /// the address already holds [`Limits::hashing_per_address`] places.
    pub fn admit(&self, address: Option<IpAddr>) -> Result<Admission, Refusal> {
        let busy = Refusal::Busy {
            retry_after: Duration::from_secs(1),
        };
        // The address's count first, under its lock, so concurrent logins from one address
        // cannot all pass the check before any of them is counted.
        let address = match address.map(address_key) {
            Some(ip) => {
                let mut places = lock(&self.places);
                let held = places.entry(ip).or_insert(0);
                if *held >= self.limits.hashing_per_address.max(1) {
                    return Err(busy);
                }
                *held += 1;
                Some(AddressPlace {
                    ip,
                    places: self.places.clone(),
                })
            }
            None => None,
        };
        // Should the shared bound refuse, dropping the address's place gives it back.
        let place = self
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| busy)?;
        Ok(Admission {
            _place: place,
            _address: address,
        })
    }

    /// A permit to hash a login's password from `address`: an [`Throttle::admit`]ted place,
    /// then the turn to hash.
    pub async fn login_permit(&self, address: Option<IpAddr>) -> Result<HashPermit, Refusal> {
        let admission = self.admit(address)?;
        let hashing = self.hashing_permit().await;
        Ok(HashPermit {
            _admission: Some(admission),
            ..hashing
        })
    }

    /// A permit to hash a password outside login (an admin setting one): waits its turn
    /// however long the queue, since only admins get here.
    pub async fn hashing_permit(&self) -> HashPermit {
        let hashing = self
            .hashing
            .clone()
            .acquire_owned()
            .await
            .expect("the hashing semaphore is never closed");
        HashPermit {
            _hashing: hashing,
            _admission: None,
        }
    }
}

/// The key an address is counted under: IPv4 as is (also when mapped into IPv6), IPv6 by
/// its /64.
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The TCP peer's address, when the server is served with
/// `into_make_service_with_connect_info::<SocketAddr>()`; `None` otherwise (a router driven
/// in-process), and then only the per-account limit applies.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(account: u32, address: u32, tracked: usize) -> Limits {
        Limits {
            account_attempts: account,
            address_attempts: address,
            window: Duration::from_secs(60),
            tracked: NonZeroUsize::new(tracked).unwrap(),
            ..Limits::default()
        }
    }

    #[test]
    fn lock_starts_once_and_refuses_until_the_window_passes() {
        let throttle = Throttle::new(limits(3, 100, 10));
        for _ in 0..3 {
            throttle.attempt("alice", None).unwrap();
        }
        let first = throttle.attempt("alice", None).unwrap_err();
        assert_eq!(first.started, Some(Lock::Account("alice".into())));
        let second = throttle.attempt("alice", None).unwrap_err();
        assert_eq!(second.started, None, "a lock is reported once");
        assert!(
            throttle.attempt("bob", None).is_ok(),
            "other accounts are not locked"
        );
    }

    #[test]
    fn success_clears_the_account_count() {
        let throttle = Throttle::new(limits(2, 100, 10));
        throttle.attempt("alice", None).unwrap();
        throttle.attempt("alice", None).unwrap();
        throttle.succeeded("alice", None);
        throttle.attempt("alice", None).unwrap();
        throttle.attempt("alice", None).unwrap();
    }

    #[test]
    fn ipv6_neighbours_share_a_count() {
        let throttle = Throttle::new(limits(100, 2, 10));
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        throttle.attempt("u1", Some(a)).unwrap();
        throttle.attempt("u2", Some(b)).unwrap();
        let refused = throttle.attempt("u3", Some(a)).unwrap_err();
        assert_eq!(
            refused.started,
            Some(Lock::Address("2001:db8:1:2::".parse().unwrap()))
        );
    }

    #[test]
    fn the_maps_stay_bounded() {
        let throttle = Throttle::new(limits(5, 1_000_000, 16));
        for i in 0..1_000 {
            let _ = throttle.attempt(&format!("user-{i}"), Some(IpAddr::from([10, 0, 0, 1])));
        }
        assert_eq!(lock(&throttle.accounts).len(), 16);
    }

    #[test]
    fn one_address_cannot_take_every_place_in_the_hashing_queue() {
        let throttle = Throttle::new(Limits {
            hashing_permits: 1,
            hashing_queue: 4,
            hashing_per_address: 2,
            ..Limits::default()
        });
        let flood_ip = IpAddr::from([127, 0, 0, 2]);
        let flood = Some(flood_ip);
        let user = Some(IpAddr::from([127, 0, 0, 1]));
        let held = [
            throttle.admit(flood).unwrap(),
            throttle.admit(flood).unwrap(),
        ];
        assert!(
            throttle.admit(flood).is_err(),
            "the flood's third is refused"
        );
        let mine = throttle.admit(user).expect("another address still gets in");
        // IPv4-mapped IPv6 is the same address.
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert!(throttle.admit(Some(mapped)).is_err());
        drop(held);
        assert!(
            lock(&throttle.places).get(&flood_ip).is_none(),
            "given back"
        );
        let _again = [
            throttle.admit(flood).unwrap(),
            throttle.admit(flood).unwrap(),
        ];
        // The shared bound still holds: 1 running + 4 waiting.
        let _unknown = throttle.admit(None).unwrap();
        let _fifth = throttle.admit(Some(IpAddr::from([127, 0, 0, 4]))).unwrap();
        let other_ip = IpAddr::from([127, 0, 0, 3]);
        let other = Some(other_ip);
        assert!(throttle.admit(other).is_err(), "five places are taken");
        assert!(
            lock(&throttle.places).get(&other_ip).is_none(),
            "a refused login holds no place of its address"
        );
        drop(mine);
    }

    #[test]
    fn retry_after_rounds_up() {
        let refusal = Refusal::Throttled {
            retry_after: Duration::from_millis(1_200),
        };
        assert_eq!(refusal.retry_after_secs(), 2);
        let refusal = Refusal::Busy {
            retry_after: Duration::ZERO,
        };
        assert_eq!(refusal.retry_after_secs(), 1);
    }
}
