//! Pod volumes on the host, laid out like the kubelet's
//! (`<pod dir>/volumes/kubernetes.io~<plugin>/<name>`), each then bind-mounted into the
//! containers by their launcher. Secret, ConfigMap, downward API and projected volumes are
//! written with the atomic writer and re-synced periodically (so rotated Secrets and changed
//! annotations reach the files); emptyDir is a directory (a tmpfs for `medium: Memory`);
//! a PVC is the directory of its bound PV (`hostPath.path` or `local.path`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod,
    Secret, ServiceAccount, Volume,
};
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::atomic_writer::{self, File, Payload};
use crate::envvars::{FieldContext, field_ref_value, find_container, resource_ref_value};
use crate::quantity::Quantity;

pub const DEFAULT_MODE: i32 = 0o644;

fn plugin_dir(pod_dir: &Path, plugin: &str, name: &str) -> PathBuf {
    pod_dir
        .join("volumes")
        .join(format!("kubernetes.io~{plugin}"))
        .join(name)
}

/// `items` (or every key) of a Secret's or ConfigMap's data as files.
pub fn keys_payload(
    kind: &str,
    name: &str,
    data: Option<&BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, String> {
    let Some(data) = data else {
        if optional {
            return Ok(Payload::new());
        }
        return Err(format!("{kind} \"{name}\" not found"));
    };
    let mut out = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(d) => {
                        out.insert(
                            item.path.clone(),
                            File {
                                data: d.clone(),
                                mode: item.mode.unwrap_or(default_mode) as u32,
                            },
                        );
                    }
                    None if optional => {}
                    None => {
                        let kind = if kind == "secret" {
                            "Secret"
                        } else {
                            "ConfigMap"
                        };
                        return Err(format!("couldn't find key {} in {kind} {name}", item.key));
                    }
                }
            }
        }
        None => {
            for (k, d) in data {
                out.insert(
                    k.clone(),
                    File {
                        data: d.clone(),
                        mode: default_mode as u32,
                    },
                );
            }
        }
    }
    Ok(out)
}

/// Downward API files (fieldRef, resourceFieldRef).
pub fn downward_payload(
    pod: &Pod,
    ctx: &FieldContext,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            field_ref_value(pod, ctx, &f.field_path)?
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.as_deref().unwrap_or_default();
            let c =
                find_container(pod, name).ok_or_else(|| format!("container {name:?} not found"))?;
            resource_ref_value(
                c,
                ctx,
                &r.resource,
                r.divisor.as_ref().map(|d| d.0.as_str()),
            )?
        } else {
            String::new()
        };
        out.insert(
            item.path.clone(),
            File {
                data: value.into_bytes(),
                mode: item.mode.unwrap_or(default_mode) as u32,
            },
        );
    }
    Ok(out)
}

/// A service-account token from the TokenRequest API, bound to the pod.
#[derive(Clone, Debug)]
pub struct Token {
    pub token: String,
    pub fetched_at: DateTime<Utc>,
    /// The requested lifetime (the apiserver may extend the real expiry; the kubelet refreshes
    /// on what it asked for).
    pub ttl_seconds: i64,
}

/// The kubelet's token manager rule: refresh once 80% of the lifetime has passed.
pub fn needs_refresh(t: &Token, now: DateTime<Utc>) -> bool {
    let age = (now - t.fetched_at).num_milliseconds();
    age >= t.ttl_seconds * 1000 * 8 / 10
}

/// Token cache of one pod: (audience, expirationSeconds) -> token.
#[derive(Default)]
pub struct Tokens {
    entries: HashMap<(String, i64), Token>,
}

/// What volumes need from the cluster (a trait so tests can feed objects without a server).
pub struct Fetch<'a> {
    pub client: &'a kube::Client,
}

