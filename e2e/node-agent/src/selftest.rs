//! `redis-node-agent self-test`: the agent against the real control plane, through plain
//! `kubectl` as a user would type it. Brings a cluster up with `kcluster` (holding
//! /tmp/kcluster.lock: one cluster per machine) or uses one given by `--kubeconfig`, runs the
//! checks, prints one line per check, and fails (exit 1) if any failed or the cluster could
//! not be had. It never skips.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

#[derive(clap::Args, Clone, Debug)]
pub struct SelfTestArgs {
    /// The kcluster binary: bring a cluster up in --dir, test, tear it down.
    #[arg(long, conflicts_with = "kubeconfig")]
    pub kcluster: Option<PathBuf>,
    /// The cluster's directory (with --kcluster).
    #[arg(long, default_value = ".kcluster-node-agent-test")]
    pub dir: PathBuf,
    /// Control-plane binaries for kcluster (default: kcluster's own choice).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Leave the cluster running afterwards (with --kcluster).
    #[arg(long)]
    pub keep: bool,
    /// Test an already running cluster with this admin kubeconfig instead.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// kubectl to use with --kubeconfig (default: kubectl on PATH).
    #[arg(long)]
    pub kubectl: Option<PathBuf>,
}

struct Kube {
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Kube {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.kubectl);
        c.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args);
        c
    }

    fn call(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut c = self.cmd(args);
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = match c.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Out {
                    code: -1,
                    stdout: String::new(),
                    stderr: e.to_string(),
                };
            }
        };
        if let (Some(input), Some(mut s)) = (stdin, child.stdin.take()) {
            let _ = s.write_all(input.as_bytes());
        }
        match child.wait_with_output() {
            Ok(o) => Out {
                code: o.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            },
            Err(e) => Out {
                code: -1,
                stdout: String::new(),
                stderr: e.to_string(),
            },
        }
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let o = self.call(args, None);
        if o.code != 0 {
            bail!(
                "kubectl {} failed ({}): {}{}",
                args.join(" "),
                o.code,
                o.stdout,
                o.stderr
            );
        }
        Ok(o.stdout)
    }

    fn apply(&self, yaml: &str) -> Result<()> {
        let o = self.call(&["apply", "-f", "-"], Some(yaml));
        if o.code != 0 {
            bail!("kubectl apply failed: {}{}", o.stdout, o.stderr);
        }
        Ok(())
    }

    fn json(&self, args: &[&str]) -> Result<Value> {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        Ok(serde_json::from_str(&self.run(&a)?)?)
    }
}

/// Poll `f` every 250 ms until it gives a value, or fail saying what was awaited.
fn wait<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

struct Report {
    failed: Vec<String>,
    passed: usize,
}

impl Report {
    fn check(&mut self, name: &str, r: Result<String>) {
        match r {
            Ok(detail) => {
                self.passed += 1;
                println!(
                    "ok    {name}{}",
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {detail}")
                    }
                );
            }
            Err(e) => {
                println!("FAIL  {name}: {e:#}");
                self.failed.push(name.to_string());
            }
        }
    }
}

fn expect(cond: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if cond { Ok(()) } else { bail!(msg()) }
}

const NS: &str = "node-agent-test";

fn base_objects() -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: {NS}
---
apiVersion: v1
kind: Secret
metadata:
  name: auth
  namespace: {NS}
stringData:
  password: hunter2
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: {NS}
data:
  greeting: hello
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {NS}
spec:
  selector: {{app: none}}
  ports: [{{name: http, port: 8080}}]
"#
    )
}

/// An init container, Secret/ConfigMap/downward/projected-token volumes, env from fieldRef,
/// secretKeyRef and configMapKeyRef, a readiness probe, a main process that ignores SIGTERM.
fn main_pod() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: agent-test
  namespace: {NS}
  labels: {{app: agent-test}}
  annotations: {{note: first}}
