//! Which commands bring the local Redis to its desired topology, and nothing else: given the
//! desired topology, what Redis says about itself and the credentials the instance manager could
//! read, [`commands_for`] lists the `CONFIG SET`/`REPLICAOF` commands to issue.
//!
//! Pure and total, so it is tested exhaustively (see the tests below); `redis_io` executes the
//! commands. The list is empty when Redis already is what the topology asks for, which is what
//! makes the loop idempotent and restart-safe: re-running it every probe interval, after an
//! instance manager restart or after a redis-server restart issues only what differs, and never
//! a `REPLICAOF` to the upstream Redis already replicates (that would be a no-op at best and a
//! resync at worst).

use redis_cluster_api::topology::{DesiredTopology, FENCE_MIN_REPLICAS, Role};

use crate::gate::ClosedGate;
use crate::history::{self, BootedWithoutData, Record, RestartedPrimary};
use crate::info::{Observed, RedisConfig, RedisRole};
use crate::secret::Secret;
use crate::sentinel::Verdict;

/// Certificates for `tls-replication`, from the instance manager's `--tls-*-file` flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// What `CONFIG SET` gives Redis for reaching an upstream.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// The closed replication gate: `masteruser`/`masterauth` are always set to these (see
    /// `gate`); the real password is only set by the gate, for the handshake it allows.
    pub gate: ClosedGate,
    /// The pod's TLS files, if configured.
    pub tls: Option<TlsFiles>,
}

/// A value for `CONFIG SET`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigValue {
    Plain(String),
    Secret(Secret),
}

impl ConfigValue {
    pub fn expose(&self) -> &str {
        match self {
            ConfigValue::Plain(s) => s,
            ConfigValue::Secret(s) => s.expose(),
        }
    }
}

/// One command for the local Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// One atomic `CONFIG SET p1 v1 p2 v2 ...` of every owned parameter that differs (atomic
    /// matters: `tls-replication yes` fails unless the certificate files are set with it).
    ConfigSet(Vec<(&'static str, ConfigValue)>),
    /// `REPLICAOF host port`.
    ReplicaOf(String, u16),
    /// `REPLICAOF NO ONE`.
    ReplicaOfNoOne,
    /// Make a replica of `host port` connect to it at once: `MULTI`, `REPLICAOF 127.0.0.1 0`,
    /// `REPLICAOF host port`, `EXEC` (re-pointing keeps the cached replication id and offset, so
    /// `PSYNC` continues partially; the detour is never connected, both happen in one step).
    /// Issued only by the replication gate.
    Reconnect(String, u16),
    /// Make the default user accept `current` and, while a rotation is under way, `previous`
    /// (and nothing else): `MULTI`, `CONFIG SET requirepass <current>`, `ACL SETUSER default
    /// resetpass ><current> [><previous>]`, `EXEC` (docs/password-rotation.md).
    SetPasswords {
        current: Secret,
        previous: Option<Secret>,
    },
}

/// Where [`Command::Reconnect`] points Redis in between: nothing listens on port 0.
pub const DETOUR: (&str, u16) = ("127.0.0.1", 0);

impl Command {
    /// For logs: secrets are shown as `<redacted>`.
    pub fn describe(&self) -> String {
        match self {
            Command::ConfigSet(pairs) => {
                let mut s = String::from("CONFIG SET");
                for (k, v) in pairs {
                    match v {
                        ConfigValue::Plain(v) => s.push_str(&format!(" {k} {v:?}")),
                        ConfigValue::Secret(_) => s.push_str(&format!(" {k} <redacted>")),
                    }
                }
                s
            }
            Command::ReplicaOf(h, p) => format!("REPLICAOF {h} {p}"),
            Command::ReplicaOfNoOne => "REPLICAOF NO ONE".into(),
            Command::Reconnect(h, p) => format!(
                "MULTI, REPLICAOF {} {}, REPLICAOF {h} {p}, EXEC",
                DETOUR.0, DETOUR.1
            ),
            Command::SetPasswords { previous, .. } => format!(
                "MULTI, CONFIG SET requirepass <redacted>, ACL SETUSER default resetpass ><redacted>{}, EXEC",
                if previous.is_some() {
                    " ><redacted>"
                } else {
                    ""
                }
            ),
        }
    }
}

/// The upstream (`host:port`) is reached over TLS, but the instance manager has no certificates.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the upstream {0} requires TLS but this instance manager has no --tls-ca-file/--tls-cert-file/--tls-key-file: mount the cluster's tlsSecret"
)]
pub struct NoTlsFiles(pub String);

/// Why the topology cannot be applied this tick: the caller keeps Redis as it is and reports
/// this, except for the two waits ([`Blocked::is_wait`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Blocked {
    #[error(transparent)]
    TlsFilesMissing(#[from] NoTlsFiles),
    #[error("redis-server is loading its dataset; waiting")]
    Loading,
    /// A boot-fenced Redis waits while the Sentinels fail a master over (not an error).
    #[error("the Sentinels are failing over; staying fenced until they are done")]
    SentinelsFailingOver,
    /// A boot-fenced Redis cannot tell whom the Sentinels elected, although they are reachable.
    #[error(
        "staying fenced: the Sentinels cannot be asked who the primary is ({0}); check the Sentinels' password file"
    )]
    SentinelsCannotTell(String),
    /// The topology would make this Redis a writable primary, but it is empty while the record
    /// says this pod held data: it stays fenced.
    #[error(transparent)]
    BootedWithoutData(#[from] BootedWithoutData),
    /// The topology would make (or keep) this Redis a writable primary, but it restarted under
    /// a new replication id after it took writes as a primary under another: its replicas may
    /// hold writes it lost. It stays (`fence: false`) or becomes (`fence: true`, it booted
    /// unfenced) fenced until the operator fails over or accepts the restart.
    #[error("{restart}")]
    RestartedPrimary {
        restart: RestartedPrimary,
        fence: bool,
    },
}

impl Blocked {
    /// Not an error, only a wait: Redis answers `-LOADING` until its dataset is in memory, and
    /// the Sentinels finish a failover within their failover timeout.
    pub fn is_wait(&self) -> bool {
        matches!(self, Blocked::Loading | Blocked::SentinelsFailingOver)
    }

