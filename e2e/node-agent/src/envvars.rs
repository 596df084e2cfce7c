//! A container's environment, built the way the kubelet builds it
//! (pkg/kubelet/kubelet_pods.go `makeEnvironmentVariables`): service variables first (the
//! `kubernetes` Service always, the namespace's Services when `enableServiceLinks` is not
//! false), then `envFrom`, then `env` in order with `$(VAR)` expansion against what is defined
//! so far. Pure: Secrets, ConfigMaps and Services are fetched by the caller.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, Service};

use crate::quantity::{Quantity, resource_field_value};

/// The kubelet's `$(VAR)` expansion (third_party/forked/golang/expansion): `$(NAME)` is
/// replaced when `NAME` is defined and kept verbatim otherwise, `$$` is an escaped `$`, any
/// other `$` is literal.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.extend_from_slice(&bytes[checkpoint..cursor]);
            let rest = &bytes[cursor + 1..];
            let advance = match rest[0] {
                b'$' => {
                    out.push(b'$');
                    1
                }
                b'(' => match rest.iter().position(|&b| b == b')') {
                    Some(close) => {
                        let name = String::from_utf8_lossy(&rest[1..close]);
                        match lookup(&name) {
                            Some(v) => out.extend_from_slice(v.as_bytes()),
                            None => out.extend_from_slice(format!("$({name})").as_bytes()),
                        }
                        close + 1
                    }
                    None => {
                        out.extend_from_slice(b"$(");
                        1
                    }
                },
                other => {
                    out.push(b'$');
                    out.push(other);
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.extend_from_slice(&bytes[checkpoint.min(bytes.len())..]);
    String::from_utf8_lossy(&out).into_owned()
}

/// What the downward API can read about a pod besides its object.
#[derive(Clone, Debug, Default)]
pub struct FieldContext {
    pub pod_ip: Option<String>,
    pub host_ip: String,
    /// The node's allocatable resources: a container without a limit sees these, as with the
    /// kubelet (`MergeContainerResourceLimits`).
    pub allocatable: BTreeMap<String, Quantity>,
}

/// `metadata.labels['key']` -> ("metadata.labels", Some("key")).
fn split_subscript(path: &str) -> (&str, Option<&str>) {
    if let Some(open) = path.find("['")
        && let Some(inner) = path[open + 2..].strip_suffix("']")
    {
        return (&path[..open], Some(inner));
    }
    (path, None)
}

/// The kubelet's `fieldpath.FormatMap`: sorted `key="value"` lines, values quoted like Go's
/// `%q`, no trailing newline.
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Go's `strconv.Quote` for the characters labels and annotations can hold.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A `fieldRef`'s value (env or downward API volume).
pub fn field_ref_value(pod: &Pod, ctx: &FieldContext, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let empty = BTreeMap::new();
    let (base, key) = split_subscript(path);
    let value = match (base, key) {
        ("metadata.name", None) => meta.name.clone().unwrap_or_default(),
        ("metadata.namespace", None) => meta.namespace.clone().unwrap_or_default(),
        ("metadata.uid", None) => meta.uid.clone().unwrap_or_default(),
        ("metadata.labels", None) => format_map(meta.labels.as_ref().unwrap_or(&empty)),
        ("metadata.annotations", None) => format_map(meta.annotations.as_ref().unwrap_or(&empty)),
        ("metadata.labels", Some(k)) => meta
            .labels
            .as_ref()
            .and_then(|l| l.get(k).cloned())
            .unwrap_or_default(),
        ("metadata.annotations", Some(k)) => meta
            .annotations
            .as_ref()
            .and_then(|l| l.get(k).cloned())
            .unwrap_or_default(),
        ("spec.nodeName", None) => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        ("spec.serviceAccountName", None) => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        ("status.hostIP" | "status.hostIPs", None) => ctx.host_ip.clone(),
        ("status.podIP" | "status.podIPs", None) => ctx.pod_ip.clone().unwrap_or_default(),
        _ => return Err(format!("unsupported fieldPath: {path}")),
    };
    Ok(value)
}

/// A `resourceFieldRef`'s value for `container`: `limits.cpu`, `requests.memory`, ...
pub fn resource_ref_value(
    container: &Container,
    ctx: &FieldContext,
    resource: &str,
    divisor: Option<&str>,
) -> Result<String, String> {
    let divisor = divisor.map(Quantity::parse).transpose()?;
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource: {resource}"))?;
    let res = container.resources.as_ref();
    let quantity = match kind {
        "limits" => res
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get(name))
            .map(|q| Quantity::parse(&q.0))
            .transpose()?
            .or_else(|| ctx.allocatable.get(name).copied()),
        "requests" => res
            .and_then(|r| r.requests.as_ref())
            .and_then(|l| l.get(name))
            .map(|q| Quantity::parse(&q.0))
            .transpose()?,
        _ => return Err(format!("unsupported container resource: {resource}")),
    };
    Ok(resource_field_value(
        resource,
        quantity.unwrap_or(Quantity(0)),
        divisor,
    ))
}

