//! The replication gate (docs/instance-manager.md, "The replication gate").
//!
//! Redis reconnects a replica to its upstream on its own, within a second of losing the link,
//! and a reconnect to an upstream with another replication history is a full resync that
//! flushes the replica's data. An instance manager that reacts after seeing the link drop races
//! Redis and loses. So the gate is **closed by default**: every pod's `masteruser` and
//! `masterauth` are values that cannot authenticate anywhere (`gate-closed-<random>`, held only
//! in memory and in redis.conf; not a secret, never the real password), and Redis's own
//! reconnects stop at `AUTH`, before `PSYNC`. The instance manager opens it deliberately: when
//! the replica is not linked it reads the upstream's history on a fresh connection, lets
//! `history::decide` judge, and only then sets the real credentials and makes Redis reconnect at
//! once ([`Command::Reconnect`]: re-point away and back in one `MULTI`, which keeps Redis's cached
//! replication id and offset, so `PSYNC` still continues partially); it closes the gate again as
//! soon as the link is up (the credentials only matter during the handshake).

use crate::commands::{Command, ConfigValue};
use crate::info::{Observed, RedisConfig, RedisRole};
use crate::secret::Secret;

/// Every closed-gate value starts with this, so a restarted instance manager (with another
/// random value) recognises a closed gate and changes nothing.
pub const CLOSED_PREFIX: &str = "gate-closed-";

/// The values of a closed gate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClosedGate {
    /// `masteruser`: a user no server has, so that `AUTH` fails also against a server whose
    /// user would accept any password (`nopass`).
    pub user: String,
    /// `masterauth`: against a server without a password, the one-argument `AUTH` that Redis
    /// sends without `masteruser` fails too ("called without any password configured").
    pub password: Secret,
}

impl Default for ClosedGate {
    fn default() -> Self {
        ClosedGate::random()
    }
}

/// 128 random bits as hex, from the kernel (std's hasher keys as a fallback): the value only has
/// to be unlike any real user or password.
fn random_hex() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    let from_kernel = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !from_kernel {
        use std::hash::{BuildHasher, Hasher};
        for (i, chunk) in b.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl ClosedGate {
    pub fn random() -> ClosedGate {
        ClosedGate {
            user: format!("{CLOSED_PREFIX}{}", random_hex()),
            password: Secret::new(format!("{CLOSED_PREFIX}{}", random_hex())),
        }
    }

    /// Whether Redis's `masteruser` and `masterauth` are closed-gate values (ours or those of an
    /// earlier instance manager, or of the pod's boot configuration).
    pub fn is_closed(config: &RedisConfig) -> bool {
        config.get("masteruser").starts_with(CLOSED_PREFIX)
            && config
                .masterauth
                .as_ref()
                .is_some_and(|p| p.expose().starts_with(CLOSED_PREFIX))
    }

    /// The settings that close the gate.
    pub fn settings(&self) -> Vec<(&'static str, ConfigValue)> {
        vec![
            ("masteruser", ConfigValue::Plain(self.user.clone())),
            ("masterauth", ConfigValue::Secret(self.password.clone())),
        ]
    }
}

/// What the gate opens with: the upstream's real user and password (none: cleared).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenWith {
    pub user: Option<String>,
    pub password: Option<Secret>,
}

impl OpenWith {
    pub fn command(&self) -> Command {
        Command::ConfigSet(vec![
            (
                "masteruser",
                ConfigValue::Plain(self.user.clone().unwrap_or_default()),
            ),
            (
                "masterauth",
                match &self.password {
                    Some(p) => ConfigValue::Secret(p.clone()),
                    None => ConfigValue::Plain(String::new()),
                },
            ),
        ])
    }
}

/// Whether the gate has something to decide: the local Redis is a replica pointed at an upstream,
/// not linked, not in a sync (a sync in progress has passed the handshake), not loading.
pub fn wants_check(o: &Observed) -> bool {
    o.role == RedisRole::Slave
        && o.master.is_some()
        && !o.loading
        && !o.master_link_status_up
        && !o.master_sync_in_progress
}

/// The handshake got through: the link is up, or a full sync's transfer started.
pub fn passed(o: &Observed) -> bool {
    o.master_link_status_up || o.master_sync_in_progress
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{default_config, observed};

    #[test]
    fn closed_values_are_random_prefixed_and_recognised() {
        let a = ClosedGate::random();
        let b = ClosedGate::random();
        assert_ne!(a, b);
        assert!(a.user.starts_with(CLOSED_PREFIX) && a.user.len() == CLOSED_PREFIX.len() + 32);
        let mut c = default_config();
        assert!(!ClosedGate::is_closed(&c));
        c.values.insert("masteruser".into(), b.user.clone());
        assert!(!ClosedGate::is_closed(&c), "masterauth still open");
        c.masterauth = Some(b.password.clone());
        assert!(
            ClosedGate::is_closed(&c),
            "another instance manager's values"
        );
        c.masterauth = Some(Secret::new("real-password"));
        assert!(!ClosedGate::is_closed(&c));
        // Never shown in logs.
        let described = Command::ConfigSet(a.settings()).describe();
        assert!(!described.contains(a.password.expose()), "{described}");
    }

    #[test]
    fn opening_sets_the_real_credentials_or_clears_them() {
        let open = OpenWith {
            user: Some("repl".into()),
            password: Some(Secret::new("hunter2")),
        };
        assert_eq!(
            open.command().describe(),
            "CONFIG SET masteruser \"repl\" masterauth <redacted>"
        );
        assert_eq!(
            OpenWith::default().command().describe(),
            "CONFIG SET masteruser \"\" masterauth \"\""
        );
    }

    #[test]
    fn the_gate_is_checked_only_for_an_unlinked_replica() {
        let replica = || {
            let mut o = observed(RedisRole::Slave, Some(("src", 6379)));
            o.master_link_status_up = false;
            o
        };
        let rows = [
            ("unlinked replica", replica(), true),
            (
                "linked",
                Observed {
                    master_link_status_up: true,
                    ..replica()
                },
                false,
            ),
            (
                "syncing",
                Observed {
                    master_sync_in_progress: true,
                    ..replica()
                },
                false,
            ),
            (
                "loading",
                Observed {
                    loading: true,
                    ..replica()
                },
                false,
            ),
            ("a master", observed(RedisRole::Master, None), false),
        ];
        for (what, o, expected) in rows {
            assert_eq!(wants_check(&o), expected, "{what}");
        }
    }
}
