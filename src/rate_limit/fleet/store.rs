//! [`FleetStore`]: the configured limits kept in Redis, and the local limits a
//! process falls back to while Redis does not answer.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::{Fleet, FleetStats, RedactedRedisUrl};
use crate::error::ConfigError;
use crate::rate_limit::config::RateLimit;
use crate::rate_limit::gcra::Buckets;

/// The Lua script; see its comments for the arguments.
const GCRA: &str = include_str!("gcra.lua");

/// One process's handle to a fleet's shared budget.
pub(crate) struct FleetStore {
    client: redis::Client,
    /// Made on the first call, inside the runtime (the manager spawns tasks).
    conn: tokio::sync::OnceCell<ConnectionManager>,
    script: redis::Script,
    keys: [String; 2],
    limit: RateLimit,
    fleet: Fleet,
    /// Whether calls are limited in the process for now.
    on_fallback: AtomicBool,
    fallback: Mutex<Fallback>,
    shared: AtomicU64,
    local: AtomicU64,
    outages: AtomicU64,
}

struct Fallback {
    /// `limit / fleet_size`.
    buckets: Buckets,
    /// When a call next asks Redis, while on the fallback.
    next_probe: Option<Instant>,
}

/// Why Redis gave no reservation.
enum Unreachable {
    Timeout(Duration),
    Redis(redis::RedisError),
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unreachable::Timeout(after) => write!(f, "no answer within {after:?}"),
            Unreachable::Redis(e) => write!(f, "{e}"),
        }
    }
}

impl FleetStore {
    /// A store for `limit`, kept under `namespace` (unless the fleet names
    /// its own) and the hash of `secret` (the API key, or the headers that
    /// carry it).
    pub(crate) fn new(
        limit: RateLimit,
        fleet: Fleet,
        namespace: &str,
        secret: &[u8],
    ) -> Result<FleetStore, ConfigError> {
        fleet.validate()?;
        let client = redis::Client::open(fleet.redis_url.as_str())
            .map_err(|e| ConfigError::new("fleet.redis_url", format!("{:?}", e.kind())))?;
        let namespace = fleet.namespace.as_deref().unwrap_or(namespace);
        let digest = Sha256::digest(secret);
        let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        // Braces would end the hash tag early: keep them out of the name.
        let namespace = namespace.replace(['{', '}'], "_");
        let tag = format!("stache:rl:{{{namespace}:{hash}}}");
        Ok(FleetStore {
            client,
            conn: tokio::sync::OnceCell::new(),
            script: redis::Script::new(GCRA),
            keys: [format!("{tag}:requests"), format!("{tag}:tokens")],
            fallback: Mutex::new(Fallback {
                buckets: Buckets::new(&limit.divided(fleet.fleet_size)),
                next_probe: None,
            }),
            limit,
            fleet,
            on_fallback: AtomicBool::new(false),
            shared: AtomicU64::new(0),
            local: AtomicU64::new(0),
            outages: AtomicU64::new(0),
        })
    }

    /// The Redis keys of the budget (for tests and operators).
    pub(crate) fn keys(&self) -> &[String; 2] {
        &self.keys
    }

    /// Reserves a start for a call of `cost` tokens arriving `now`, unless it
    /// would start after `latest`: then nothing is reserved and the wait it
    /// would have had is returned. In Redis when it answers within the
    /// acquire timeout, in the process otherwise.
    pub(crate) async fn reserve(
        &self,
        now: Instant,
        cost: u32,
        latest: Instant,
    ) -> Result<Instant, Duration> {
        if self.on_fallback.load(Ordering::Acquire) {
            let probe = {
                let mut fallback = lock(&self.fallback);
                match fallback.next_probe {
                    Some(at) if at > now => false,
                    _ => {
                        fallback.next_probe = now.checked_add(self.fleet.probe_interval);
                        true
                    }
                }
            };
            if !probe {
                return self.local(now, cost, latest);
            }
        }
        match self.remote(now, cost, latest).await {
            Ok(reserved) => {
                if self.on_fallback.swap(false, Ordering::AcqRel) {
                    tracing::info!(
                        redis = %RedactedRedisUrl(&self.fleet.redis_url),
                        "Redis answers again: back to the fleet's shared rate limit"
                    );
                }
                self.shared.fetch_add(1, Ordering::Relaxed);
                reserved
            }
            Err(why) => {
                if !self.on_fallback.swap(true, Ordering::AcqRel) {
                    self.outages.fetch_add(1, Ordering::Relaxed);
                    lock(&self.fallback).next_probe = now.checked_add(self.fleet.probe_interval);
                    tracing::warn!(
                        redis = %RedactedRedisUrl(&self.fleet.redis_url),
                        error = %why,
                        fleet_size = self.fleet.fleet_size,
                        "Redis unreachable: limiting calls in this process to its share of the fleet's limit"
                    );
                }
                self.local(now, cost, latest)
            }
        }
    }

    async fn remote(
        &self,
        now: Instant,
        cost: u32,
        latest: Instant,
    ) -> Result<Result<Instant, Duration>, Unreachable> {
        let timeout = self.fleet.acquire_timeout;
        let max_wait =
            u64::try_from(latest.saturating_duration_since(now).as_micros()).unwrap_or(u64::MAX);
        let ask = async {
            let conn = self
                .conn
                .get_or_try_init(|| async {
                    ConnectionManager::new_lazy_with_config(self.client.clone(), self.config())
                })
                .await?;
            let mut conn = conn.clone();
            self.script
                .key(&self.keys[0])
                .key(&self.keys[1])
                .arg(self.limit.requests_per_minute.unwrap_or(0))
                .arg(self.limit.burst.max(1))
                .arg(self.limit.tokens_per_minute.unwrap_or(0))
                .arg(cost)
                .arg(max_wait)
                .arg(1)
                .invoke_async::<(i64, i64)>(&mut conn)
                .await
        };
        let (granted, wait) = match tokio::time::timeout(timeout, ask).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err(Unreachable::Redis(e)),
            Err(_) => return Err(Unreachable::Timeout(timeout)),
        };
        let wait = Duration::from_micros(u64::try_from(wait).unwrap_or(0));
        if granted == 1 {
            let now = Instant::now();
            Ok(Ok(now.checked_add(wait).unwrap_or(now)))
        } else {
            Ok(Err(wait))
        }
    }

    fn local(&self, now: Instant, cost: u32, latest: Instant) -> Result<Instant, Duration> {
        self.local.fetch_add(1, Ordering::Relaxed);
        lock(&self.fallback).buckets.reserve(now, cost, latest)
    }

    /// Reconnects in the background, briefly: a call never waits on it
    /// longer than the acquire timeout anyway.
    fn config(&self) -> ConnectionManagerConfig {
        let connect = (self.fleet.acquire_timeout * 4).max(Duration::from_millis(250));
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
    }

    pub(crate) fn stats(&self) -> FleetStats {
        FleetStats {
            shared: self.shared.load(Ordering::Relaxed),
            local: self.local.load(Ordering::Relaxed),
            outages: self.outages.load(Ordering::Relaxed),
            on_fallback: self.on_fallback.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn fleet(&self) -> &Fleet {
        &self.fleet
    }
}

fn lock(fallback: &Mutex<Fallback>) -> MutexGuard<'_, Fallback> {
    fallback
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl fmt::Debug for FleetStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetStore")
            .field("fleet", &self.fleet)
            .field("keys", &self.keys)
            .field("stats", &self.stats())
            .finish()
    }
}
