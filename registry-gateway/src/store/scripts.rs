//! Half-open probe slots shared by every gateway: claimed and given back by Lua scripts, so that at most
//! `breaker.half_open_probes` probes of one replica are in flight across the fleet.

use super::message::keys;
use super::redis_store::RedisStore;
use crate::clock;
use crate::registry::{PeerProbing, ReplicaAddress};

impl RedisStore {
    /// A half-open probe's longest life, in milliseconds (probe slots and their successes expire then).
    pub(super) fn probe_timeout_ms(&self) -> u64 {
        self.registry
            .policy()
            .breaker
            .probe_timeout
            .as_millis()
            .max(1) as u64
    }

    /// Claims the half-open probe of `address`: free, or already ours (renewed). When Redis cannot be
    /// asked, probes locally. Refused, the breaker here defers to the peer's probe.
    pub(super) async fn claim(&self, address: &ReplicaAddress) -> bool {
        let key = keys::probe(address.as_str());
        let ms = self.probe_timeout_ms();
        let gw = self.gw.to_string();
        let slots = self.registry.policy().breaker.half_open_probes.max(1);
        let claimed: Option<i64> = self
            .conn
            .run_with("claim probe", |mut c| async move {
                claim_script()
                    .key(key)
                    .arg(gw)
                    .arg(ms)
                    .arg(slots)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
        match claimed {
            None | Some(1) => true,
            Some(_) => {
                self.registry.execute(PeerProbing(address), clock::now());
                false
            }
        }
    }
}

/// Takes one of the `breaker.half_open_probes` probe slots shared by every gateway: when fewer than
/// ARGV[3] are held, or when this gateway already holds one (its own breaker bounds how many it sends;
/// this lets it probe again after its local probe timeout). KEYS[1] hash gateway → slots, ARGV[1]
/// gateway id, ARGV[2] time to live in ms. Returns 1 when a slot is this gateway's afterwards.
pub(super) fn claim_script() -> redis::Script {
    redis::Script::new(
        r"local held, mine = 0, 0
          local all = redis.call('HGETALL', KEYS[1])
          for i = 1, #all, 2 do
            local n = tonumber(all[i + 1]) or 0
            held = held + n
            if all[i] == ARGV[1] then mine = n end
          end
          if held < tonumber(ARGV[3]) then
            redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            return 1
          end
          if mine > 0 then
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            return 1
          end
          return 0",
    )
}

/// Gives back one of this gateway's probe slots (never another gateway's). KEYS[1] hash, ARGV[1]
/// gateway id. Returns the slots this gateway still holds.
pub(super) fn release_script() -> redis::Script {
    redis::Script::new(
        r"local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
          if n <= 1 then
            redis.call('HDEL', KEYS[1], ARGV[1])
            return 0
          end
          return redis.call('HINCRBY', KEYS[1], ARGV[1], -1)",
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_server::redis_server;
    use super::*;

    #[tokio::test]
    async fn the_probe_slots_are_shared_by_every_gateway() {
        let server = redis_server();
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/0", server.port)).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        async fn claim(
            c: &mut redis::aio::MultiplexedConnection,
            key: &str,
            gw: &str,
            slots: u32,
        ) -> i64 {
            claim_script()
                .key(key)
                .arg(gw)
                .arg(60_000)
                .arg(slots)
                .invoke_async(c)
                .await
                .unwrap()
        }
        async fn release(c: &mut redis::aio::MultiplexedConnection, key: &str, gw: &str) -> i64 {
            release_script()
                .key(key)
                .arg(gw)
                .invoke_async(c)
                .await
                .unwrap()
        }
        // One slot (the default): A claims; B is refused while A holds it; A may claim again.
        let key = "rgw:probe:http://127.0.0.1:9";
        assert_eq!(claim(&mut c, key, "A", 1).await, 1);
        assert_eq!(claim(&mut c, key, "B", 1).await, 0);
        assert_eq!(claim(&mut c, key, "A", 1).await, 1);
        // B cannot release A's slot; A can; then B gets it and A is refused.
        assert_eq!(release(&mut c, key, "B").await, 0);
        assert_eq!(claim(&mut c, key, "B", 1).await, 0);
        assert_eq!(release(&mut c, key, "A").await, 0);
        assert_eq!(claim(&mut c, key, "B", 1).await, 1);
        assert_eq!(claim(&mut c, key, "A", 1).await, 0);

        // Three slots shared, not three per gateway: A takes two, B one, C none.
        let key = "rgw:probe:http://127.0.0.1:10";
        assert_eq!(claim(&mut c, key, "A", 3).await, 1);
        assert_eq!(claim(&mut c, key, "A", 3).await, 1);
        assert_eq!(claim(&mut c, key, "B", 3).await, 1);
        assert_eq!(claim(&mut c, key, "C", 3).await, 0);
        // A gives one back (one left to it): C takes it.
        assert_eq!(release(&mut c, key, "A").await, 1);
        assert_eq!(claim(&mut c, key, "C", 3).await, 1);
        assert_eq!(claim(&mut c, key, "D", 3).await, 0);
        let held: std::collections::BTreeMap<String, i64> = redis::cmd("HGETALL")
            .arg(key)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(held.values().sum::<i64>(), 3, "{held:?}");
    }
}