impl Fetch<'_> {
    async fn secret(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        let s: Option<Secret> = Api::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|e| format!("secret {ns}/{name}: {e}"))?;
        Ok(s.map(|s| {
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .chain(
                    s.string_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes())),
                )
                .collect()
        }))
    }

    async fn config_map(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        let c: Option<ConfigMap> = Api::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|e| format!("configmap {ns}/{name}: {e}"))?;
        Ok(c.map(|c| {
            c.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .chain(
                    c.binary_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0)),
                )
                .collect()
        }))
    }

    pub async fn secret_strings(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        self.secret(ns, name).await
    }

    pub async fn config_map_strings(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String> {
        Ok(self.config_map(ns, name).await?.map(|m| {
            m.into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect()
        }))
    }

    async fn token(
        &self,
        pod: &Pod,
        tokens: &mut Tokens,
        audience: &str,
        expiration: i64,
        now: DateTime<Utc>,
    ) -> Result<String, String> {
        let key = (audience.to_string(), expiration);
        if let Some(t) = tokens.entries.get(&key)
            && !needs_refresh(t, now)
        {
            return Ok(t.token.clone());
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let audiences: Vec<&str> = if audience.is_empty() {
            vec![]
        } else {
            vec![audience]
        };
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": audiences,
                "expirationSeconds": expiration,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": pod.metadata.name,
                    "uid": pod.metadata.uid,
                },
            },
        });
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        let resp: serde_json::Value = api
            .create_subresource("token", &sa, &PostParams::default(), &body)
            .await
            .map_err(|e| format!("token for serviceaccount {ns}/{sa}: {e}"))?;
        let token = resp["status"]["token"]
            .as_str()
            .ok_or("TokenRequest returned no token")?
            .to_string();
        let ttl = resp["spec"]["expirationSeconds"]
            .as_i64()
            .unwrap_or(expiration);
        tokens.entries.insert(
            key,
            Token {
                token: token.clone(),
                fetched_at: now,
                ttl_seconds: ttl,
            },
        );
        Ok(token)
    }

    async fn pvc_path(&self, ns: &str, claim: &str) -> Result<PathBuf, String> {
        let pvc: PersistentVolumeClaim = Api::namespaced(self.client.clone(), ns)
            .get(claim)
            .await
            .map_err(|e| format!("persistentvolumeclaim {ns}/{claim}: {e}"))?;
        let phase = pvc
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let Some(pv_name) = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|v| !v.is_empty())
        else {
            return Err(format!("PVC {ns}/{claim} has non-bound phase ({phase:?})"));
        };
        if phase != "Bound" {
            return Err(format!("PVC {ns}/{claim} has non-bound phase ({phase:?})"));
        }
        let pv: PersistentVolume = Api::all(self.client.clone())
            .get(&pv_name)
            .await
            .map_err(|e| format!("persistentvolume {pv_name}: {e}"))?;
        let spec = pv.spec.unwrap_or_default();
        spec.host_path
            .map(|h| PathBuf::from(h.path))
            .or(spec.local.map(|l| PathBuf::from(l.path)))
            .ok_or_else(|| {
                format!(
                    "persistentvolume {pv_name} is neither hostPath nor local: not supported here"
                )
            })
    }
}

/// The host directories of a pod's volumes, by volume name.
pub type Sources = BTreeMap<String, PathBuf>;

/// Settings the volumes take from the pod and the node.
pub struct Context<'a> {
    pub pod: &'a Pod,
    pub pod_dir: &'a Path,
    pub fields: &'a FieldContext,
    pub fs_group: Option<u32>,
    pub now: DateTime<Utc>,
}

