//! Checks the apiserver cannot make: the Secrets a spec names exist and hold the keys the pods
//! read (`password`; `tls.crt`, `tls.key` and `ca.crt` for `tlsSecret`), and
//! conflicts that slipped past the schema (e.g. a CRD installed before its CEL rules).
//! Each problem is a message a user can act on; the operator turns it into
//! `ConfigurationValid=False` and waits for a change instead of looping.

use std::collections::BTreeMap;

use redis_cluster_api::RedisClusterSpec;
use redis_cluster_api::names::{PASSWORD_KEY, TLS_CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY};

use crate::events::EventReason;

/// What the operator found for each Secret name the spec references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretState {
    Missing,
    /// Exists but lacks these of the keys asked for (`password` for auth, `tls.crt`, `tls.key`
    /// and `ca.crt` for TLS).
    MissingKeys(Vec<String>),
    Present,
}

impl SecretState {
    /// An existing Secret that `has` some keys: `Present` when it has every one of `keys`.
    pub fn of_existing(keys: &[&str], has: impl Fn(&str) -> bool) -> SecretState {
        let missing: Vec<String> = keys
            .iter()
            .filter(|k| !has(k))
            .map(|k| k.to_string())
            .collect();
        if missing.is_empty() {
            SecretState::Present
        } else {
            SecretState::MissingKeys(missing)
        }
    }
}

/// A reason the spec cannot be acted on yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Reason of the Event, and (as [`EventReason::as_str`]) of the `ConfigurationValid=False`
    /// condition.
    pub reason: EventReason,
    pub message: String,
}

/// The Secrets a spec references, each with the keys it must have (a Secret named twice, e.g.
/// the same password for the cluster and its source, once with the keys of both).
pub fn referenced_secrets(spec: &RedisClusterSpec) -> Vec<(String, Vec<&'static str>)> {
    let mut out: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    if let Some(s) = &spec.auth_secret {
        out.entry(s.name.clone()).or_default().push(PASSWORD_KEY);
    }
    if let Some(s) = &spec.tls_secret {
        // The pods verify each other (and a TLS source) against ca.crt: without it nothing
        // replicates, so it is checked here, before any pod mounts the Secret.
        out.entry(s.name.clone())
            .or_default()
            .extend([TLS_CERT_KEY, TLS_KEY_KEY, TLS_CA_KEY]);
    }
    if let Some(name) = spec
        .replica_mode
        .as_ref()
        .and_then(|r| r.source.as_ref())
        .and_then(|s| s.auth_secret_name.as_ref())
        .filter(|n| !n.is_empty())
    {
        out.entry(name.clone()).or_default().push(PASSWORD_KEY);
    }
    out.into_iter()
        .map(|(name, mut keys)| {
            keys.sort();
            keys.dedup();
            (name, keys)
        })
        .collect()
}

