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