    /// What to issue even so: the fence of a restarted primary that booted unfenced.
    pub fn first(&self) -> Option<Command> {
        match self {
            Blocked::RestartedPrimary { fence: true, .. } => Some(Command::ConfigSet(vec![(
                "min-replicas-to-write",
                ConfigValue::Plain(FENCE_MIN_REPLICAS.to_string()),
            )])),
            _ => None,
        }
    }
}

/// The command that makes the local Redis's default user accept exactly the password file's
/// password and, while a rotation is under way, the previous one; `None` when the passwords
/// it lists (`ACL GETUSER default`, SHA-256 hex) are already those. Compared by hash: no
/// password is read back from Redis.
pub fn passwords_command(
    listed: &[String],
    current: &Secret,
    previous: Option<&Secret>,
) -> Option<Command> {
    (!accepts_exactly(listed, current, previous)).then(|| Command::SetPasswords {
        current: current.clone(),
        previous: previous.cloned(),
    })
}

/// Whether the SHA-256 list of a user's passwords (`ACL GETUSER`) is exactly `current` and
/// `previous`.
fn accepts_exactly(listed: &[String], current: &Secret, previous: Option<&Secret>) -> bool {
    let have: std::collections::BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    let want_hashes: Vec<String> = std::iter::once(current)
        .chain(previous)
        .map(Secret::sha256_hex)
        .collect();
    let want: std::collections::BTreeSet<&str> = want_hashes.iter().map(String::as_str).collect();
    have == want
}

/// What one Sentinel of a sentinel-mode cluster needs during a password rotation
/// (docs/password-rotation.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentinelAuth {
    /// Its own default user must accept exactly `password` (and `previousPassword`):
    /// `ACL SETUSER default resetpass ...`.
    pub acl: bool,
    /// It must use `password` towards the data pods and the other Sentinels (`SENTINEL SET
    /// <master> auth-pass`, `SENTINEL CONFIG SET sentinel-pass`). Only once the rotation is
    /// over (no `previousPassword`): while it is under way, what the Sentinels use (either
    /// password) is accepted everywhere, and a data pod whose Secret copy is not updated yet
    /// may not accept the new one.
    pub use_current: bool,
}