/// Secrets and ConfigMaps a container's environment reads, fetched by the caller: `None` when
/// the object does not exist.
#[derive(Clone, Debug, Default)]
pub struct EnvSources {
    pub secrets: BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>,
    pub config_maps: BTreeMap<String, Option<BTreeMap<String, String>>>,
}

/// Names of the Secrets and ConfigMaps `container`'s environment refers to.
pub fn env_references(container: &Container) -> (Vec<String>, Vec<String>) {
    let mut secrets = Vec::new();
    let mut config_maps = Vec::new();
    for from in container.env_from.iter().flatten() {
        if let Some(s) = &from.secret_ref {
            secrets.push(s.name.clone());
        }
        if let Some(c) = &from.config_map_ref {
            config_maps.push(c.name.clone());
        }
    }
    for e in container.env.iter().flatten() {
        if let Some(vf) = &e.value_from {
            if let Some(s) = &vf.secret_key_ref {
                secrets.push(s.name.clone());
            }
            if let Some(c) = &vf.config_map_key_ref {
                config_maps.push(c.name.clone());
            }
        }
    }
    secrets.sort();
    secrets.dedup();
    config_maps.sort();
    config_maps.dedup();
    (secrets, config_maps)
}

fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

/// The kubelet's service variables (pkg/kubelet/envvars `FromServices`) for `services`, which
/// the caller has already chosen (see [`services_for_pod`]).
pub fn service_env(services: &[&Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let prefix = env_name(svc.metadata.name.as_deref().unwrap_or_default());
        out.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{prefix}_SERVICE_PORT_{}", env_name(n)),
                    p.port.to_string(),
                ));
            }
        }
        for (i, p) in ports.iter().enumerate() {
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let lower = proto.to_lowercase();
            let url = format!("{lower}://{ip}:{}", p.port);
            if i == 0 {
                out.push((format!("{prefix}_PORT"), url.clone()));
            }
            let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
            out.push((pp.clone(), url));
            out.push((format!("{pp}_PROTO"), lower));
            out.push((format!("{pp}_PORT"), p.port.to_string()));
            out.push((format!("{pp}_ADDR"), ip.clone()));
        }
    }
    out
}

/// Which Services a pod's environment describes (`getServiceEnvVarMap`): `default/kubernetes`
/// always, and those of the pod's namespace when `enableServiceLinks` is not false.
pub fn services_for_pod<'a>(pod: &Pod, all: &'a [Service]) -> Vec<&'a Service> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut by_name: BTreeMap<&str, &Service> = BTreeMap::new();
    for svc in all {
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let svc_ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        if svc_ns == "default" && name == "kubernetes" {
            by_name.entry(name).or_insert(svc);
        } else if svc_ns == ns && links {
            by_name.insert(name, svc);
        }
    }
    by_name.into_values().collect()
}

/// The container's environment, or the kubelet's `CreateContainerConfigError` message.
pub fn build_env(
    pod: &Pod,
    container: &Container,
    ctx: &FieldContext,
    sources: &EnvSources,
    service_vars: &[(String, String)],
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let service_map: BTreeMap<&str, &str> = service_vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // Insertion-ordered: what the container defined, in order.
    let mut defined: Vec<(String, String)> = Vec::new();
    let set = |defined: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(slot) = defined.iter_mut().find(|(n, _)| *n == k) {
            slot.1 = v;
        } else {
            defined.push((k, v));
        }
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.config_maps.get(&r.name).cloned().flatten() {
                Some(data) => {
                    for (k, v) in data {
                        set(&mut defined, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name).cloned().flatten() {
                Some(data) => {
                    for (k, v) in data {
                        set(
                            &mut defined,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v).into_owned(),
                        );
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(v) = e.value.as_deref().filter(|v| !v.is_empty()) {
            let snapshot = defined.clone();
            let lookup = |name: &str| {
                snapshot
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .or_else(|| service_map.get(name).map(|v| v.to_string()))
            };
            expand(v, &lookup)
        } else if let Some(vf) = &e.value_from {
            if let Some(f) = &vf.field_ref {
                field_ref_value(pod, ctx, &f.field_path)?
            } else if let Some(r) = &vf.resource_field_ref {
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(name) => find_container(pod, name)
                        .ok_or_else(|| format!("container {name} not found"))?,
                    None => container,
                };
                resource_ref_value(
                    target,
                    ctx,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                )?
            } else if let Some(r) = &vf.secret_key_ref {
                match sources.secrets.get(&r.name).cloned().flatten() {
                    Some(data) => match data.get(&r.key) {
                        Some(v) => String::from_utf8_lossy(v).into_owned(),
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {ns}/{}",
                                r.key, r.name
                            ));
                        }
                    },
                    None if r.optional == Some(true) => continue,
                    None => return Err(format!("secret \"{}\" not found", r.name)),
                }
            } else if let Some(r) = &vf.config_map_key_ref {
                match sources.config_maps.get(&r.name).cloned().flatten() {
                    Some(data) => match data.get(&r.key) {
                        Some(v) => v.clone(),
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {ns}/{}",
                                r.key, r.name
                            ));
                        }
                    },
                    None if r.optional == Some(true) => continue,
                    None => return Err(format!("configmap \"{}\" not found", r.name)),
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        set(&mut defined, e.name.clone(), value);
    }
    for (k, v) in service_vars {
        if !defined.iter().any(|(n, _)| n == k) {
            defined.push((k.clone(), v.clone()));
        }
    }
    Ok(defined)
}