fn is_atomic(v: &Volume) -> bool {
    v.secret.is_some()
        || v.config_map.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

/// Write the atomic-writer volumes (all, or those changed since the last call).
async fn sync_atomic(
    fetch: &Fetch<'_>,
    cx: &Context<'_>,
    tokens: &mut Tokens,
    v: &Volume,
) -> Result<PathBuf, String> {
    let ns = cx.pod.metadata.namespace.as_deref().unwrap_or("default");
    let (dir, payload) = if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let data = fetch.secret(ns, &name).await?;
        (
            plugin_dir(cx.pod_dir, "secret", &v.name),
            keys_payload(
                "secret",
                &name,
                data.as_ref(),
                s.items.as_deref(),
                s.default_mode.unwrap_or(DEFAULT_MODE),
                s.optional == Some(true),
            )?,
        )
    } else if let Some(c) = &v.config_map {
        let data = fetch.config_map(ns, &c.name).await?;
        (
            plugin_dir(cx.pod_dir, "configmap", &v.name),
            keys_payload(
                "configmap",
                &c.name,
                data.as_ref(),
                c.items.as_deref(),
                c.default_mode.unwrap_or(DEFAULT_MODE),
                c.optional == Some(true),
            )?,
        )
    } else if let Some(d) = &v.downward_api {
        (
            plugin_dir(cx.pod_dir, "downward-api", &v.name),
            downward_payload(
                cx.pod,
                cx.fields,
                d.items.as_deref().unwrap_or_default(),
                d.default_mode.unwrap_or(DEFAULT_MODE),
            )?,
        )
    } else if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(DEFAULT_MODE);
        let mut payload = Payload::new();
        for src in p.sources.iter().flatten() {
            if let Some(s) = &src.secret {
                let data = fetch.secret(ns, &s.name).await?;
                payload.extend(keys_payload(
                    "secret",
                    &s.name,
                    data.as_ref(),
                    s.items.as_deref(),
                    mode,
                    s.optional == Some(true),
                )?);
            } else if let Some(c) = &src.config_map {
                let data = fetch.config_map(ns, &c.name).await?;
                payload.extend(keys_payload(
                    "configmap",
                    &c.name,
                    data.as_ref(),
                    c.items.as_deref(),
                    mode,
                    c.optional == Some(true),
                )?);
            } else if let Some(d) = &src.downward_api {
                payload.extend(downward_payload(
                    cx.pod,
                    cx.fields,
                    d.items.as_deref().unwrap_or_default(),
                    mode,
                )?);
            } else if let Some(t) = &src.service_account_token {
                let token = fetch
                    .token(
                        cx.pod,
                        tokens,
                        t.audience.as_deref().unwrap_or_default(),
                        t.expiration_seconds.unwrap_or(3600),
                        cx.now,
                    )
                    .await?;
                payload.insert(
                    t.path.clone(),
                    File {
                        data: token.into_bytes(),
                        mode: mode as u32,
                    },
                );
            } else {
                return Err(format!(
                    "volume {:?}: projected source not supported by redis-node-agent",
                    v.name
                ));
            }
        }
        (plugin_dir(cx.pod_dir, "projected", &v.name), payload)
    } else {
        unreachable!("is_atomic checked");
    };
    let changed = atomic_writer::write(&dir, &payload, cx.now)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    if changed && let Some(gid) = cx.fs_group {
        atomic_writer::set_ownership(&dir, gid, true)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(dir)
}

/// Whether `path` is a mount point in this (the agent's) mount namespace.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let target = path.display().to_string();
    info.lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .any(|m| m == target)
}

fn empty_dir(
    cx: &Context<'_>,
    v: &Volume,
    allocatable_memory: Option<Quantity>,
) -> Result<PathBuf, String> {
    let dir = plugin_dir(cx.pod_dir, "empty-dir", &v.name);
    let ed = v.empty_dir.as_ref().expect("emptyDir");
    let fresh = !dir.exists();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut mounted = false;
    if ed.medium.as_deref() == Some("Memory") && !is_mount_point(&dir) {
        let size = ed
            .size_limit
            .as_ref()
            .map(|q| Quantity::parse(&q.0))
            .transpose()?
            .or(allocatable_memory)
            .map(|q| q.value().max(4096));
        let mut opts = "mode=0777".to_string();
        if let Some(s) = size {
            opts.push_str(&format!(",size={s}"));
        }
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "mounting tmpfs on {}: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        mounted = true;
    }
    // Set up once (the kubelet's emptyDir SetUp is a no-op when ready).
    if fresh || mounted {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| e.to_string())?;
        if let Some(gid) = cx.fs_group {
            atomic_writer::set_ownership(&dir, gid, false).map_err(|e| e.to_string())?;
        }
    }
    Ok(dir)
}

