//! The drill's Kubernetes side: what a user types (`kubectl apply -f` of the spec's samples,
//! `kubectl patch`, `kubectl annotate`, `kubectl describe`), what the API says (pods, conditions,
//! Events, labels, a Service's endpoints), and the faults a real cluster has, injected on the
//! machine (a Redis that cannot restart, the inter-region link).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use kcluster::client::pod_processes;
use kcluster::net;
use redis_cluster_api::labels as l;
use redis_topology::EventReason;

use super::{DR, Drill, NS, PROD, region_of, wait};

impl Drill<'_> {
    /// `kubectl <args>` as the cluster's admin: its output, or an error with kubectl's.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        self.cluster.kubectl(args)
    }

    /// `kubectl redis <args>` through the real kubectl, which finds the plugin on PATH (this
    /// repository's `target/debug`, next to the images' binaries); the connection comes from
    /// KUBECONFIG (the admin's, or `kubeconfig`), as a user's shell would give it. Stdin is not a
    /// terminal. Returns (exit code, stdout, stderr).
    pub fn kubectl_redis(
        &self,
        args: &[&str],
        kubeconfig: Option<&std::path::Path>,
    ) -> Result<(i32, String, String), String> {
        let plugin_dir = self
            .o
            .instance_manager
            .parent()
            .ok_or("the instance manager's path has no directory")?;
        let path = format!(
            "{}:{}",
            plugin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = std::process::Command::new(self.cluster.bin_dir.join("kubectl"))
            .arg("redis")
            .args(args)
            .env("PATH", path)
            .env("KUBECONFIG", kubeconfig.unwrap_or(&self.cluster.kubeconfig))
            .env_remove("NO_COLOR")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("kubectl redis: {e}"))?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// `kubectl apply -f config/samples/<file>`: the spec's sample, exactly as written.
    pub fn apply_sample(&self, file: &str) -> Result<(), String> {
        let path = self.o.repo.join("config/samples").join(file);
        self.kubectl(&["apply", "-f", &path.display().to_string()])
            .map(|_| ())
    }

    /// `kubectl apply -f -` of a manifest.
    pub fn apply_yaml(&self, yaml: &str) -> Result<(), String> {
        let path = self.o.dir.join("applied.yaml");
        std::fs::write(&path, yaml).map_err(|e| e.to_string())?;
        self.kubectl(&["apply", "-f", &path.display().to_string()])
            .map(|_| ())
    }

    /// `kubectl patch rediscluster <cluster> --type=merge -p <patch>`, the spec's way.
    pub fn patch(&self, cluster: &str, patch: &serde_json::Value) -> Result<(), String> {
        self.kubectl(&[
            "-n",
            NS,
            "patch",
            "rediscluster",
            cluster,
            "--type=merge",
            "-p",
            &patch.to_string(),
        ])
        .map(|_| ())
    }

    /// `kubectl annotate rediscluster <cluster> <key>=<value> --overwrite`.
    pub fn annotate(&self, cluster: &str, key: &str, value: &str) -> Result<(), String> {
        self.kubectl(&[
            "-n",
            NS,
            "annotate",
            "rediscluster",
            cluster,
            &format!("{key}={value}"),
            "--overwrite",
        ])
        .map(|_| ())
    }

    /// The samples' Secrets (`prod-redis-auth`, `dr-redis-auth`), each with its cluster's
    /// password, created as the spec's notes say (`kubectl create secret`).
    pub fn create_secrets(&self) -> Result<(), String> {
        for (cluster, secret) in [(PROD, "prod-redis-auth"), (DR, "dr-redis-auth")] {
            self.kubectl(&[
                "-n",
                NS,
                "create",
                "secret",
                "generic",
                secret,
                &format!("--from-literal=password={}", self.passwords[cluster]),
            ])?;
        }
        Ok(())
    }

    /// The pods of `cluster`, in ordinal order: as many as its StatefulSet asks for (none before
    /// the operator created it).
    pub fn pods(&self, cluster: &str) -> Vec<String> {
        let n = self
            .kube
            .statefulset(NS, cluster)
            .and_then(|s| s.spec?.replicas)
            .unwrap_or(0);
        (0..n.max(0) as u32)
            .map(|i| l::pod_name(cluster, i))
            .collect()
    }

    /// Wait until every pod of `cluster`'s StatefulSet exists and is Running (not necessarily
    /// Ready: a replica-mode pod is Ready only once linked).
    pub fn wait_pods_running(&self, cluster: &str, timeout: Duration) -> Result<Duration, String> {
        wait(&format!("the pods of {cluster} to run"), timeout, || {
            let pods = self.pods(cluster);
            (!pods.is_empty()
                && pods.iter().all(|p| {
                    self.kube.pod(NS, p).is_some_and(|pod| {
                        pod.metadata.deletion_timestamp.is_none()
                            && pod.status.and_then(|s| s.phase).as_deref() == Some("Running")
                    })
                }))
            .then_some(())
        })
        .map(|(_, took)| took)
    }

    /// `status.demotionToken` of `cluster` (a planned switchover's, docs/switchover.md).
    pub fn demotion_token(&self, cluster: &str) -> Option<String> {
        self.kube.redis_cluster(NS, cluster)?["status"]["demotionToken"]
            .as_str()
            .map(String::from)
    }

    /// Wait for `cluster`'s `status.demotionToken`: the token and how long it took.
    pub fn wait_demotion_token(&self, cluster: &str) -> Result<(String, Duration), String> {
        wait(
            &format!("{cluster}'s status.demotionToken"),
            Duration::from_secs(90),
            || self.demotion_token(cluster),
        )
    }

    /// `(status, reason, message)` of one of `cluster`'s conditions.
    pub fn condition(&self, cluster: &str, type_: &str) -> Option<(String, String, String)> {
        self.kube.condition(NS, cluster, type_)
    }

    /// Wait until `cluster`'s condition `type_` has this status, reason (any when None) and
    /// message.
    pub fn wait_condition(
        &self,
        cluster: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
        message: &str,
    ) -> Result<(), String> {
        wait(
            &format!("{cluster} {type_}={status} \"{message}\""),
            Duration::from_secs(20),
            || {
                self.condition(cluster, type_)
                    .filter(|c| c.0 == status && reason.is_none_or(|r| c.1 == r) && c.2 == message)
            },
        )
        .map(|_| ())
        .map_err(|e| format!("{e}; it is {:?}", self.condition(cluster, type_)))
    }

    /// `status.currentPrimary`.
    pub fn current_primary(&self, cluster: &str) -> Option<String> {
        self.kube.redis_cluster(NS, cluster)?["status"]["currentPrimary"]
            .as_str()
            .map(String::from)
    }

    /// The pod labelled `redis.io/role=primary` (what the `-leader` Service selects).
    pub fn labelled_primary(&self, cluster: &str) -> Option<String> {
        let selector = format!("{}={cluster},{}={}", l::CLUSTER, l::ROLE, l::ROLE_PRIMARY);
        let pods = self.kube.pods(NS, &selector).ok()?;
        pods.into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .find_map(|p| p.metadata.name)
    }

    /// Where `<cluster>-leader` routes now: the pod behind its ready endpoint.
    pub fn leader_endpoint(&self, cluster: &str) -> Option<String> {
        let endpoints = self.kube.service_endpoints(NS, &l::leader_service(cluster));
        match endpoints.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    }

    /// `cluster`'s Events with `reason`, oldest first: `(type, note)`.
    pub fn events(&self, cluster: &str, reason: EventReason) -> Vec<(String, String)> {
        self.kube
            .events(NS, "RedisCluster", cluster)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, r, _)| r == reason.as_str())
            .map(|(t, _, note)| (t, note))
            .collect()
    }

    /// The latest of `cluster`'s Events with `reason`.
    pub fn event(&self, cluster: &str, reason: EventReason) -> Option<(String, String)> {
        self.events(cluster, reason).pop()
    }

    /// A pod's Redis dies and cannot start again, as with a broken volume: its configuration
    /// file on the data volume becomes unreadable, then the running redis-server is killed. The
    /// kubelet restarts the container, which exits at once, and reports it waiting in
    /// CrashLoopBackOff: the container provably runs no Redis. [`Drill::repair_and_recreate`]
    /// undoes it.
    pub fn break_redis(&mut self, pod: &str) -> Result<(), String> {
        let conf = self.data_dir(pod)?.join("redis.conf");
        let mode = std::fs::metadata(&conf)
            .map_err(|e| format!("{}: {e}", conf.display()))?
            .permissions()
            .mode();
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o000))
            .map_err(|e| format!("{}: {e}", conf.display()))?;
        self.broken.insert(pod.to_string(), mode);
        let p = self.kube.pod(NS, pod).ok_or(format!("no pod {pod}"))?;
        let killed: Vec<u32> = pod_processes(&p)
            .into_iter()
            .filter(|(_, comm)| comm == "redis-server")
            .map(|(pid, _)| pid)
            .collect();
        if killed.is_empty() {
            return Err(format!("{pod} runs no redis-server"));
        }
        for pid in killed {
            let _ = net::sh(&["kill", "-9", &pid.to_string()]);
        }
        Ok(())
    }

    /// Repair what [`Drill::break_redis`] broke and delete the pod (gracefully, as a person
    /// would after fixing its volume): the StatefulSet recreates it with the same name and
    /// volume. Waits until the new pod runs.
    pub fn repair_and_recreate(&mut self, pod: &str) -> Result<(), String> {
        let conf = self.data_dir(pod)?.join("redis.conf");
        let mode = self.broken.get(pod).copied().unwrap_or(0o600);
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: {e}", conf.display()))?;
        let old_uid = self.kube.pod(NS, pod).and_then(|p| p.metadata.uid);
        self.kubectl(&["-n", NS, "delete", "pod", pod, "--wait=false"])?;
        wait(
            &format!("{pod} recreated and running"),
            Duration::from_secs(60),
            || {
                let p = self.kube.pod(NS, pod)?;
                (p.metadata.uid != old_uid
                    && p.status.and_then(|s| s.phase).as_deref() == Some("Running"))
                .then_some(())
            },
        )
        .map(|_| ())
    }

    /// The directory holding a pod's data volume on this machine.
    pub fn data_dir(&self, pod: &str) -> Result<std::path::PathBuf, String> {
        self.kube
            .claim_dir(NS, &format!("data-{pod}"))
            .ok_or(format!("no bound volume for data-{pod}"))
    }

    /// Containers that restarted although the drill broke nothing in their pod: `pod/container
    /// (restarts)`.
    pub fn unexpected_restarts(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut namespaces = BTreeMap::new();
        namespaces.insert(NS, "");
        namespaces.insert("redis-operator", "");
        for ns in namespaces.keys() {
            for pod in self.kube.pods(ns, "").unwrap_or_default() {
                let name = pod.metadata.name.clone().unwrap_or_default();
                if self.broken.contains_key(&name) {
                    continue;
                }
                for cs in pod
                    .status
                    .into_iter()
                    .flat_map(|s| s.container_statuses.into_iter().flatten())
                {
                    if cs.restart_count > 0 {
                        out.push(format!("{name}/{} ({})", cs.name, cs.restart_count));
                    }
                }
            }
        }
        out
    }

    /// Nothing crashed: no container restarted but those the drill broke, and every process the
    /// drill started itself (Prometheus, an external source) still runs.
    pub fn all_alive(&mut self) -> Result<(), String> {
        let mut dead = self.unexpected_restarts();
        dead.extend(
            self.procs
                .iter_mut()
                .filter_map(|(n, p)| (!p.alive()).then(|| format!("{n} exited"))),
        );
        if dead.is_empty() {
            Ok(())
        } else {
            Err(dead.join(", "))
        }
    }

    /// Cut (`false`) or restore (`true`) the link between production's and DR's regions.
    pub fn set_inter_region_link(&self, up: bool) -> Result<(), String> {
        net::set_link(region_of(PROD), region_of(DR), up)
    }

    /// Limit the bandwidth between production's and DR's regions (`None`: no limit).
    pub fn rate_limit(&self, rate: Option<&str>) -> Result<(), String> {
        net::rate_limit(region_of(PROD), region_of(DR), rate)
    }
}