pub fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

/// `command` and `args` with `$(VAR)` expanded against the container's final environment
/// (`ExpandContainerCommandAndArgs`).
pub fn expand_command(
    container: &Container,
    env: &[(String, String)],
) -> (Vec<String>, Vec<String>) {
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let command = container
        .command
        .iter()
        .flatten()
        .map(|c| expand(c, &lookup))
        .collect();
    let args = container
        .args
        .iter()
        .flatten()
        .map(|c| expand(c, &lookup))
        .collect();
    (command, args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup_from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn expansion_follows_the_kubelet() {
        let l = lookup_from(&[("POD_NAME", "dr-redis-0"), ("EMPTY", "")]);
        assert_eq!(expand("$(POD_NAME).svc", &l), "dr-redis-0.svc");
        assert_eq!(expand("$(MISSING)", &l), "$(MISSING)");
        assert_eq!(expand("$$(POD_NAME)", &l), "$(POD_NAME)");
        assert_eq!(expand("a$b", &l), "a$b");
        assert_eq!(expand("$(POD_NAME", &l), "$(POD_NAME");
        assert_eq!(expand("x$", &l), "x$");
        assert_eq!(expand("$(EMPTY)-", &l), "-");
        assert_eq!(expand("$$$$", &l), "$$");
        assert_eq!(expand("é$(POD_NAME)é", &l), "édr-redis-0é");
        assert_eq!(expand("", &l), "");
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                "labels": {"app": "redis", "b": "x\"y"}, "annotations": {"redis.io/topology": "{\"epoch\":1}"}},
            "spec": {"nodeName": "region-a-1", "serviceAccountName": "sa",
                "containers": [{"name": "c", "image": "redis:7.2",
                    "resources": {"limits": {"memory": "1Gi"}, "requests": {"cpu": "250m"}}}]}
        }))
        .unwrap()
    }

    fn ctx() -> FieldContext {
        FieldContext {
            pod_ip: Some("10.78.1.2".into()),
            host_ip: "127.0.0.1".into(),
            allocatable: BTreeMap::from([
                ("cpu".into(), Quantity::parse("8").unwrap()),
                ("memory".into(), Quantity::parse("16Gi").unwrap()),
            ]),
        }
    }

    #[test]
    fn field_refs() {
        let p = pod();
        let c = ctx();
        let f = |path: &str| field_ref_value(&p, &c, path).unwrap();
        assert_eq!(f("metadata.name"), "p");
        assert_eq!(f("metadata.namespace"), "ns");
        assert_eq!(f("metadata.uid"), "u-1");
        assert_eq!(f("metadata.labels['app']"), "redis");
        assert_eq!(
            f("metadata.annotations['redis.io/topology']"),
            "{\"epoch\":1}"
        );
        assert_eq!(f("metadata.labels['none']"), "");
        assert_eq!(f("spec.nodeName"), "region-a-1");
        assert_eq!(f("spec.serviceAccountName"), "sa");
        assert_eq!(f("status.podIP"), "10.78.1.2");
        assert_eq!(f("status.podIPs"), "10.78.1.2");
        assert_eq!(f("status.hostIP"), "127.0.0.1");
        assert_eq!(f("metadata.labels"), "app=\"redis\"\nb=\"x\\\"y\"");
        assert!(field_ref_value(&p, &c, "spec.bogus").is_err());
    }

    #[test]
    fn resource_refs_default_limits_to_allocatable() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let x = ctx();
        assert_eq!(resource_ref_value(c, &x, "limits.cpu", None).unwrap(), "8");
        assert_eq!(
            resource_ref_value(c, &x, "limits.memory", Some("1Mi")).unwrap(),
            "1024"
        );
        assert_eq!(
            resource_ref_value(c, &x, "requests.cpu", Some("1m")).unwrap(),
            "250"
        );
        assert_eq!(
            resource_ref_value(c, &x, "requests.cpu", None).unwrap(),
            "1"
        );
        assert_eq!(
            resource_ref_value(c, &x, "requests.memory", None).unwrap(),
            "0"
        );
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\x01é\"");
    }

    fn svc(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports}
        }))
        .unwrap()
    }

    #[test]
    fn service_variables_like_the_kubelet() {
        let all = vec![
            svc(
                "default",
                "kubernetes",
                "10.96.0.1",
                json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
            ),
            svc(
                "ns",
                "redis-leader",
                "10.96.3.4",
                json!([{"name": "redis", "port": 6379}]),
            ),
            svc("ns", "headless", "None", json!([{"port": 6379}])),
            svc("other", "x", "10.96.9.9", json!([{"port": 1}])),
        ];
        let p = pod();
        let chosen = services_for_pod(&p, &all);
        let env: BTreeMap<String, String> = service_env(&chosen).into_iter().collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(env["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(env["KUBERNETES_PORT"], "tcp://10.96.0.1:443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP"], "tcp://10.96.0.1:443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_PROTO"], "tcp");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_PORT"], "443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_ADDR"], "10.96.0.1");
        assert_eq!(env["REDIS_LEADER_SERVICE_HOST"], "10.96.3.4");
        assert_eq!(env["REDIS_LEADER_SERVICE_PORT_REDIS"], "6379");
        assert!(
            !env.keys()
                .any(|k| k.starts_with("HEADLESS") || k.starts_with("X_"))
        );

        let mut no_links = pod();
        no_links.spec.as_mut().unwrap().enable_service_links = Some(false);
        let chosen = services_for_pod(&no_links, &all);
        let env: BTreeMap<String, String> = service_env(&chosen).into_iter().collect();
        assert!(env.contains_key("KUBERNETES_SERVICE_HOST"));
        assert!(!env.contains_key("REDIS_LEADER_SERVICE_HOST"));
    }

    #[test]
    fn environment_in_order_with_expansion_and_references() {
        let mut p = pod();
        p.spec.as_mut().unwrap().containers[0] = serde_json::from_value(json!({
            "name": "c", "image": "redis:7.2",
            "command": ["echo", "$(HOST)", "$$(HOST)"],
            "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "HOST", "value": "$(POD_NAME).h.$(KUBERNETES_SERVICE_HOST).$(LATER)"},
                {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "password"}}},
                {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}},
                {"name": "LATER", "value": "x"},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}}
            ]
        }))
        .unwrap();
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        let (secrets, cms) = env_references(&c);
        assert_eq!(secrets, ["gone", "s"]);
        assert_eq!(cms, ["cm"]);
        let sources = EnvSources {
            secrets: BTreeMap::from([
                (
                    "s".into(),
                    Some(BTreeMap::from([("password".into(), b"hunter2".to_vec())])),
                ),
                ("gone".into(), None),
            ]),
            config_maps: BTreeMap::from([(
                "cm".into(),
                Some(BTreeMap::from([("a".into(), "1".into())])),
            )]),
        };
        let svc_vars = vec![(
            "KUBERNETES_SERVICE_HOST".to_string(),
            "10.96.0.1".to_string(),
        )];
        let env = build_env(&p, &c, &ctx(), &sources, &svc_vars).unwrap();
        let m: BTreeMap<_, _> = env.iter().cloned().collect();
        assert_eq!(m["CM_a"], "1");
        assert_eq!(m["HOST"], "p.h.10.96.0.1.$(LATER)");
        assert_eq!(m["PASS"], "hunter2");
        assert!(!m.contains_key("OPT"));
        // No limit: the node's allocatable memory (16Gi), as with the kubelet.
        assert_eq!(m["MEM"], "16384");
        assert_eq!(m["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
        assert_eq!(env[0].0, "CM_a");
        let (cmd, _) = expand_command(&c, &env);
        assert_eq!(cmd, ["echo", "p.h.10.96.0.1.$(LATER)", "$(HOST)"]);

        // A missing required Secret is the kubelet's CreateContainerConfigError.
        let mut missing = sources.clone();
        missing.secrets.insert("s".into(), None);
        assert_eq!(
            build_env(&p, &c, &ctx(), &missing, &svc_vars).unwrap_err(),
            "secret \"s\" not found"
        );
        let mut no_key = sources.clone();
        no_key.secrets.insert("s".into(), Some(BTreeMap::new()));
        assert_eq!(
            build_env(&p, &c, &ctx(), &no_key, &svc_vars).unwrap_err(),
            "couldn't find key password in Secret ns/s"
        );
    }
}