spec:
  terminationGracePeriodSeconds: 8
  securityContext: {{runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001}}
  initContainers:
    - name: init
      image: redis:7.2
      command: [sh, -c, 'echo init log line; echo init-ran > /work/marker']
      volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
    - name: main
      image: redis:7.2
      command: [sh, -c]
      args:
        - |
          trap '' TERM
          echo "started $(POD_NAME) $PASSWORD"
          i=0
          while true; do i=$((i+1)); echo "tick $i"; sleep 1; done
      env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
        - {{name: NODE, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
        - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: auth, key: password}}}}}}
        - {{name: GREETING, valueFrom: {{configMapKeyRef: {{name: settings, key: greeting}}}}}}
        - {{name: COMPOSED, value: "$(POD_NAME)-$(GREETING)"}}
        - {{name: MEM_MI, valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}}}
      resources: {{limits: {{memory: 64Mi}}}}
      readinessProbe:
        exec: {{command: [cat, /work/marker]}}
        periodSeconds: 1
      volumeMounts:
        - {{name: work, mountPath: /work}}
        - {{name: secret, mountPath: /etc/agent-test/secret}}
        - {{name: config, mountPath: /etc/agent-test/config}}
        - {{name: podinfo, mountPath: /etc/agent-test/podinfo}}
  volumes:
    - {{name: work, emptyDir: {{}}}}
    - {{name: secret, secret: {{secretName: auth, defaultMode: 288}}}}
    - {{name: config, configMap: {{name: settings}}}}
    - name: podinfo
      downwardAPI:
        items:
          - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
          - {{path: annotations, fieldRef: {{fieldPath: metadata.annotations}}}}
"#
    )
}

fn crash_pod() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: crasher
  namespace: {NS}
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - name: crash
      image: redis:7.2
      command: [sh, -c, 'echo crashing; exit 3']
"#
    )
}

fn missing_image_pod() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: no-image
  namespace: {NS}
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - name: c
      image: example.invalid/nothing:1
      command: [no-such-binary-anywhere]
"#
    )
}

fn liveness_pod() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: liveness
  namespace: {NS}
spec:
  terminationGracePeriodSeconds: 3
  containers:
    - name: c
      image: redis:7.2
      command: [sh, -c, 'exec redis-server --port 7777 --save "" --appendonly no']
      livenessProbe:
        exec: {{command: [redis-cli, -p, "7777", PING]}}
        periodSeconds: 1
        failureThreshold: 2
"#
    )
}

fn survivor_pod(node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: survivor
  namespace: {NS}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  terminationGracePeriodSeconds: 3
  containers:
    - name: c
      image: redis:7.2
      command: [sh, -c, 'while true; do sleep 1; done']
"#
    )
}

fn statefulset() -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: store
  namespace: {NS}
spec:
  clusterIP: None
  selector: {{app: store}}
  ports: [{{port: 6379}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: store
  namespace: {NS}
spec:
  serviceName: store
  replicas: 1
  selector: {{matchLabels: {{app: store}}}}
  template:
    metadata:
      labels: {{app: store}}
    spec:
      terminationGracePeriodSeconds: 5
      securityContext: {{runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001}}
      containers:
        - name: redis
          image: redis:7.2
          command: [sh, -c, '[ -f /data/first ] || date +%s%N > /data/first; exec redis-server --port 6379 --dir /data --save "" --appendonly no']
          ports: [{{name: redis, containerPort: 6379}}]
          readinessProbe:
            tcpSocket: {{port: redis}}
            periodSeconds: 1
          volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
    - metadata: {{name: data}}
      spec:
        accessModes: [ReadWriteOnce]
        resources: {{requests: {{storage: 64Mi}}}}
"#
    )
}

fn pod_json(k: &Kube, name: &str) -> Option<Value> {
    k.json(&["-n", NS, "get", "pod", name]).ok()
}