/// Set up every volume of the pod; the first failure is the kubelet's FailedMount message.
pub async fn setup(
    fetch: &Fetch<'_>,
    cx: &Context<'_>,
    tokens: &mut Tokens,
    allocatable_memory: Option<Quantity>,
) -> Result<Sources, String> {
    let mut out = Sources::new();
    let ns = cx.pod.metadata.namespace.as_deref().unwrap_or("default");
    for v in cx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default()
    {
        let path = if is_atomic(&v) {
            sync_atomic(fetch, cx, tokens, &v).await?
        } else if v.empty_dir.is_some() {
            empty_dir(cx, &v, allocatable_memory)?
        } else if let Some(c) = &v.persistent_volume_claim {
            let path = fetch.pvc_path(ns, &c.claim_name).await?;
            std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            if let Some(gid) = cx.fs_group {
                let policy = cx
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.security_context.as_ref())
                    .and_then(|s| s.fs_group_change_policy.clone());
                let root_matches = std::os::unix::fs::MetadataExt::gid(
                    &std::fs::metadata(&path).map_err(|e| e.to_string())?,
                ) == gid;
                if policy.as_deref() != Some("OnRootMismatch") || !root_matches {
                    atomic_writer::set_ownership(&path, gid, c.read_only == Some(true))
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
            }
            path
        } else if let Some(h) = &v.host_path {
            let path = PathBuf::from(&h.path);
            if matches!(h.type_.as_deref(), Some("DirectoryOrCreate")) {
                std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
            }
            path
        } else {
            return Err(format!(
                "volume {:?}: this volume type is not simulated by redis-node-agent",
                v.name
            ));
        };
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

/// Re-sync Secret, ConfigMap, downward API and projected volumes (token refresh included).
/// Errors leave the previous content in place, as with the kubelet.
pub async fn resync(fetch: &Fetch<'_>, cx: &Context<'_>, tokens: &mut Tokens) -> Vec<String> {
    let mut errors = Vec::new();
    for v in cx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default()
    {
        if is_atomic(&v)
            && let Err(e) = sync_atomic(fetch, cx, tokens, &v).await
        {
            errors.push(e);
        }
    }
    errors
}

/// Unmount the pod's memory-backed volumes and remove its volume directories (never a PV's
/// directory: those live elsewhere and stay with their claim).
pub fn teardown(pod_dir: &Path) {
    let ed = pod_dir.join("volumes").join("kubernetes.io~empty-dir");
    for e in std::fs::read_dir(&ed).into_iter().flatten().flatten() {
        if is_mount_point(&e.path()) {
            let _ = Command::new("umount").arg("-l").arg(e.path()).status();
        }
    }
    let _ = std::fs::remove_dir_all(pod_dir.join("volumes"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn key_payloads() {
        let d = data(&[("password", "pw"), ("user", "u")]);
        let all = keys_payload("secret", "auth", Some(&d), None, 0o440, false).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all["password"].mode, 0o440);
        let items = vec![KeyToPath {
            key: "password".into(),
            path: "pw/file".into(),
            mode: Some(0o400),
        }];
        let some = keys_payload("secret", "auth", Some(&d), Some(&items), 0o644, false).unwrap();
        assert_eq!(some.keys().collect::<Vec<_>>(), ["pw/file"]);
        assert_eq!(some["pw/file"].mode, 0o400);
        assert_eq!(
            keys_payload("secret", "auth", None, None, 0o644, false).unwrap_err(),
            "secret \"auth\" not found"
        );
        assert!(
            keys_payload("secret", "auth", None, None, 0o644, true)
                .unwrap()
                .is_empty()
        );
        let missing = vec![KeyToPath {
            key: "nope".into(),
            path: "x".into(),
            mode: None,
        }];
        assert_eq!(
            keys_payload("configmap", "cm", Some(&d), Some(&missing), 0o644, false).unwrap_err(),
            "couldn't find key nope in ConfigMap cm"
        );
    }

    #[test]
    fn downward_files() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns",
                "annotations": {"redis.io/topology": "{\"epoch\":2}", "a": "b"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]}
        }))
        .unwrap();
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(json!([
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
            {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}
        ]))
        .unwrap();
        let p = downward_payload(&pod, &FieldContext::default(), &items, 0o644).unwrap();
        assert_eq!(
            String::from_utf8(p["annotations"].data.clone()).unwrap(),
            "a=\"b\"\nredis.io/topology=\"{\\\"epoch\\\":2}\""
        );
        assert_eq!(p["namespace"].data, b"ns");
        assert_eq!(p["mem"].data, b"64");
    }

    #[test]
    fn token_refresh_at_eighty_percent() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let t = Token {
            token: "x".into(),
            fetched_at: t0,
            ttl_seconds: 3607,
        };
        assert!(!needs_refresh(&t, t0 + chrono::Duration::seconds(2885)));
        assert!(needs_refresh(&t, t0 + chrono::Duration::seconds(2886)));
    }
}
