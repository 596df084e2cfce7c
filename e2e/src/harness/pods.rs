//! A cluster's pods, as its StatefulSet and the kubelet would run them: each pod a real
//! `redis-server` and the real `redis-instance-manager` in its cluster's region, started once the
//! operator applied the StatefulSet, its Redis container killed and restarted on demand.

use std::collections::BTreeMap;
use std::time::Duration;

use redis_cluster_api::labels as l;
use redis_operator::config::redis_conf;
use redis_operator::platform::PodInfo;
use redis_test_support::process::Proc;
use redis_test_support::redis::spawn_on;

use super::net::{NS_A, NS_B, pod_ip};
use super::{Drill, NS, region_of, wait};

/// The network namespace of a cluster's region.
fn netns(cluster: &str) -> &'static str {
    if region_of(cluster) == 'a' {
        NS_A
    } else {
        NS_B
    }
}

impl Drill<'_> {
    /// What the StatefulSet controller does: once the operator has applied the cluster's
    /// StatefulSet, its pods start, as many as it asks for.
    pub fn start_pods_when_applied(&mut self, cluster: &str) -> Result<(), String> {
        let key = format!("StatefulSet/{NS}/{cluster}");
        let (replicas, _) = wait(
            &format!("the operator to apply {key}"),
            Duration::from_secs(10),
            || {
                let state = self.sim.platform.state.lock().unwrap();
                let set = state.objects.get(&key)?;
                Some(set["spec"]["replicas"].as_u64().unwrap_or(1) as u32)
            },
        )?;
        self.instances.insert(cluster.to_string(), replicas);
        self.start_pods(cluster)
    }

    /// Start the pods of `cluster` as its StatefulSet would: one redis-server and one
    /// redis-instance-manager per pod, in the cluster's region.
    fn start_pods(&mut self, cluster: &str) -> Result<(), String> {
        for i in 0..self.pods(cluster).len() as u32 {
            self.start_pod(cluster, i)?;
            let pod = l::pod_name(cluster, i);
            let ip = pod_ip(region_of(cluster), i);
            self.sim.platform.add_pod(
                NS,
                PodInfo {
                    name: pod.clone(),
                    labels: BTreeMap::from([(l::CLUSTER.into(), cluster.into())]),
                    annotations: BTreeMap::new(),
                    report_endpoint: Some(format!("{ip}:9121")),
                    address: ip,
                    problem: None,
                    redis_running: Some(true),
                },
            );
        }
        Ok(())
    }

    /// The containers of pod `ordinal` start (or restart): the init container regenerates
    /// redis.conf from the operator's template, keeping only a persisted `replicaof` line (see
    /// scripts::INIT_SCRIPT), then redis-server and the instance manager start.
    pub fn start_pod(&mut self, cluster: &str, ordinal: u32) -> Result<(), String> {
        let rc = self.sim.get(NS, cluster);
        let pod = l::pod_name(cluster, ordinal);
        let dir = self.sim.pod_dir(&pod);
        std::fs::create_dir_all(dir.join("data")).map_err(|e| e.to_string())?;
        let ip = pod_ip(region_of(cluster), ordinal);
        let kept: String = std::fs::read_to_string(dir.join("redis.conf"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("replicaof "))
            .map(|l| format!("{l}\n"))
            .collect();
        // The operator's own redis.conf, with the pod's paths; DEBUG DIGEST enabled so the
        // drill can compare keyspaces (drill only).
        let conf = redis_conf(&rc)
            .replace("bind * -::*", &format!("bind {ip}"))
            .replace("dir /data", &format!("dir {}", dir.join("data").display()))
            .replace(
                "include /run/redis/auth.conf",
                &format!("include {}", dir.join("auth.conf").display()),
            )
            + "enable-debug-command yes\n"
            // Outgoing connections from the pod's own address, as a pod's would be (all
            // pods of a region share one namespace here).
            + &format!("bind-source-addr {ip}\n")
            + &format!("replica-announce-ip {ip}\n")
            + &kept;
        std::fs::write(dir.join("redis.conf"), conf).map_err(|e| e.to_string())?;
        let pw = &self.passwords[cluster];
        // What the pod's init container writes (see scripts::INIT_SCRIPT).
        std::fs::write(
            dir.join("auth.conf"),
            format!("requirepass \"{pw}\"\nmasterauth \"{pw}\"\n"),
        )
        .map_err(|e| e.to_string())?;
        let redis = spawn_on(
            "redis-server",
            &format!("{pod}/redis"),
            Some(netns(cluster)),
            &dir.join("redis.conf"),
            &dir.join("redis.log"),
        )?;
        self.procs.insert(format!("{pod}/redis"), redis);
        self.start_instance_manager(cluster, ordinal, "instance-manager.log")?;
        self.sim.set_redis_running(NS, &pod, true);
        Ok(())
    }

    /// The instance manager sidecar of pod `ordinal`, logging to `log` in the pod's directory.
    pub fn start_instance_manager(
        &mut self,
        cluster: &str,
        ordinal: u32,
        log: &str,
    ) -> Result<(), String> {
        let env = self.sim.env(NS, cluster);
        let pod = l::pod_name(cluster, ordinal);
        let dir = self.sim.pod_dir(&pod);
        let ip = pod_ip(region_of(cluster), ordinal);
        let im = Proc::spawn(
            &format!("{pod}/instance-manager"),
            Some(netns(cluster)),
            &[
                self.o.instance_manager.display().to_string(),
                format!("--cluster={cluster}"),
                format!("--namespace={NS}"),
                format!("--pod={pod}"),
                format!("--redis-addr={ip}:6379"),
                format!("--redis-password-file={}", env.auth_password_file),
                format!("--topology-file={}", dir.join("annotations").display()),
                format!("--http-addr={ip}:9121"),
            ],
            &dir.join(log),
        )?;
        self.procs.insert(format!("{pod}/instance-manager"), im);
        Ok(())
    }

    /// The pod's Redis container dies and stays down (crash loop back-off): the kubelet reports
    /// it not running. The instance manager sidecar keeps running, as in a pod.
    pub fn kill_redis(&mut self, pod: &str) {
        if let Some(mut p) = self.procs.remove(&format!("{pod}/redis")) {
            p.kill();
        }
        self.sim.set_redis_running(NS, pod, false);
    }

    /// The kubelet restarts the Redis container (the sidecar is restarted too, for simplicity).
    pub fn restart_pod(&mut self, cluster: &str, pod: &str) -> Result<(), String> {
        if let Some(mut p) = self.procs.remove(&format!("{pod}/instance-manager")) {
            p.kill();
        }
        let ordinal = l::ordinal_of(cluster, pod).ok_or("not a pod of the cluster")?;
        self.start_pod(cluster, ordinal)
    }

    /// Every process the drill started is still running.
    pub fn all_alive(&mut self) -> Result<(), String> {
        let dead: Vec<String> = self
            .procs
            .iter_mut()
            .filter_map(|(n, p)| (!p.alive()).then(|| n.clone()))
            .collect();
        if dead.is_empty() {
            Ok(())
        } else {
            Err(format!("exited: {dead:?}"))
        }
    }
}