fn container_status<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    pod["status"]["containerStatuses"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

fn run_checks(k: &Kube, r: &mut Report, faults: Option<(&Path, &Path)>) -> Result<()> {
    // The nodes are Ready and heartbeat through their Leases.
    r.check(
        "nodes registered, Ready, with region labels and Leases",
        (|| {
            let nodes = k.json(&["get", "nodes"])?;
            let items = nodes["items"].as_array().cloned().unwrap_or_default();
            expect(!items.is_empty(), || "no nodes".into())?;
            for n in &items {
                let name = n["metadata"]["name"].as_str().unwrap_or_default();
                let ready = n["status"]["conditions"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                    .map(|c| c["status"] == "True")
                    .unwrap_or(false);
                expect(ready, || format!("{name} not Ready"))?;
                expect(
                    n["metadata"]["labels"]["topology.kubernetes.io/region"].is_string(),
                    || format!("{name}: no region label"),
                )?;
                expect(
                    n["status"]["declaredFeatures"]
                        .to_string()
                        .contains("ExtendWebSocketsToKubelet"),
                    || {
                        format!(
                            "{name}: declaredFeatures {}",
                            n["status"]["declaredFeatures"]
                        )
                    },
                )?;
                k.run(&["-n", "kube-node-lease", "get", "lease", name])?;
            }
            Ok(format!("{} nodes", items.len()))
        })(),
    );

    // A namespace left by an earlier run goes first (its pods through graceful deletion).
    if k.run(&["get", "namespace", NS]).is_ok() {
        k.run(&["delete", "namespace", NS, "--wait=true", "--timeout=120s"])?;
    }
    k.apply(&base_objects())?;
    // The default ServiceAccount appears with the namespace (the controller makes it).
    wait(
        "the default service account",
        Duration::from_secs(30),
        || k.run(&["-n", NS, "get", "serviceaccount", "default"]).ok(),
    )?;
    k.apply(&main_pod())?;
    k.apply(&crash_pod())?;
    k.apply(&missing_image_pod())?;
    k.apply(&statefulset())?;
    k.apply(&liveness_pod())?;

    r.check(
        "pod with an init container becomes Ready (readiness probe)",
        (|| {
            let start = Instant::now();
            k.run(&[
                "-n",
                NS,
                "wait",
                "--for=condition=Ready",
                "pod/agent-test",
                "--timeout=90s",
            ])?;
            let pod = pod_json(k, "agent-test").context("pod")?;
            let init = &pod["status"]["initContainerStatuses"][0];
            expect(init["state"]["terminated"]["exitCode"] == 0, || {
                format!("init status {init}")
            })?;
            expect(
                pod["status"]["podIP"]
                    .as_str()
                    .is_some_and(|ip| ip.starts_with("10.")),
                || "no podIP".into(),
            )?;
            let main = container_status(&pod, "main").context("main status")?;
            expect(
                main["containerID"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("kcp://")),
                || format!("containerID {}", main["containerID"]),
            )?;
            Ok(format!(
                "in {:.1}s, podIP {}",
                start.elapsed().as_secs_f64(),
                pod["status"]["podIP"]
            ))
        })(),
    );

    r.check("kubectl exec: env (fieldRef, secretKeyRef, configMapKeyRef, $(VAR), resourceFieldRef), volumes, user, hostname", (|| {
        let out = k.run(&[
            "-n", NS, "exec", "agent-test", "-c", "main", "--", "sh", "-c",
            "echo \"$POD_NAME|$PASSWORD|$GREETING|$COMPOSED|$MEM_MI|$NODE|$(cat /etc/agent-test/secret/password)|$(cat /etc/agent-test/config/greeting)|$(cat /work/marker)|$(hostname)|$(id -u)|$(id -G)|$KUBERNETES_SERVICE_HOST|$WEB_SERVICE_PORT_HTTP\"",
        ])?;
        let f: Vec<&str> = out.trim().split('|').collect();
        expect(f.len() == 14, || format!("unexpected output {out:?}"))?;
        expect(f[0] == "agent-test" && f[1] == "hunter2" && f[2] == "hello", || format!("env {out:?}"))?;
        expect(f[3] == "agent-test-hello", || format!("$(VAR) expansion: {}", f[3]))?;
        expect(f[4] == "64", || format!("resourceFieldRef: {}", f[4]))?;
        expect(f[5].starts_with("region-"), || format!("spec.nodeName: {}", f[5]))?;
        expect(f[6] == "hunter2" && f[7] == "hello" && f[8] == "init-ran", || format!("volumes: {out:?}"))?;
        expect(f[9] == "agent-test", || format!("hostname {}", f[9]))?;
        expect(f[10] == "10001" && f[11].split(' ').any(|g| g == "10001"), || format!("user {} groups {}", f[10], f[11]))?;
        expect(f[12] == "10.96.0.1", || format!("KUBERNETES_SERVICE_HOST {}", f[12]))?;
        expect(f[13] == "8080", || format!("service link {}", f[13]))?;
        Ok(out.trim().to_string())
    })());

    r.check(
        "downward API files (labels, annotations) follow annotation changes",
        (|| {
            let labels = k.run(&[
                "-n",
                NS,
                "exec",
                "agent-test",
                "--",
                "cat",
                "/etc/agent-test/podinfo/labels",
            ])?;
            // (The apiserver also copies the node's topology labels to a bound pod.)
            expect(labels.lines().any(|l| l == "app=\"agent-test\""), || {
                format!("labels file {labels:?}")
            })?;
            k.run(&[
                "-n",
                NS,
                "annotate",
                "pod",
                "agent-test",
                "note=second",
                "--overwrite",
            ])?;
            let start = Instant::now();
            wait(
                "the annotation in the file",
                Duration::from_secs(30),
                || {
                    let a = k
                        .run(&[
                            "-n",
                            NS,
                            "exec",
                            "agent-test",
                            "--",
                            "cat",
                            "/etc/agent-test/podinfo/annotations",
                        ])
                        .ok()?;
                    a.contains("note=\"second\"").then_some(())
                },
            )?;
            Ok(format!(
                "annotation visible after {:.1}s",
                start.elapsed().as_secs_f64()
            ))
        })(),
    );

    r.check("projected service-account token works against the apiserver (through the kubernetes Service)", (|| {
        let out = k.run(&[
            "-n", NS, "exec", "agent-test", "--", "sh", "-c",
            "d=/var/run/secrets/kubernetes.io/serviceaccount; curl -s --cacert $d/ca.crt -H \"Authorization: Bearer $(cat $d/token)\" https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/$(cat $d/namespace)/pods",
        ])?;
        // The default service account may not list pods: a 403 naming it proves the token.
        expect(out.contains("system:serviceaccount:node-agent-test:default"), || format!("apiserver answered {out}"))?;
        Ok("403 for system:serviceaccount:node-agent-test:default, as RBAC says".into())
    })());

    r.check(
        "kubectl exec -i (stdin to the command, EOF closes it)",
        (|| {
            let o = k.call(
                &[
                    "-n",
                    NS,
                    "exec",
                    "-i",
                    "agent-test",
                    "--",
                    "sh",
                    "-c",
                    "cat; echo done",
                ],
                Some("hello-stdin\n"),
            );
            expect(o.code == 0 && o.stdout == "hello-stdin\ndone\n", || {
                format!(
                    "code {} stdout {:?} stderr {:?}",
                    o.code, o.stdout, o.stderr
                )
            })?;
            Ok(String::new())
        })(),
    );

    r.check(
        "kubectl exec exit code and stderr",
        (|| {
            let o = k.call(
                &[
                    "-n",
                    NS,
                    "exec",
                    "agent-test",
                    "--",
                    "sh",
                    "-c",
                    "echo oops >&2; exit 3",
                ],
                None,
            );
            expect(o.code == 3, || {
                format!("exit code {} (stderr {:?})", o.code, o.stderr)
            })?;
            expect(o.stderr.contains("oops"), || {
                format!("stderr {:?}", o.stderr)
            })?;
            Ok(String::new())
        })(),
    );

    r.check(
        "kubectl logs (init and main, --tail, -l selector)",
        (|| {
            let init = k.run(&["-n", NS, "logs", "agent-test", "-c", "init"])?;
            expect(init == "init log line\n", || format!("init logs {init:?}"))?;
            let main = k.run(&["-n", NS, "logs", "agent-test", "-c", "main"])?;
            expect(
                main.starts_with("started agent-test hunter2\ntick 1\n"),
                || format!("main logs {main:?}"),
            )?;
            let tail = k.run(&["-n", NS, "logs", "agent-test", "-c", "main", "--tail=1"])?;
            expect(
                tail.lines().count() == 1 && tail.starts_with("tick "),
                || format!("--tail=1 {tail:?}"),
            )?;
            let sel = k.run(&[
                "-n",
                NS,
                "logs",
                "-l",
                "app=agent-test",
                "-c",
                "main",
                "--tail=1",
                "--timestamps",
            ])?;
            expect(sel.contains(" tick "), || {
                format!("-l with timestamps {sel:?}")
            })?;
            Ok(String::new())
        })(),
    );

    r.check(
        "kubectl logs -f follows new lines",
        (|| {
            let mut child = k
                .cmd(&[
                    "-n",
                    NS,
                    "logs",
                    "-f",
                    "agent-test",
                    "-c",
                    "main",
                    "--tail=1",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()?;
            let mut stdout = child.stdout.take().context("stdout")?;
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 4096];
                let mut all = String::new();
                while let Ok(n) = stdout.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    all.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if all.matches("tick").count() >= 3 {
                        let _ = tx.send(all.clone());
                        break;
                    }
                }
            });
            let got = rx.recv_timeout(Duration::from_secs(15));
            let _ = child.kill();
            let _ = child.wait();
            let got = got.context("fewer than 3 lines in 15 s")?;
            Ok(got.lines().collect::<Vec<_>>().join(" / "))
        })(),
    );

    r.check("crashing container: terminated, CrashLoopBackOff, restartCount, lastState, logs --previous", (|| {
        let pod = wait("restartCount >= 2 and CrashLoopBackOff", Duration::from_secs(60), || {
            let p = pod_json(k, "crasher")?;
            let s = container_status(&p, "crash")?.clone();
            (s["restartCount"].as_i64()? >= 2 && s["state"]["waiting"]["reason"] == "CrashLoopBackOff").then_some(s)
        })?;
        expect(pod["lastState"]["terminated"]["exitCode"] == 3, || format!("lastState {}", pod["lastState"]))?;
        let prev = k.run(&["-n", NS, "logs", "crasher", "--previous"])?;
        expect(prev == "crashing\n", || format!("--previous {prev:?}"))?;
        Ok(format!("restartCount {}, {}", pod["restartCount"], pod["state"]["waiting"]["message"]))
    })());

    r.check(
        "failed liveness probe restarts the container",
        (|| {
            k.run(&[
                "-n",
                NS,
                "wait",
                "--for=condition=Ready",
                "pod/liveness",
                "--timeout=60s",
            ])?;
            // Redis stops answering (all clients paused): PING times out twice, the container is
            // stopped (SIGTERM; SIGKILL after the grace period) and started again.
            k.run(&[
                "-n",
                NS,
                "exec",
                "liveness",
                "--",
                "redis-cli",
                "-p",
                "7777",
                "CLIENT",
                "PAUSE",
                "60000",
                "ALL",
            ])?;
            let s = wait("a restart", Duration::from_secs(30), || {
                let p = pod_json(k, "liveness")?;
                let s = container_status(&p, "c")?.clone();
                (s["restartCount"].as_i64()? >= 1).then_some(s)
            })?;
            let code = s["lastState"]["terminated"]["exitCode"].clone();
            expect(code == 0 || code == 137 || code == 143, || {
                format!("lastState {}", s["lastState"])
            })?;
            let events = k.run(&[
                "-n",
                NS,
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=liveness",
                "-o",
                "jsonpath={.items[*].reason}",
            ])?;
            expect(
                events.contains("Unhealthy") && events.contains("Killing"),
                || format!("events {events}"),
            )?;
            Ok(format!(
                "restartCount {}, last exit {code}, events {events}",
                s["restartCount"]
            ))
        })(),
    );

    r.check(
        "unresolvable image: ErrImagePull / ImagePullBackOff",
        (|| {
            let reason = wait("an image pull error", Duration::from_secs(30), || {
                let p = pod_json(k, "no-image")?;
                let reason = container_status(&p, "c")?["state"]["waiting"]["reason"]
                    .as_str()?
                    .to_string();
                matches!(reason.as_str(), "ErrImagePull" | "ImagePullBackOff").then_some(reason)
            })?;
            Ok(reason)
        })(),
    );

    r.check(
        "StatefulSet: PVC provisioned and bound, data kept when the pod is recreated",
        (|| {
            k.run(&[
                "-n",
                NS,
                "rollout",
                "status",
                "statefulset/store",
                "--timeout=120s",
            ])?;
            let pvc = k.json(&["-n", NS, "get", "pvc", "data-store-0"])?;
            expect(pvc["status"]["phase"] == "Bound", || {
                format!("pvc {}", pvc["status"])
            })?;
            let pv_name = pvc["spec"]["volumeName"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let pv = k.json(&["get", "pv", &pv_name])?;
            let path = pv["spec"]["hostPath"]["path"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            expect(Path::new(&path).is_dir(), || {
                format!("PV directory {path} missing")
            })?;
            let first = k.run(&["-n", NS, "exec", "store-0", "--", "cat", "/data/first"])?;
            let uid = pod_json(k, "store-0").context("pod")?["metadata"]["uid"].clone();
            k.run(&[
                "-n",
                NS,
                "delete",
                "pod",
                "store-0",
                "--wait=true",
                "--timeout=60s",
            ])?;
            wait("a new store-0", Duration::from_secs(60), || {
                let p = pod_json(k, "store-0")?;
                (p["metadata"]["uid"] != uid).then_some(())
            })?;
            k.run(&[
                "-n",
                NS,
                "wait",
                "--for=condition=Ready",
                "pod/store-0",
                "--timeout=60s",
            ])?;
            let again = k.run(&["-n", NS, "exec", "store-0", "--", "cat", "/data/first"])?;
            expect(first == again, || {
                format!("data changed: {first:?} -> {again:?}")
            })?;
            let ping = k.run(&["-n", NS, "exec", "store-0", "--", "redis-cli", "PING"])?;
            expect(ping.trim() == "PONG", || {
                format!("redis-cli PING: {ping:?}")
            })?;
            Ok(format!("{pv_name} at {path}"))
        })(),
    );

    r.check(
        "graceful deletion: Terminating with the process alive for the grace period, then gone",
        (|| {
            let start = Instant::now();
            k.run(&["-n", NS, "delete", "pod", "agent-test", "--wait=false"])?;
            std::thread::sleep(Duration::from_secs(4));
            let pod = pod_json(k, "agent-test").context("pod gone before its grace period")?;
            expect(pod["metadata"]["deletionTimestamp"].is_string(), || {
                "no deletionTimestamp".into()
            })?;
            // The container ignores SIGTERM: still running, still answering exec.
            let alive = k.run(&["-n", NS, "exec", "agent-test", "--", "echo", "alive"])?;
            expect(alive.trim() == "alive", || {
                format!("exec during termination: {alive:?}")
            })?;
            wait("the pod object to go", Duration::from_secs(30), || {
                pod_json(k, "agent-test").is_none().then_some(())
            })?;
            let took = start.elapsed();
            expect(took >= Duration::from_secs(7), || {
                format!("gone after {took:?}, before the 8 s grace period")
            })?;
            Ok(format!(
                "Terminating for {:.1}s (grace 8 s)",
                took.as_secs_f64()
            ))
        })(),
    );

    r.check(
        "claim deleted: PV and its directory go",
        (|| {
            let pv_name = k.json(&["-n", NS, "get", "pvc", "data-store-0"])?["spec"]["volumeName"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let path = k.json(&["get", "pv", &pv_name])?["spec"]["hostPath"]["path"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            k.run(&[
                "-n",
                NS,
                "delete",
                "statefulset",
                "store",
                "--wait=true",
                "--timeout=60s",
            ])?;
            wait("store-0 to go", Duration::from_secs(60), || {
                pod_json(k, "store-0").is_none().then_some(())
            })?;
            k.run(&[
                "-n",
                NS,
                "delete",
                "pvc",
                "data-store-0",
                "--wait=true",
                "--timeout=60s",
            ])?;
            wait("the PV to go", Duration::from_secs(60), || {
                k.run(&["get", "pv", &pv_name]).is_err().then_some(())
            })?;
            expect(!Path::new(&path).exists(), || {
                format!("{path} still exists")
            })?;
            Ok(String::new())
        })(),
    );

    if let Some((kcluster, dir)) = faults {
        node_faults(k, kcluster, dir, r)?;
    }
    let _ = k.run(&["delete", "namespace", NS, "--wait=false"]);
    Ok(())
}

/// The container's main pid from its `kcp://<pid>` containerID.
fn container_pid(pod: &Value, container: &str) -> Option<u32> {
    container_status(pod, container)?["containerID"]
        .as_str()?
        .strip_prefix("kcp://")?
        .parse()
        .ok()
}

fn node_ready(k: &Kube, node: &str) -> Option<String> {
    let n = k.json(&["get", "node", node]).ok()?;
    n["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str().map(String::from))
}

/// The agent's own faults, through kcluster: a restarted agent adopts its running containers;
/// a frozen agent's node goes Unknown and its pod is evicted while its process runs on; once
/// thawed, the agent stops and deletes the pod properly.
fn node_faults(k: &Kube, kcluster: &Path, dir: &Path, r: &mut Report) -> Result<()> {
    let node = "region-c-2";
    let daemon = format!("node-{node}");
    let kc = |args: &[&str]| -> Result<()> {
        let st = Command::new(kcluster)
            .arg("--dir")
            .arg(dir)
            .args(args)
            .stdout(Stdio::null())
            .status()?;
        expect(st.success(), || {
            format!("kcluster {} failed", args.join(" "))
        })
    };
    k.apply(&survivor_pod(node))?;
    k.run(&[
        "-n",
        NS,
        "wait",
        "--for=condition=Ready",
        "pod/survivor",
        "--timeout=60s",
    ])?;
    let pod = pod_json(k, "survivor").context("survivor")?;
    let pid = container_pid(&pod, "c").context("survivor's pid")?;
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();

    r.check(
        "agent restart: running containers adopted (same pid, no restart, still Ready)",
        (|| {
            kc(&["restart", &daemon])?;
            std::thread::sleep(Duration::from_secs(5));
            let p = pod_json(k, "survivor").context("pod")?;
            let s = container_status(&p, "c").context("status")?;
            expect(container_pid(&p, "c") == Some(pid) && alive(pid), || {
                format!("pid {pid} -> {:?}", container_pid(&p, "c"))
            })?;
            expect(s["restartCount"] == 0 && s["ready"] == true, || {
                format!("status {s}")
            })?;
            Ok(format!("pid {pid}"))
        })(),
    );

    r.check("frozen agent: node Unknown, pod evicted (Terminating) while its process runs; thawed: stopped and deleted", (|| {
        kc(&["freeze", &daemon])?;
        let frozen = Instant::now();
        let result = (|| -> Result<String> {
            wait("the node to stop being Ready", Duration::from_secs(90), || {
                (node_ready(k, node).as_deref() != Some("True")).then_some(())
            })?;
            let not_ready = frozen.elapsed();
            wait("the eviction (deletionTimestamp)", Duration::from_secs(90), || {
                pod_json(k, "survivor")?["metadata"]["deletionTimestamp"].as_str().map(|_| ())
            })?;
            let evicted = frozen.elapsed();
            expect(alive(pid), || "the process died with its agent frozen".into())?;
            Ok(format!("NotReady after {:.0}s, evicted after {:.0}s, process alive", not_ready.as_secs_f64(), evicted.as_secs_f64()))
        })();
        kc(&["thaw", &daemon])?;
        let frozen_part = result?;
        let thawed = Instant::now();
        wait("the node Ready again", Duration::from_secs(30), || (node_ready(k, node).as_deref() == Some("True")).then_some(()))?;
        wait("the evicted pod deleted", Duration::from_secs(30), || pod_json(k, "survivor").is_none().then_some(()))?;
        expect(!alive(pid), || format!("process {pid} still runs after the pod was deleted"))?;
        Ok(format!("{frozen_part}; thawed: Ready and pod gone after {:.1}s", thawed.elapsed().as_secs_f64()))
    })());
    Ok(())
}

fn lock() -> Result<nix::fcntl::Flock<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/kcluster.lock")?;
    println!("waiting for /tmp/kcluster.lock (one cluster per machine)");
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("locking /tmp/kcluster.lock: {e}"))
}

/// KUBECONFIG and PATH from a kcluster `env` file.
fn parse_env(env: &str) -> (Option<PathBuf>, Option<PathBuf>) {
    let mut kubeconfig = None;
    let mut bin = None;
    for line in env.lines() {
        if let Some(v) = line.strip_prefix("export KUBECONFIG=") {
            kubeconfig = Some(PathBuf::from(v.trim()));
        }
        if let Some(v) = line.strip_prefix("export PATH=") {
            bin = v.split(':').next().map(PathBuf::from);
        }
    }
    (kubeconfig, bin)
}

pub fn run(args: SelfTestArgs) -> Result<()> {
    let mut report = Report {
        failed: vec![],
        passed: 0,
    };
    let result = if let Some(kubeconfig) = &args.kubeconfig {
        let k = Kube {
            kubectl: args.kubectl.clone().unwrap_or_else(|| "kubectl".into()),
            kubeconfig: kubeconfig.clone(),
        };
        run_checks(&k, &mut report, None)
    } else {
        let Some(kcluster) = &args.kcluster else {
            bail!(
                "self-test needs --kcluster <path> (to bring a cluster up) or --kubeconfig <admin kubeconfig>"
            );
        };
        let _lock = lock()?;
        let dir = std::path::absolute(&args.dir)?;
        let me = std::env::current_exe()?;
        let mut up = Command::new(kcluster);
        up.arg("--dir")
            .arg(&dir)
            .arg("up")
            .arg("--node-agent")
            .arg(&me);
        if let Some(b) = &args.bin_dir {
            up.arg("--bin-dir").arg(b);
        }
        println!("bringing the cluster up in {}", dir.display());
        let start = Instant::now();
        let status = up.status().context("running kcluster up")?;
        let result = if !status.success() {
            Err(anyhow::anyhow!(
                "kcluster up failed ({status}); logs in {}/logs",
                dir.display()
            ))
        } else {
            println!("cluster up in {:.0}s", start.elapsed().as_secs_f64());
            let env = std::fs::read_to_string(dir.join("env")).context("the cluster's env file")?;
            let (kubeconfig, bin) = parse_env(&env);
            let k = Kube {
                kubectl: bin
                    .map(|b| b.join("kubectl"))
                    .unwrap_or_else(|| "kubectl".into()),
                kubeconfig: kubeconfig.context("no KUBECONFIG in the env file")?,
            };
            run_checks(&k, &mut report, Some((kcluster.as_path(), dir.as_path())))
        };
        if !args.keep {
            let _ = Command::new(kcluster)
                .arg("--dir")
                .arg(&dir)
                .arg("down")
                .status();
        }
        result
    };
    println!(
        "self-test: {} passed, {} failed",
        report.passed,
        report.failed.len()
    );
    result?;
    if !report.failed.is_empty() {
        bail!("failed: {}", report.failed.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_parse() {
        for y in [
            base_objects(),
            main_pod(),
            crash_pod(),
            missing_image_pod(),
            statefulset(),
        ] {
            for doc in y.split("\n---\n") {
                let v: serde_json::Value =
                    serde_yaml::from_str(doc).unwrap_or_else(|e| panic!("{e}: {doc}"));
                assert!(
                    v["kind"].is_string() && v["apiVersion"].is_string(),
                    "{doc}"
                );
                if v["kind"] == "Pod" {
                    serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(v).unwrap();
                }
            }
        }
    }

    #[test]
    fn env_file() {
        let (k, b) =
            parse_env("export KUBECONFIG=/x/pki/admin.kubeconfig\nexport PATH=/bin/dir:$PATH\n");
        assert_eq!(k, Some(PathBuf::from("/x/pki/admin.kubeconfig")));
        assert_eq!(b, Some(PathBuf::from("/bin/dir")));
    }
}