impl SentinelAuth {
    /// `listed`: the Sentinel's default user's passwords (SHA-256); `sentinel_pass`: the
    /// password it uses towards the other Sentinels now (`SENTINEL CONFIG GET sentinel-pass`,
    /// which it keeps equal to its `auth-pass`: both are set together, `auth-pass` first).
    pub fn decide(
        listed: &[String],
        sentinel_pass: &Secret,
        current: &Secret,
        previous: Option<&Secret>,
    ) -> SentinelAuth {
        SentinelAuth {
            acl: !accepts_exactly(listed, current, previous),
            use_current: previous.is_none() && sentinel_pass != current,
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// What to do about the role of Redis.
enum RoleAction {
    /// `REPLICAOF host port` unless Redis already replicates it.
    Replicate(String, u16),
    /// `REPLICAOF NO ONE` if Redis is a replica.
    Promote,
    /// Never touch the role (sentinel mode: the Sentinels own it).
    Keep,
}

/// The commands that make Redis match `desired`. Empty when it already does.
///
/// `sentinels` is what the Sentinels said this tick; it only matters in sentinel mode
/// (`desired.sentinel` present), where `None` counts as [`Verdict::NobodyKnows`]. `record` is
/// what the instance manager last recorded of this pod's data (`history::Record`): a Redis that
/// is empty although the record says it held keys is never made a writable primary, and one
/// that restarted under a new replication id after taking writes as a primary is never left
/// or made writable (`history::restarted_primary`), unless the topology's `acceptHistory` is its
/// new id.
pub fn commands_for(
    desired: &DesiredTopology,
    observed: &Observed,
    config: &RedisConfig,
    creds: &Credentials,
    sentinels: Option<&Verdict>,
    record: Option<&Record>,
) -> Result<Vec<Command>, Blocked> {
    if observed.loading {
        return Err(Blocked::Loading);
    }
    let fence = FENCE_MIN_REPLICAS.to_string();
    if desired.role == Role::Fenced {
        // Only the fence: the role and the rest stay as they are until a later epoch says what
        // this Redis becomes.
        return Ok(if config.get("min-replicas-to-write") == fence {
            vec![]
        } else {
            vec![Command::ConfigSet(vec![(
                "min-replicas-to-write",
                ConfigValue::Plain(fence),
            )])]
        });
    }

    let action = role_action(desired, observed, config, sentinels)?;
    // Would this make (or let) Redis take writes it does not take now?
    let becomes_writable = match action {
        RoleAction::Promote => observed.role == RedisRole::Slave || config.fenced(),
        RoleAction::Keep => observed.role == RedisRole::Master && config.fenced(),
        RoleAction::Replicate(..) => false,
    };
    if becomes_writable
        && let Some(lost) = history::lost_data(observed, record, desired.accept_history.as_deref())
    {
        return Err(lost.into());
    }
    // Would Redis be a writable master afterwards (a fenced one is lifted, an unfenced one
    // stays so)?
    let writable_after = match action {
        RoleAction::Promote => true,
        RoleAction::Keep => observed.role == RedisRole::Master,
        RoleAction::Replicate(..) => false,
    };
    if writable_after
        && let Some(restart) =
            history::restarted_primary(observed, record, desired.accept_history.as_deref())
    {
        return Err(Blocked::RestartedPrimary {
            restart,
            fence: !config.fenced(),
        });
    }

    let mut set: Vec<(&'static str, ConfigValue)> = Vec::new();
    let mut want = |name: &'static str, value: String| {
        if config.get(name) != value {
            set.push((name, ConfigValue::Plain(value)));
        }
    };
    want("replica-priority", desired.replica_priority.to_string());
    want(
        "replica-announced",
        yes_no(desired.replica_announced).into(),
    );
    want(
        "min-replicas-max-lag",
        desired.min_replicas_max_lag.to_string(),
    );
    if let (Role::Replica, Some(up)) = (desired.role, &desired.upstream) {
        if up.tls {
            let tls = creds
                .tls
                .as_ref()
                .ok_or_else(|| NoTlsFiles(crate::addr(&up.host, up.port)))?;
            // Files before the switch, in the same atomic CONFIG SET.
            want("tls-ca-cert-file", tls.ca.clone());
            want("tls-cert-file", tls.cert.clone());
            want("tls-key-file", tls.key.clone());
            want("tls-replication", "yes".into());
        } else {
            want("tls-replication", "no".into());
        }
    }
    // The replication gate is closed on every pod (a primary too: the Sentinels may re-point it).
    if !ClosedGate::is_closed(config) {
        set.extend(creds.gate.settings());
    }
    // `min-replicas-to-write` (which lifts a boot fence) is applied on replicas too, so that a
    // replica the Sentinels promote is protected at once.
    let mrtw = desired.min_replicas_to_write.to_string();
    let mrtw_change = (config.get("min-replicas-to-write") != mrtw)
        .then_some(("min-replicas-to-write", ConfigValue::Plain(mrtw)));

    let mut cmds = Vec::new();
    match action {
        RoleAction::Replicate(host, port) => {
            let already = observed.role == RedisRole::Slave
                && observed
                    .master
                    .as_ref()
                    .is_some_and(|(h, p)| *h == host && *p == port);
            if already {
                set.extend(mrtw_change);
                if !set.is_empty() {
                    cmds.push(Command::ConfigSet(set));
                }
            } else {
                // Credentials before REPLICAOF; the fence is lifted only after it, when Redis is
                // already a (read-only) replica: a fenced master must not accept a write in
                // between.
                if !set.is_empty() {
                    cmds.push(Command::ConfigSet(set));
                }
                cmds.push(Command::ReplicaOf(host, port));
                if let Some(c) = mrtw_change {
                    cmds.push(Command::ConfigSet(vec![c]));
                }
            }
        }
        RoleAction::Promote | RoleAction::Keep => {
            if matches!(action, RoleAction::Promote) && observed.role == RedisRole::Slave {
                cmds.push(Command::ReplicaOfNoOne);
            }
            set.extend(mrtw_change);
            if !set.is_empty() {
                cmds.push(Command::ConfigSet(set));
            }
        }
    }
    Ok(cmds)
}

/// Who decides the role, and what it should be.
///
/// Without Sentinels the topology does. With Sentinels, they do, and the role of Redis is never
/// changed, with one exception: a master that is still fenced (it booted fenced, or was fenced,
/// and has accepted no write since) is pointed at the primary the Sentinels elected, or unfenced
/// if they elected it. Only when no Sentinel knows any primary (first boot) the topology decides.
fn role_action(
    desired: &DesiredTopology,
    observed: &Observed,
    config: &RedisConfig,
    sentinels: Option<&Verdict>,
) -> Result<RoleAction, Blocked> {
    let by_topology = || match &desired.upstream {
        Some(up) if desired.role == Role::Replica => {
            RoleAction::Replicate(up.host.clone(), up.port)
        }
        // `check()` rules out the other combinations; treat any as "primary".
        _ => RoleAction::Promote,
    };
    if desired.sentinel.is_none() {
        return Ok(by_topology());
    }
    if !(observed.role == RedisRole::Master && config.fenced()) {
        return Ok(follow_the_elected(desired, observed, sentinels).unwrap_or(RoleAction::Keep));
    }
    match sentinels.unwrap_or(&Verdict::NobodyKnows) {
        Verdict::Us { settled: true } => Ok(RoleAction::Keep),
        Verdict::Other {
            host,
            port,
            settled: true,
        } => Ok(RoleAction::Replicate(host.clone(), *port)),
        Verdict::Us { settled: false } | Verdict::Other { settled: false, .. } => {
            Err(Blocked::SentinelsFailingOver)
        }
        Verdict::NobodyKnows => Ok(by_topology()),
        Verdict::CannotTell(why) => Err(Blocked::SentinelsCannotTell(why.clone())),
    }
}

/// The second exception under Sentinel: a replica the Sentinels left following a pod that is no
/// longer their primary (a replica itself after a later failover, as in a rolling update, where
/// the replication gate rightly refuses that pod's new history) waits for their replica
/// reconfiguration, up to a minute. When the Sentinels have settled on a primary and the
/// operator's topology names the same one, it is followed now: the re-pointing the Sentinels
/// would do, never a role change.
fn follow_the_elected(
    desired: &DesiredTopology,
    observed: &Observed,
    sentinels: Option<&Verdict>,
) -> Option<RoleAction> {
    let Some(Verdict::Other {
        host,
        port,
        settled: true,
    }) = sentinels
    else {
        return None;
    };
    let up = desired.upstream.as_ref()?;
    let agreed = desired.role == Role::Replica
        && crate::sentinel::same_host(host, &up.host)
        && *port == up.port;
    let elsewhere = observed
        .master
        .as_ref()
        .is_some_and(|(h, p)| !(crate::sentinel::same_host(h, host) && p == port));
    (observed.role == RedisRole::Slave && agreed && elsewhere)
        .then(|| RoleAction::Replicate(host.clone(), *port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    /// A model of what the commands do to Redis, to check convergence.
    fn simulate(o: &mut Observed, c: &mut RedisConfig, cmds: &[Command]) {
        for cmd in cmds {
            match cmd {
                Command::ConfigSet(pairs) => {
                    for (k, v) in pairs {
                        if *k == "masterauth" {
                            c.masterauth = match v {
                                ConfigValue::Secret(s) => Some(s.clone()),
                                ConfigValue::Plain(p) if p.is_empty() => None,
                                ConfigValue::Plain(p) => Some(Secret::new(p.clone())),
                            };
                        } else {
                            c.values.insert(k.to_string(), v.expose().to_string());
                        }
                    }
                }
                Command::ReplicaOf(h, p) => {
                    o.role = RedisRole::Slave;
                    o.master = Some((h.clone(), *p));
                }
                Command::ReplicaOfNoOne => {
                    o.role = RedisRole::Master;
                    o.master = None;
                }
                Command::Reconnect(..) => panic!("only the gate reconnects"),
                Command::SetPasswords { .. } => panic!("not a topology command"),
            }
        }
    }

    #[test]
    fn a_sentinel_switches_to_the_new_password_only_once_the_rotation_is_over() {
        let (old, new) = (Secret::new("old"), Secret::new("new"));
        let h = |s: &Secret| s.sha256_hex();
        let rows = [
            // (listed, sentinel-pass, previous, acl, use_current)
            (
                "booted with old, rotation starts",
                vec![h(&old)],
                &old,
                Some(&old),
                true,
                false,
            ),
            (
                "both accepted, still using old",
                vec![h(&new), h(&old)],
                &old,
                Some(&old),
                false,
                false,
            ),
            (
                "rotation over: switch",
                vec![h(&new), h(&old)],
                &old,
                None,
                true,
                true,
            ),
            ("done", vec![h(&new)], &new, None, false, false),
            ("one-step change", vec![h(&old)], &old, None, true, true),
            (
                "restarted with new during the rotation",
                vec![h(&new)],
                &new,
                Some(&old),
                true,
                false,
            ),
        ];
        for (what, listed, pass, previous, acl, use_current) in rows {
            let d = SentinelAuth::decide(&listed, pass, &new, previous);
            assert_eq!((d.acl, d.use_current), (acl, use_current), "{what}");
        }
    }

    /// Every state of the default user's passwords against every wanted pair: the command is
    /// issued exactly when they differ, and after it the passwords are the wanted ones.
    #[test]
    fn the_default_user_accepts_exactly_the_wanted_passwords() {
        let (a, b, c) = (Secret::new("a"), Secret::new("b"), Secret::new("c"));
        let h = |s: &Secret| s.sha256_hex();
        let states: Vec<Vec<String>> = vec![
            vec![],
            vec![h(&a)],
            vec![h(&b)],
            vec![h(&a), h(&b)],
            vec![h(&b), h(&a)],
            vec![h(&a), h(&c)],
            vec![h(&a), h(&b), h(&c)],
        ];
        for listed in &states {
            for (current, previous) in [(&a, None), (&a, Some(&b)), (&b, Some(&a)), (&c, None)] {
                let want: std::collections::BTreeSet<String> =
                    std::iter::once(current).chain(previous).map(h).collect();
                let have: std::collections::BTreeSet<String> = listed.iter().cloned().collect();
                let cmd = passwords_command(listed, current, previous);
                assert_eq!(cmd.is_some(), have != want, "{listed:?} -> {want:?}");
                if let Some(Command::SetPasswords {
                    current: cur,
                    previous: prev,
                }) = &cmd
                {
                    // What Redis holds after it: requirepass resets to `cur`, ACL adds `prev`.
                    let after: std::collections::BTreeSet<String> =
                        std::iter::once(cur).chain(prev.as_ref()).map(h).collect();
                    assert_eq!(after, want);
                    assert_eq!(
                        passwords_command(
                            &after.into_iter().collect::<Vec<_>>(),
                            current,
                            previous
                        ),
                        None
                    );
                }
            }
        }
        // The log line never shows one.
        assert_eq!(
            Command::SetPasswords {
                current: Secret::new("new-secret"),
                previous: Some(Secret::new("old-secret")),
            }
            .describe(),
            "MULTI, CONFIG SET requirepass <redacted>, ACL SETUSER default resetpass ><redacted> ><redacted>, EXEC"
        );
    }

    fn all_desired() -> Vec<DesiredTopology> {
        let mut v = Vec::new();
        for prio in [0, 100] {
            for announced in [false, true] {
                for mrtw in [0, 1] {
                    v.push(topo(Role::Primary, None, prio, announced, mrtw));
                    for (host, port) in [("src", 6379), ("src", 6380), ("peer-1", 6379)] {
                        for tls in [false, true] {
                            for user in [None, Some("repl")] {
                                v.push(topo(
                                    Role::Replica,
                                    Some(upstream(host, port, tls, user)),
                                    prio,
                                    announced,
                                    mrtw,
                                ));
                            }
                        }
                    }
                }
            }
        }
        v
    }

    fn all_observed() -> Vec<Observed> {
        vec![
            observed(RedisRole::Master, None),
            observed(RedisRole::Slave, Some(("src", 6379))),
            observed(RedisRole::Slave, Some(("src", 6380))),
            observed(RedisRole::Slave, Some(("peer-1", 6379))),
            observed(RedisRole::Slave, Some(("elsewhere", 1))),
        ]
    }

    /// What `masteruser`/`masterauth` may be: cleared, a real password, a real user and
    /// password, or a closed gate (this instance manager's or another one's).
    fn all_auth() -> Vec<(String, Option<Secret>)> {
        let other = ClosedGate::random();
        vec![
            (String::new(), None),
            (String::new(), Some(Secret::new("pw-a"))),
            ("repl".into(), Some(Secret::new("pw-b"))),
            (other.user, Some(other.password)),
        ]
    }

    fn closed(c: &RedisConfig) -> bool {
        ClosedGate::is_closed(c)
    }

    /// Every (desired, observed state, current config, credentials) combination: one list
    /// converges (a second one is empty), a converged Redis gets no command at all, REPLICAOF
    /// is issued exactly when the upstream differs, and the final state is the desired one.
    #[test]
    fn exhaustive_convergence_and_idempotence() {
        let mut cases = 0;
        for d in all_desired() {
            for o0 in all_observed() {
                for (current_user, current_pw) in all_auth() {
                    for current_tls in [false, true] {
                        let mut c0 = default_config();
                        c0.masterauth = current_pw.clone();
                        c0.values.insert("masteruser".into(), current_user.clone());
                        if current_tls {
                            let t = tls_files();
                            c0.values.insert("tls-replication".into(), "yes".into());
                            c0.values.insert("tls-ca-cert-file".into(), t.ca);
                            c0.values.insert("tls-cert-file".into(), t.cert);
                            c0.values.insert("tls-key-file".into(), t.key);
                        }
                        let creds = Credentials {
                            gate: ClosedGate::random(),
                            tls: Some(tls_files()),
                        };
                        let (mut o, mut c) = (o0.clone(), c0.clone());
                        let cmds = commands_for(&d, &o, &c, &creds, None, None).unwrap();
                        simulate(&mut o, &mut c, &cmds);
                        assert_eq!(
                            commands_for(&d, &o, &c, &creds, None, None).unwrap(),
                            vec![],
                            "{d:?} {o0:?}"
                        );
                        cases += 1;

                        let replicaofs = cmds
                            .iter()
                            .filter(|c| matches!(c, Command::ReplicaOf(..)))
                            .count();
                        let noones = cmds
                            .iter()
                            .filter(|c| matches!(c, Command::ReplicaOfNoOne))
                            .count();
                        match &d.upstream {
                            Some(up) => {
                                let same = o0.master == Some((up.host.clone(), up.port));
                                assert_eq!(replicaofs, usize::from(!same));
                                assert_eq!(noones, 0);
                                // Credentials and TLS are in place before REPLICAOF;
                                // after it, only min-replicas-to-write may change.
                                if replicaofs == 1 {
                                    let at = cmds
                                        .iter()
                                        .position(|c| matches!(c, Command::ReplicaOf(..)))
                                        .unwrap();
                                    for c in &cmds[at + 1..] {
                                        let Command::ConfigSet(pairs) = c else {
                                            panic!("{cmds:?}")
                                        };
                                        assert!(
                                            pairs
                                                .iter()
                                                .all(|(k, _)| *k == "min-replicas-to-write")
                                        );
                                    }
                                }
                                assert_eq!(o.master, Some((up.host.clone(), up.port)));
                                assert_eq!(c.get("tls-replication"), yes_no(up.tls));
                            }
                            None => {
                                assert_eq!(replicaofs, 0);
                                assert_eq!(noones, usize::from(o0.role == RedisRole::Slave));
                                assert_eq!(o.role, RedisRole::Master);
                                // Promotion stops replication first.
                                if noones == 1 {
                                    assert_eq!(cmds[0], Command::ReplicaOfNoOne);
                                }
                            }
                        }
                        // The gate ends closed on every role, and a gate that was closed
                        // (by another instance manager too) is left as it is.
                        assert!(closed(&c), "{c:?}");
                        if closed(&c0) {
                            assert_eq!(c.masterauth, c0.masterauth);
                        }
                        assert_eq!(c.get("replica-priority"), d.replica_priority.to_string());
                        assert_eq!(c.get("replica-announced"), yes_no(d.replica_announced));
                        assert_eq!(
                            c.get("min-replicas-to-write"),
                            d.min_replicas_to_write.to_string()
                        );
                        // At most one CONFIG SET per list (atomic), plus the fence
                        // after a REPLICAOF.
                        assert!(
                            cmds.iter()
                                .filter(|c| matches!(c, Command::ConfigSet(_)))
                                .count()
                                <= 1 + replicaofs
                        );
                    }
                }
            }
        }
        assert!(cases > 1000, "{cases}");
    }

    #[test]
    fn restart_safety_a_redis_already_replicating_gets_nothing() {
        let d = topo(
            Role::Replica,
            Some(upstream("src", 6379, false, None)),
            0,
            false,
            0,
        );
        let o = observed(RedisRole::Slave, Some(("src", 6379)));
        let mut c = default_config();
        c.values.insert("replica-priority".into(), "0".into());
        c.values.insert("replica-announced".into(), "no".into());
        // Closed by the instance manager that ran before this one (another random value).
        let before = ClosedGate::random();
        c.values.insert("masteruser".into(), before.user.clone());
        c.masterauth = Some(before.password.clone());
        let creds = Credentials {
            gate: ClosedGate::random(),
            tls: None,
        };
        assert_eq!(
            commands_for(&d, &o, &c, &creds, None, None).unwrap(),
            vec![]
        );
    }

    #[test]
    fn a_fresh_redis_becomes_a_replica_with_auth_first() {
        let d = topo(
            Role::Replica,
            Some(upstream("src", 6379, false, Some("repl"))),
            0,
            false,
            0,
        );
        let creds = Credentials::default();
        let cmds = commands_for(
            &d,
            &observed(RedisRole::Master, None),
            &default_config(),
            &creds,
            None,
            None,
        )
        .unwrap();
        assert_eq!(cmds.len(), 2);
        let described: Vec<String> = cmds.iter().map(Command::describe).collect();
        // The gate is closed before REPLICAOF: Redis's first connection stops at AUTH, and
        // only the gate lets it sync (with the real user "repl" and its password).
        assert_eq!(
            described[0],
            format!(
                "CONFIG SET replica-priority \"0\" replica-announced \"no\" masteruser {:?} masterauth <redacted>",
                creds.gate.user
            )
        );
        assert_eq!(described[1], "REPLICAOF src 6379");
        assert!(!format!("{described:?}").contains(creds.gate.password.expose()));
    }

    #[test]
    fn tls_needs_files_and_sets_them_atomically() {
        let d = topo(
            Role::Replica,
            Some(upstream("src", 6380, true, None)),
            0,
            false,
            0,
        );
        let o = observed(RedisRole::Master, None);
        assert_eq!(
            commands_for(
                &d,
                &o,
                &default_config(),
                &Credentials::default(),
                None,
                None
            ),
            Err(Blocked::TlsFilesMissing(NoTlsFiles("src:6380".into())))
        );
        let creds = Credentials {
            tls: Some(tls_files()),
            ..Default::default()
        };
        let cmds = commands_for(&d, &o, &default_config(), &creds, None, None).unwrap();
        let Command::ConfigSet(pairs) = &cmds[0] else {
            panic!("{cmds:?}")
        };
        let names: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("tls-cert-file") < pos("tls-replication"));
        assert!(pos("tls-key-file") < pos("tls-replication"));
    }

    #[test]
    fn promotion_is_replicaof_no_one_then_settings() {
        let d = topo(Role::Primary, None, 100, true, 1);
        let o = observed(RedisRole::Slave, Some(("src", 6379)));
        let creds = Credentials::default();
        let cmds = commands_for(&d, &o, &closed_config(&creds), &creds, None, None).unwrap();
        assert_eq!(cmds[0], Command::ReplicaOfNoOne);
        assert_eq!(cmds[1].describe(), "CONFIG SET min-replicas-to-write \"1\"");
    }

    /// `default_config` with the gate closed.
    fn closed_config(creds: &Credentials) -> RedisConfig {
        let mut c = default_config();
        c.values
            .insert("masteruser".into(), creds.gate.user.clone());
        c.masterauth = Some(creds.gate.password.clone());
        c
    }

    /// A Redis that is empty although the record says this pod held keys (its volume was
    /// replaced or emptied) is never made a writable primary: not by the topology, not because
    /// the Sentinels name it. (what, topology, Redis, fenced, Sentinels, acceptHistory, blocked?)
    #[test]
    fn an_empty_redis_that_held_data_is_never_made_writable() {
        let had = Record {
            replid: "a".repeat(40),
            offset: 900,
            keys: 10,
            role: "primary".into(),
            run_id: None,
        };
        let empty_master = || {
            let mut o = observed(RedisRole::Master, None);
            o.master_replid = "r".repeat(40);
            o
        };
        let empty_replica = || {
            let mut o = observed(RedisRole::Slave, Some(("src", 6379)));
            o.master_replid = "r".repeat(40);
            o.master_link_status_up = false;
            o
        };
        let primary = topo(Role::Primary, None, 100, true, 0);
        let replica = topo(
            Role::Replica,
            Some(upstream("src", 6379, false, None)),
            0,
            false,
            0,
        );
        let us = Verdict::Us { settled: true };
        let accepted = |mut d: DesiredTopology, id: &str| {
            d.accept_history = Some(id.into());
            d
        };
        type Row<'a> = (
            &'a str,
            DesiredTopology,
            Observed,
            bool,
            Option<&'a Verdict>,
            bool,
        );
        let rows: Vec<Row> = vec![
            (
                "boot-fenced, topology primary",
                primary.clone(),
                empty_master(),
                true,
                None,
                true,
            ),
            (
                "boot-fenced, the Sentinels elected it",
                with_sentinels(primary.clone()),
                empty_master(),
                true,
                Some(&us),
                true,
            ),
            (
                "boot-fenced, nobody knows, topology primary",
                with_sentinels(primary.clone()),
                empty_master(),
                true,
                Some(&Verdict::NobodyKnows),
                true,
            ),
            (
                "an empty replica promoted",
                primary.clone(),
                empty_replica(),
                false,
                None,
                true,
            ),
            (
                "already writable (flushed by a user): nothing to lift",
                primary.clone(),
                empty_master(),
                false,
                None,
                false,
            ),
            (
                "made a replica: it may sync, it takes no writes",
                replica.clone(),
                empty_master(),
                true,
                None,
                false,
            ),
            (
                "the empty dataset accepted",
                accepted(primary.clone(), &"r".repeat(40)),
                empty_master(),
                true,
                None,
                false,
            ),
            (
                "another history accepted",
                accepted(primary.clone(), &"c".repeat(40)),
                empty_master(),
                true,
                None,
                true,
            ),
            (
                "holds keys",
                primary.clone(),
                Observed {
                    keys: 3,
                    ..empty_master()
                },
                true,
                None,
                false,
            ),
        ];
        let creds = Credentials::default();
        for (what, d, o, fenced, verdict, blocked) in rows {
            let c = if fenced {
                let mut c = fenced_config();
                c.values
                    .insert("masteruser".into(), creds.gate.user.clone());
                c.masterauth = Some(creds.gate.password.clone());
                c
            } else {
                closed_config(&creds)
            };
            let res = commands_for(&d, &o, &c, &creds, verdict, Some(&had));
            assert_eq!(
                matches!(res, Err(Blocked::BootedWithoutData(_))),
                blocked,
                "{what}: {res:?}"
            );
            // Without a record nothing is known to be lost.
            assert!(
                commands_for(&d, &o, &c, &creds, verdict, None).is_ok(),
                "{what}"
            );
        }
    }

    /// A primary that restarted under a new replication id (appendonly) after it took writes
    /// as a primary may lack writes its replicas hold: it is never left or made writable on its
    /// own; one that booted unfenced is fenced at once. (what, topology, Redis, fenced,
    /// Sentinels, record, outcome: None = not blocked, Some(fence now))
    #[test]
    fn a_primary_restarted_under_a_new_id_is_kept_or_made_fenced() {
        let (a, x) = ("a".repeat(40), "x".repeat(40));
        let as_primary = |run: Option<&str>| Record {
            replid: a.clone(),
            offset: 900,
            keys: 10,
            role: "primary".into(),
            run_id: run.map(String::from),
        };
        let restarted = || {
            let mut o = observed(RedisRole::Master, None);
            o.master_replid = x.clone();
            o.keys = 10;
            o.run_id = "run-2".into();
            o
        };
        let primary = topo(Role::Primary, None, 100, true, 0);
        let replica = topo(
            Role::Replica,
            Some(upstream("src", 6379, false, None)),
            0,
            false,
            0,
        );
        let fenced_role = topo(Role::Fenced, None, 100, true, 0);
        let us = Verdict::Us { settled: true };
        let other = Verdict::Other {
            host: "p1".into(),
            port: 6379,
            settled: true,
        };
        let accepted = |mut d: DesiredTopology, id: &str| {
            d.accept_history = Some(id.into());
            d
        };
        type Row<'a> = (
            &'a str,
            DesiredTopology,
            Observed,
            bool,
            Option<&'a Verdict>,
            Record,
            Option<bool>,
        );
        let rows: Vec<Row> = vec![
            (
                "booted fenced, topology primary",
                primary.clone(),
                restarted(),
                true,
                None,
                as_primary(Some("run-1")),
                Some(false),
            ),
            (
                "booted unfenced (its rewritten config): fenced at once",
                primary.clone(),
                restarted(),
                false,
                None,
                as_primary(Some("run-1")),
                Some(true),
            ),
            (
                "the Sentinels still name it",
                with_sentinels(primary.clone()),
                restarted(),
                true,
                Some(&us),
                as_primary(Some("run-1")),
                Some(false),
            ),
            (
                "the Sentinels elected another pod: it becomes a replica",
                with_sentinels(primary.clone()),
                restarted(),
                true,
                Some(&other),
                as_primary(Some("run-1")),
                None,
            ),
            (
                "a record from an older state file (no run_id)",
                primary.clone(),
                restarted(),
                true,
                None,
                as_primary(None),
                Some(false),
            ),
            (
                "the same process started a new id (its first replica after a long time alone)",
                primary.clone(),
                restarted(),
                false,
                None,
                as_primary(Some("run-2")),
                None,
            ),
            (
                "it was a replica: its record's history is checked by the gate instead",
                primary.clone(),
                restarted(),
                true,
                None,
                Record {
                    role: "replica".into(),
                    ..as_primary(Some("run-1"))
                },
                None,
            ),
            (
                "made a replica of the new primary",
                replica.clone(),
                restarted(),
                true,
                None,
                as_primary(Some("run-1")),
                None,
            ),
            (
                "the operator fences it",
                fenced_role.clone(),
                restarted(),
                true,
                None,
                as_primary(Some("run-1")),
                None,
            ),
            (
                "its restart accepted",
                accepted(primary.clone(), &x),
                restarted(),
                true,
                None,
                as_primary(Some("run-1")),
                None,
            ),
            (
                "another id accepted",
                accepted(primary.clone(), &a),
                restarted(),
                true,
                None,
                as_primary(Some("run-1")),
                Some(false),
            ),
            (
                "restarted from an RDB: the same id",
                primary.clone(),
                Observed {
                    master_replid: a.clone(),
                    ..restarted()
                },
                true,
                None,
                as_primary(Some("run-1")),
                None,
            ),
        ];
        let creds = Credentials::default();
        for (what, d, o, fenced, verdict, record, expected) in rows {
            let c = if fenced {
                let mut c = fenced_config();
                c.values
                    .insert("masteruser".into(), creds.gate.user.clone());
                c.masterauth = Some(creds.gate.password.clone());
                c
            } else {
                closed_config(&creds)
            };
            let res = commands_for(&d, &o, &c, &creds, verdict, Some(&record));
            let got = match &res {
                Err(b @ Blocked::RestartedPrimary { fence, .. }) => {
                    assert_eq!(b.first().is_some(), *fence, "{what}");
                    Some(*fence)
                }
                _ => None,
            };
            assert_eq!(got, expected, "{what}: {res:?}");
            if let Some(fence_now) = expected {
                let e = res.unwrap_err().to_string();
                assert!(
                    e.starts_with(&format!(
                        "restarted under a new replication history ({x}@0, 10 keys; as a primary it held {a}@900, 10 keys): not taking writes"
                    )) && e.ends_with(&format!("redis.io/accept-replication-history={x})")),
                    "{what}: {e}"
                );
                if fence_now {
                    assert_eq!(
                        Blocked::RestartedPrimary {
                            restart: crate::history::restarted_primary(&o, Some(&record), None)
                                .unwrap(),
                            fence: true
                        }
                        .first()
                        .unwrap()
                        .describe(),
                        "CONFIG SET min-replicas-to-write \"1000000\""
                    );
                }
            }
        }
    }

    fn is_role_change(c: &Command) -> bool {
        matches!(c, Command::ReplicaOf(..) | Command::ReplicaOfNoOne)
    }

    /// Role fenced: exactly the fence, whatever Redis is, with or without Sentinels.
    #[test]
    fn fenced_role_sets_the_fence_and_nothing_else() {
        for sentinels in [false, true] {
            for o in all_observed() {
                for c in [default_config(), fenced_config()] {
                    let mut d = topo(Role::Fenced, None, 0, false, 1);
                    if sentinels {
                        d = with_sentinels(d);
                    }
                    let cmds =
                        commands_for(&d, &o, &c, &Credentials::default(), None, None).unwrap();
                    if c.fenced() {
                        assert_eq!(cmds, vec![], "already fenced: no-op");
                    } else {
                        assert_eq!(
                            cmds.iter().map(Command::describe).collect::<Vec<_>>(),
                            ["CONFIG SET min-replicas-to-write \"1000000\""]
                        );
                    }
                }
            }
        }
    }

    /// A replica the Sentinels left on a pod that is no longer their primary follows the primary
    /// they settled on when the topology names the same one, and only then: (topology upstream,
    /// observed master, verdict, re-pointed to).
    #[test]
    fn a_replica_left_on_a_former_primary_follows_the_one_sentinels_and_topology_agree_on() {
        let other = |host: &str, settled| Verdict::Other {
            host: host.into(),
            port: 6379,
            settled,
        };
        /// (topology upstream, observed master, verdict, re-pointed to)
        type Row<'a> = (&'a str, Option<(&'a str, u16)>, Verdict, Option<&'a str>);
        let rows: Vec<Row> = vec![
            (
                "peer-1",
                Some(("peer-0", 6379)),
                other("peer-1", true),
                Some("peer-1"),
            ),
            // The Sentinels' FQDN and the topology's short name are the same host only when equal.
            (
                "peer-1",
                Some(("peer-0", 6379)),
                other("PEER-1.", true),
                Some("PEER-1."),
            ),
            // Already there: nothing to do.
            (
                "peer-1",
                Some(("peer-1", 6379)),
                other("peer-1", true),
                None,
            ),
            // The Sentinels are still failing over, or name another pod than the topology.
            (
                "peer-1",
                Some(("peer-0", 6379)),
                other("peer-1", false),
                None,
            ),
            (
                "peer-1",
                Some(("peer-0", 6379)),
                other("peer-2", true),
                None,
            ),
            // They elected this pod, or nobody knows: not this rule's business.
            (
                "peer-1",
                Some(("peer-0", 6379)),
                Verdict::Us { settled: true },
                None,
            ),
            ("peer-1", Some(("peer-0", 6379)), Verdict::NobodyKnows, None),
        ];
        let creds = Credentials {
            gate: ClosedGate::random(),
            tls: None,
        };
        for (up, master, verdict, want) in rows {
            let d = with_sentinels(topo(
                Role::Replica,
                Some(upstream(up, 6379, false, None)),
                100,
                true,
                1,
            ));
            let o = observed(RedisRole::Slave, master);
            let cmds =
                commands_for(&d, &o, &default_config(), &creds, Some(&verdict), None).unwrap();
            let repointed = cmds.iter().find_map(|c| match c {
                Command::ReplicaOf(h, _) => Some(h.as_str()),
                _ => None,
            });
            assert_eq!(repointed, want, "{up} {master:?} {verdict:?}: {cmds:?}");
        }
        // A master is never re-pointed by this rule (a fenced one follows the verdict as before).
        let d = with_sentinels(topo(
            Role::Replica,
            Some(upstream("peer-1", 6379, false, None)),
            100,
            true,
            1,
        ));
        let o = observed(RedisRole::Master, None);
        let cmds = commands_for(
            &d,
            &o,
            &default_config(),
            &creds,
            Some(&other("peer-1", true)),
            None,
        )
        .unwrap();
        assert!(!cmds.iter().any(is_role_change), "{cmds:?}");
    }

    /// Sentinel mode, every desired x observed x fenced-or-not x Sentinel verdict: the role is
    /// changed only for a fenced master, as the Sentinels (or, when none knows, the topology)
    /// say; a master never accepts writes between two commands unless it stays primary; one
    /// `commands_for` converges.
    #[test]
    fn sentinel_mode_changes_the_role_only_of_a_fenced_master() {
        let verdicts = [
            Verdict::Us { settled: true },
            Verdict::Us { settled: false },
            Verdict::Other {
                host: "peer-9".into(),
                port: 6379,
                settled: true,
            },
            Verdict::Other {
                host: "peer-9".into(),
                port: 6379,
                settled: false,
            },
            Verdict::NobodyKnows,
            Verdict::CannotTell("WRONGPASS".into()),
        ];
        let creds = Credentials {
            gate: ClosedGate::random(),
            tls: Some(tls_files()),
        };
        let mut cases = 0;
        for d in all_desired().into_iter().map(with_sentinels) {
            for o0 in all_observed() {
                for c0 in [default_config(), fenced_config()] {
                    for v in &verdicts {
                        cases += 1;
                        let boot_fenced = o0.role == RedisRole::Master && c0.fenced();
                        let res = commands_for(&d, &o0, &c0, &creds, Some(v), None);
                        if !boot_fenced {
                            let cmds = res.unwrap();
                            assert!(!cmds.iter().any(is_role_change), "{cmds:?}");
                            let (mut o, mut c) = (o0.clone(), c0.clone());
                            simulate(&mut o, &mut c, &cmds);
                            assert_eq!(
                                c.get("min-replicas-to-write"),
                                d.min_replicas_to_write.to_string(),
                                "replicas and masters get the topology's value"
                            );
                            assert_eq!(
                                commands_for(&d, &o, &c, &creds, Some(v), None).unwrap(),
                                vec![]
                            );
                            continue;
                        }
                        let cmds = match (v, res) {
                            (Verdict::Us { settled: false }, r)
                            | (Verdict::Other { settled: false, .. }, r) => {
                                assert_eq!(r, Err(Blocked::SentinelsFailingOver));
                                continue;
                            }
                            (Verdict::CannotTell(_), r) => {
                                assert!(matches!(r, Err(Blocked::SentinelsCannotTell(_))));
                                continue;
                            }
                            (_, r) => r.unwrap(),
                        };
                        let expected_master = match (v, &d.upstream) {
                            (Verdict::Us { .. }, _) => None,
                            (Verdict::Other { host, port, .. }, _) => Some((host.clone(), *port)),
                            (_, Some(up)) => Some((up.host.clone(), up.port)),
                            (_, None) => None,
                        };
                        // Step by step: a master is writable only if it stays master.
                        let (mut o, mut c) = (o0.clone(), c0.clone());
                        for cmd in &cmds {
                            simulate(&mut o, &mut c, std::slice::from_ref(cmd));
                            if o.role == RedisRole::Master && !c.fenced() {
                                assert_eq!(expected_master, None, "{cmds:?}");
                            }
                        }
                        assert_eq!(o.master, expected_master, "{v:?} {cmds:?}");
                        assert!(!c.fenced());
                        assert!(!cmds.contains(&Command::ReplicaOfNoOne));
                        assert_eq!(
                            commands_for(&d, &o, &c, &creds, Some(v), None).unwrap(),
                            vec![]
                        );
                    }
                }
            }
        }
        assert!(cases > 1000, "{cases}");
    }

    /// The Sentinels promoted this replica; the topology still says replica of the old
    /// primary: nothing but configuration, and never a fence.
    #[test]
    fn a_promoted_replica_is_left_alone_while_the_topology_lags() {
        let d = with_sentinels(topo(
            Role::Replica,
            Some(upstream("old", 6379, false, None)),
            100,
            true,
            1,
        ));
        let o = observed(RedisRole::Master, None);
        let mut c = default_config();
        c.values.insert("min-replicas-to-write".into(), "1".into());
        c.values.insert("replica-announced".into(), "yes".into());
        let creds = Credentials::default();
        c.values
            .insert("masteruser".into(), creds.gate.user.clone());
        c.masterauth = Some(creds.gate.password.clone());
        for v in [
            Verdict::Us { settled: true },
            Verdict::NobodyKnows,
            Verdict::Other {
                host: "old".into(),
                port: 6379,
                settled: true,
            },
        ] {
            assert_eq!(
                commands_for(&d, &o, &c, &creds, Some(&v), None).unwrap(),
                vec![]
            );
        }
    }

    #[test]
    fn nothing_while_loading() {
        let d = topo(Role::Primary, None, 100, true, 0);
        let mut o = observed(RedisRole::Slave, Some(("src", 6379)));
        o.loading = true;
        assert_eq!(
            commands_for(
                &d,
                &o,
                &default_config(),
                &Credentials::default(),
                None,
                None
            ),
            Err(Blocked::Loading)
        );
    }
}