/// Every problem with `spec`, given the state of the Secrets it references (keyed by name).
pub fn problems(
    namespace: &str,
    spec: &RedisClusterSpec,
    secrets: &BTreeMap<String, SecretState>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let quoted = |keys: &[&str]| {
        let q: Vec<String> = keys.iter().map(|k| format!("'{k}'")).collect();
        match q.as_slice() {
            [one] => format!("a {one} key"),
            [init @ .., last] => format!("keys {} and {last}", init.join(", ")),
            [] => String::new(),
        }
    };
    for (name, keys) in referenced_secrets(spec) {
        match secrets.get(&name).unwrap_or(&SecretState::Missing) {
            SecretState::Present => {}
            SecretState::Missing => out.push(Problem {
                reason: EventReason::SecretMissing,
                message: format!(
                    "Secret {namespace}/{name} does not exist: create it with {}{}",
                    quoted(&keys),
                    copy_hint(spec, &name, namespace)
                ),
            }),
            SecretState::MissingKeys(missing) => {
                let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
                let mut message = format!(
                    "Secret {namespace}/{name} has no {}",
                    quoted(&missing).trim_start_matches("a ")
                );
                if missing.contains(&TLS_CA_KEY) {
                    message.push_str(&format!(
                        ": the pods verify each other's certificates (and a TLS source's) against the CA in '{TLS_CA_KEY}', and `kubectl create secret tls` does not add one; add the CA that signed '{TLS_CERT_KEY}' (cert-manager writes it): kubectl patch secret -n {namespace} {name} --type=merge -p \"{{\\\"data\\\":{{\\\"{TLS_CA_KEY}\\\":\\\"$(base64 -w0 ca.crt)\\\"}}}}\""
                    ));
                }
                out.push(Problem {
                    reason: EventReason::SecretKeyMissing,
                    message,
                });
            }
        }
    }
    if let Some(source) = spec.replica_mode.as_ref().and_then(|r| r.source.as_ref())
        && !(1..=65535).contains(&source.port)
    {
        out.push(Problem {
            reason: EventReason::InvalidSpec,
            message: format!(
                "replicaMode.source.port {} is out of range (1-65535; a CRD installed before its range check let it in): set the source's real port",
                source.port
            ),
        });
    }
    if let Some(rm) = &spec.replica_mode {
        if rm.promote && !rm.enabled {
            out.push(Problem {
                reason: EventReason::InvalidSpec,
                message: "replicaMode.promote: true needs replicaMode.enabled: true".into(),
            });
        }
        if rm.enabled && rm.source.is_none() {
            out.push(Problem {
                reason: EventReason::InvalidSpec,
                message: "replicaMode.enabled: true needs replicaMode.source".into(),
            });
        }
    }
    if spec.mode == redis_cluster_api::ClusterMode::Sentinel && spec.tls_secret.is_some() {
        out.push(Problem {
            reason: EventReason::Unsupported,
            message: "mode: sentinel with tlsSecret is not supported yet: the Sentinels speak plain TCP and could not reach a Redis that serves TLS; use mode: standalone (the operator fails over) or remove tlsSecret".into(),
        });
    }
    if let Some(size) = &spec.replication_backlog_size
        && spec.replication_backlog_bytes().is_none()
    {
        out.push(Problem {
            reason: EventReason::InvalidSpec,
            message: format!(
                "replicationBacklogSize '{size}' is not a whole quantity such as 128Mi or 1Gi (a CRD installed before its rule let it in)"
            ),
        });
    }
    if let Some(plan) = spec.memory_plan()
        && plan.maxmemory == Some(0)
    {
        const MIB: u64 = 1 << 20;
        out.push(Problem {
            reason: EventReason::InvalidSpec,
            message: format!(
                "resources.limits.memory ({} MiB) leaves no room for the dataset after the replication backlog ({} MiB, replicationBacklogSize) and a replica's output buffer ({} MiB): raise the limit above {} MiB or lower replicationBacklogSize",
                plan.limit.unwrap_or(0) / MIB,
                plan.backlog / MIB,
                plan.output_hard / MIB,
                (plan.backlog + plan.output_hard) / MIB
            ),
        });
    }
    if let Some(min) = spec.min_sync_replicas
        && min >= spec.instances
    {
        out.push(Problem {
            reason: EventReason::InvalidSpec,
            message: format!(
                "minSyncReplicas ({min}) must be less than instances ({}): the primary could never accept a write",
                spec.instances
            ),
        });
    }
    out
}

/// The longest cluster name whose derived objects are all valid: the StatefulSet's pods carry a
/// `controller-revision-hash` label `<statefulset>-<10 characters>` (a label value, at most 63),
/// so a StatefulSet name is at most 52 characters, and the Sentinels' is `<name>-sentinel`.
pub fn max_name_len(spec: &RedisClusterSpec) -> usize {
    match spec.mode {
        redis_cluster_api::ClusterMode::Sentinel => 52 - "-sentinel".len(),
        redis_cluster_api::ClusterMode::Standalone => 52,
    }
}

/// Problems with the cluster's name for the objects derived from it: Services, the headless
/// Service's pod host names and StatefulSet names are DNS labels (RFC 1035: lowercase letters,
/// digits and '-', starting with a letter, ending with a letter or digit), and the StatefulSet's
/// pods must fit their `controller-revision-hash` label ([`max_name_len`]). A RedisCluster's own
/// name may contain dots and be longer; the API server would refuse every derived object.
pub fn name_problems(name: &str, spec: &RedisClusterSpec) -> Vec<Problem> {
    let mut why = Vec::new();
    let max = max_name_len(spec);
    if name.len() > max {
        why.push(format!(
            "it is {} characters long, and at most {max} fit the names derived from it ({} in mode: {})",
            name.len(),
            if spec.mode == redis_cluster_api::ClusterMode::Sentinel {
                "<name>-sentinel-<n> pods"
            } else {
                "<name>-<n> pods"
            },
            spec.mode.as_str()
        ));
    }
    if name.contains('.') {
        why.push("it contains '.', which Service and pod host names cannot".into());
    }
    let label_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !label_chars
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
        || !name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        why.push(
            "Service names must start with a lowercase letter and hold only lowercase letters, digits and '-'".into(),
        );
    }
    if why.is_empty() {
        return vec![];
    }
    vec![Problem {
        reason: EventReason::InvalidSpec,
        message: format!(
            "The cluster's name '{name}' cannot name the objects it needs: {}. A RedisCluster cannot be renamed: create it again under a name such as '{}' (nothing was created for this one)",
            why.join("; "),
            suggest(name, max)
        ),
    }]
}

