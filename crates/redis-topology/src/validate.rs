//! Checks the apiserver cannot make: the Secrets a spec names exist and hold a `password`, and
//! conflicts that slipped past the schema (e.g. a CRD installed before its CEL rules).
//! Each problem is a message a user can act on; the operator turns it into
//! `ConfigurationValid=False` and waits for a change instead of looping.

use std::collections::BTreeMap;

use redis_cluster_api::RedisClusterSpec;
use redis_cluster_api::names::{PASSWORD_KEY, TLS_CERT_KEY};

use crate::events::EventReason;

/// What the operator found for each Secret name the spec references.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretState {
    Missing,
    /// Exists but has no usable key (`password` for auth, `tls.crt`/`tls.key` for TLS).
    MissingKey,
    Present,
}

/// A reason the spec cannot be acted on yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Reason of the Event, and (as [`EventReason::as_str`]) of the `ConfigurationValid=False`
    /// condition.
    pub reason: EventReason,
    pub message: String,
}

/// The Secrets a spec references, with the key each one must have.
pub fn referenced_secrets(spec: &RedisClusterSpec) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    if let Some(s) = &spec.auth_secret {
        out.push((s.name.clone(), PASSWORD_KEY));
    }
    if let Some(s) = &spec.tls_secret {
        out.push((s.name.clone(), TLS_CERT_KEY));
    }
    if let Some(name) = spec
        .replica_mode
        .as_ref()
        .and_then(|r| r.source.as_ref())
        .and_then(|s| s.auth_secret_name.as_ref())
        .filter(|n| !n.is_empty())
    {
        out.push((name.clone(), PASSWORD_KEY));
    }
    out.sort();
    out.dedup();
    out
}

/// Every problem with `spec`, given the state of the Secrets it references (keyed by name).
pub fn problems(
    namespace: &str,
    spec: &RedisClusterSpec,
    secrets: &BTreeMap<String, SecretState>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    for (name, key) in referenced_secrets(spec) {
        match secrets.get(&name).copied().unwrap_or(SecretState::Missing) {
            SecretState::Present => {}
            SecretState::Missing => out.push(Problem {
                reason: EventReason::SecretMissing,
                message: format!(
                    "Secret {namespace}/{name} does not exist: create it with a '{key}' key{}",
                    copy_hint(spec, &name, namespace)
                ),
            }),
            SecretState::MissingKey => out.push(Problem {
                reason: EventReason::SecretKeyMissing,
                message: format!("Secret {namespace}/{name} has no '{key}' key"),
            }),
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
        let secrets = BTreeMap::from([("a".to_string(), SecretState::MissingKey)]);
        assert_eq!(
            problems("ns", &s, &secrets)[0].message,
            "Secret ns/a has no 'password' key"
        );
        let ok = BTreeMap::from([("a".to_string(), SecretState::Present)]);
        assert!(problems("ns", &s, &ok).is_empty());
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
            vec![("redis-password".to_string(), "password")]
        );
    }
}