/// A valid name close to `name`.
fn suggest(name: &str, max: usize) -> String {
    let mut s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .skip_while(|c| !c.is_ascii_lowercase())
        .take(max)
        .collect();
    while s.ends_with('-') {
        s.pop();
    }
    if s.is_empty() { "redis".into() } else { s }
}

fn copy_hint(spec: &RedisClusterSpec, name: &str, namespace: &str) -> String {
    let is_source = spec
        .replica_mode
        .as_ref()
        .and_then(|r| r.source.as_ref())
        .and_then(|s| s.auth_secret_name.as_deref())
        == Some(name);
    if is_source {
        format!(
            " (the source cluster's password: copy the Secret from the source namespace into {namespace})"
        )
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> RedisClusterSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn sentinel_mode_with_tls_is_refused_with_a_way_out() {
        let s = spec("storage: {size: 1Gi}\nmode: sentinel\ntlsSecret: {name: t}\n");
        let secrets = BTreeMap::from([("t".to_string(), SecretState::Present)]);
        let p = problems("ns", &s, &secrets);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].reason, EventReason::Unsupported);
        assert!(p[0].message.contains("use mode: standalone"));
        let s = spec("storage: {size: 1Gi}\nmode: standalone\ntlsSecret: {name: t}\n");
        assert!(problems("ns", &s, &secrets).is_empty());
    }

    #[test]
    fn missing_source_secret_says_to_copy_it() {
        let s = spec(
            "storage: {size: 1Gi}\nauthSecret: {name: dr-auth}\nreplicaMode: {enabled: true, source: {host: h, authSecretName: prod-auth}}",
        );
        let secrets = BTreeMap::from([("dr-auth".to_string(), SecretState::Present)]);
        let p = problems("dr", &s, &secrets);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].reason, EventReason::SecretMissing);
        assert_eq!(
            p[0].message,
            "Secret dr/prod-auth does not exist: create it with a 'password' key (the source cluster's password: copy the Secret from the source namespace into dr)"
        );
    }

    #[test]
    fn secret_without_password_key_is_reported() {
        let s = spec("storage: {size: 1Gi}\nauthSecret: {name: a}");
        let secrets = BTreeMap::from([(
            "a".to_string(),
            SecretState::MissingKeys(vec!["password".into()]),
        )]);
        assert_eq!(
            problems("ns", &s, &secrets)[0].message,
            "Secret ns/a has no 'password' key"
        );
        let ok = BTreeMap::from([("a".to_string(), SecretState::Present)]);
        assert!(problems("ns", &s, &ok).is_empty());
    }

    /// `kubectl create secret tls` makes a Secret without `ca.crt`: caught before any pod
    /// mounts it, with the command that adds it.
    #[test]
    fn a_tls_secret_needs_its_certificate_key_and_ca() {
        let s = spec("storage: {size: 1Gi}\ntlsSecret: {name: redis-tls}");
        assert_eq!(
            referenced_secrets(&s),
            vec![(
                "redis-tls".to_string(),
                vec!["ca.crt", "tls.crt", "tls.key"]
            )]
        );
        let secrets = BTreeMap::from([(
            "redis-tls".to_string(),
            SecretState::MissingKeys(vec!["ca.crt".into()]),
        )]);
        let p = problems("dr", &s, &secrets);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].reason, EventReason::SecretKeyMissing);
        assert!(
            p[0].message.starts_with("Secret dr/redis-tls has no 'ca.crt' key: the pods verify")
                && p[0].message.ends_with(
                    r#"kubectl patch secret -n dr redis-tls --type=merge -p "{\"data\":{\"ca.crt\":\"$(base64 -w0 ca.crt)\"}}""#
                ),
            "{}",
            p[0].message
        );
        let none = BTreeMap::new();
        assert_eq!(
            problems("dr", &s, &none)[0].message,
            "Secret dr/redis-tls does not exist: create it with keys 'ca.crt', 'tls.crt' and 'tls.key'"
        );
        let two = BTreeMap::from([(
            "redis-tls".to_string(),
            SecretState::MissingKeys(vec!["tls.key".into(), "ca.crt".into()]),
        )]);
        assert!(
            problems("dr", &s, &two)[0]
                .message
                .starts_with("Secret dr/redis-tls has no keys 'tls.key' and 'ca.crt': the pods"),
            "{:?}",
            problems("dr", &s, &two)
        );
        let ok = BTreeMap::from([("redis-tls".to_string(), SecretState::Present)]);
        assert!(problems("dr", &s, &ok).is_empty());
    }

    /// One Secret named for the cluster's password and the source's is read once.
    #[test]
    fn a_secret_named_twice_is_checked_once_with_every_key() {
        let s = spec(
            "storage: {size: 1Gi}\nauthSecret: {name: shared}\nreplicaMode: {enabled: true, source: {host: h, authSecretName: shared}}",
        );
        assert_eq!(
            referenced_secrets(&s),
            vec![("shared".to_string(), vec!["password"])]
        );
    }

    #[test]
    fn a_backlog_size_that_slipped_past_the_schema_is_reported() {
        let s = spec("storage: {size: 1Gi}\nreplicationBacklogSize: 1.5Gi");
        let p = problems("ns", &s, &BTreeMap::new());
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].message
                .starts_with("replicationBacklogSize '1.5Gi' is not")
        );
        let ok = spec("storage: {size: 1Gi}\nreplicationBacklogSize: 64Mi");
        assert!(problems("ns", &ok, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn a_memory_limit_that_leaves_no_room_for_data_is_reported() {
        let s = spec("storage: {size: 1Gi}\nresources: {limits: {memory: 384Mi}}");
        let p = problems("ns", &s, &BTreeMap::new());
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(
            p[0].message,
            "resources.limits.memory (384 MiB) leaves no room for the dataset after the replication backlog (128 MiB, replicationBacklogSize) and a replica's output buffer (256 MiB): raise the limit above 384 MiB or lower replicationBacklogSize"
        );
        let ok = spec(
            "storage: {size: 1Gi}\nresources: {limits: {memory: 2Gi}}\nmaxmemoryPolicy: allkeys-lru",
        );
        assert!(problems("ns", &ok, &BTreeMap::new()).is_empty());
        assert_eq!(ok.memory_plan().unwrap().maxmemory, Some(1_163_220_308));
    }

    #[test]
    fn conflicts_that_slipped_past_the_schema_are_reported() {
        let s = spec(
            "storage: {size: 1Gi}\ninstances: 2\nminSyncReplicas: 2\nreplicaMode: {promote: true}",
        );
        let reasons: Vec<_> = problems("ns", &s, &BTreeMap::new())
            .into_iter()
            .map(|p| p.message)
            .collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].contains("promote"));
        assert!(reasons[1].contains("minSyncReplicas (2)"));
    }

    #[test]
    fn names_that_cannot_name_the_derived_objects_are_refused_with_a_suggestion() {
        let standalone = spec("storage: {size: 1Gi}");
        let sentinel = spec("storage: {size: 1Gi}\nmode: sentinel");
        assert!(name_problems("dr-redis", &standalone).is_empty());
        assert!(name_problems(&"a".repeat(52), &standalone).is_empty());
        assert!(name_problems(&"a".repeat(43), &sentinel).is_empty());
        let long = name_problems(&"a".repeat(44), &sentinel);
        assert_eq!(long.len(), 1);
        assert_eq!(long[0].reason, EventReason::InvalidSpec);
        assert!(
            long[0]
                .message
                .contains("it is 44 characters long, and at most 43 fit"),
            "{}",
            long[0].message
        );
        let dotted = name_problems("redis.prod", &standalone);
        assert_eq!(
            dotted[0].message,
            "The cluster's name 'redis.prod' cannot name the objects it needs: it contains '.', which Service and pod host names cannot. A RedisCluster cannot be renamed: create it again under a name such as 'redis-prod' (nothing was created for this one)"
        );
        assert_eq!(name_problems("9lives", &standalone).len(), 1);
    }

    #[test]
    fn a_port_out_of_range_from_an_older_crd_is_refused_not_replaced() {
        for port in [0, 70000, -1] {
            let s = spec(&format!(
                "storage: {{size: 1Gi}}\nreplicaMode: {{enabled: true, source: {{host: h, port: {port}}}}}"
            ));
            let p = problems("ns", &s, &BTreeMap::new());
            assert_eq!(p.len(), 1, "{p:?}");
            assert_eq!(p[0].reason, EventReason::InvalidSpec);
            assert!(
                p[0].message
                    .starts_with(&format!("replicaMode.source.port {port} is out of range")),
                "{}",
                p[0].message
            );
        }
    }

    #[test]
    fn shared_secret_is_checked_once() {
        // A cross-region pair may use one Secret for both passwords.
        let s = spec(
            "storage: {size: 1Gi}\nauthSecret: {name: redis-password}\nreplicaMode: {enabled: true, source: {host: h, authSecretName: redis-password}}",
        );
        assert_eq!(
            referenced_secrets(&s),
            vec![("redis-password".to_string(), vec!["password"])]
        );
    }
}
