//! The story's last step: `kubectl redis`, run through the real kubectl as a plugin against the
//! real API server, on the clusters the story left (production promoted, DR replicating it).

use std::time::Duration;

use serde_json::Value;

use crate::harness::{DR, Drill, NS, PROD, wait};

fn ok_if(cond: bool, detail: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(detail()) }
}

/// 8. kubectl redis: the plugin an on-call engineer uses
///
/// kubectl finds kubectl-redis on PATH. `status` reads the clusters, the instance managers (through
/// the API server's pod proxy) and the Events; `promote`/`demote`/`switchover` refuse what is unsafe
/// or pointless with a reason; `switchover` moves production to DR and back in one command each;
/// `report` writes a support bundle with every password redacted; a user without RBAC and a stopped
/// operator get errors that say what to do.
pub fn kubectl_plugin(d: &mut Drill) -> Result<(), String> {
    d.step(
        "8. kubectl redis: the plugin an on-call engineer uses",
        "kubectl finds kubectl-redis on PATH. `status` reads the clusters, the instance managers (through\n\
         the API server's pod proxy) and the Events; `promote`/`demote`/`switchover` refuse what is unsafe\n\
         or pointless with a reason; `switchover` moves production to DR and back in one command each;\n\
         `report` writes a support bundle with every password redacted; a user without RBAC and a stopped\n\
         operator get errors that say what to do.",
    );
    status_json(d)?;
    status_text(d)?;
    refusals(d)?;
    switchover_round_trip(d)?;
    report(d)?;
    no_rbac(d)?;
    operator_stopped(d)
}

fn status_json(d: &mut Drill) -> Result<(), String> {
    // DR may still be settling after the fail-back: wait for every pod to answer live, linked.
    let (j, _) = wait(
        "kubectl redis status to show DR linked, every pod live",
        Duration::from_secs(30),
        || {
            let (code, out, _) = d
                .kubectl_redis(&["status", "-n", NS, "-o", "json"], None)
                .ok()?;
            let j: Value = serde_json::from_str(&out).ok()?;
            let dr = j["items"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == DR)?
                .clone();
            let pods = dr["pods"].as_array()?;
            (code == 0
                && dr["sourceLink"]["state"] == "up"
                && pods.len() == d.pods(DR).len()
                && pods
                    .iter()
                    .all(|p| p["source"] == "live" && p["linkUp"] == true))
            .then_some(j)
        },
    )
    .map_err(|e| {
        let now = d.kubectl_redis(&["status", "-n", NS, "-o", "json"], None);
        format!("{e}; last: {now:?}")
    })?;
    let items = j["items"].as_array().cloned().unwrap_or_default();
    let dr = items
        .iter()
        .find(|c| c["name"] == DR)
        .cloned()
        .unwrap_or_default();
    let prod = items
        .iter()
        .find(|c| c["name"] == PROD)
        .cloned()
        .unwrap_or_default();
    d.check(
        &format!(
            "status -o json: dr-redis replicating, link up, every pod live from its instance manager (lag {}), data at risk {:?}; prod-redis {}; operator {}",
            dr["pods"][0]["lagBytes"],
            dr["dataAtRisk"]["state"].as_str().unwrap_or("?"),
            prod["replicaMode"].as_str().unwrap_or("?"),
            j["items"][0]["operator"]["state"].as_str().unwrap_or("?"),
        ),
        ok_if(
            dr["replicaMode"] == "replicating"
                && matches!(dr["dataAtRisk"]["state"].as_str(), Some("none" | "bytes"))
                && dr["dataAtRisk"]["target"] == "dr-redis-0"
                && prod["replicaMode"] == "promoted"
                && prod["primary"].is_string()
                && dr["operator"]["state"] == "running"
                && dr["events"].as_array().is_some_and(|e| !e.is_empty()),
            || serde_json::to_string_pretty(&j).unwrap_or_default(),
        ),
    )
}

fn status_text(d: &mut Drill) -> Result<(), String> {
    let started = std::time::Instant::now();
    let (code, out, err) = d.kubectl_redis(&["status", DR, "-n", NS], None)?;
    d.time(
        "kubectl redis status dr-redis (5 pods read live through the pod proxy)",
        started.elapsed(),
    );
    // The baseline a user has without the plugin: the printer columns and describe's conditions
    // and Events (no pod's lag, no data at risk).
    let started = std::time::Instant::now();
    d.kubectl(&["-n", NS, "get", "rediscluster", DR])?;
    d.kubectl(&["-n", NS, "describe", "rediscluster", DR])?;
    d.time(
        "baseline: kubectl get rediscluster dr-redis + kubectl describe rediscluster dr-redis",
        started.elapsed(),
    );
    let pods = d.pods(DR);
    let rows = out
        .lines()
        .filter(|l| {
            pods.iter()
                .any(|p| l.trim_start().starts_with(&format!("{p} ")))
        })
        .count();
    d.say(&format!(
        "\n    kubectl redis status dr-redis:\n{}",
        indent(&out)
    ));
    d.check(
        &format!("status (piped: no colour) shows replica mode, source link, data at risk, the operator, a row per pod ({rows}) and the last Events"),
        ok_if(
            code == 0
                && out.starts_with("dr-redis (production)")
                && [
                    "Replica mode: replicating",
                    "Source link:  up",
                    "Data at risk:",
                    "Operator:     running",
                    "POD ",
                    "Last events:",
                ]
                .iter()
                .all(|s| out.contains(s))
                && rows == pods.len()
                && !out.contains('\x1b'),
            || format!("exit {code}\n{out}\n{err}"),
        ),
    )
}

fn refusals(d: &mut Drill) -> Result<(), String> {
    let cases: [(&[&str], &str); 5] = [
        (&["promote", PROD, "-n", NS, "--yes"], "already promoted"),
        (&["demote", DR, "-n", NS, "--yes"], "is not promoted"),
        // No --yes and no terminal: nothing is patched.
        (&["promote", DR, "-n", NS], "add --yes"),
        (
            &["promote", "no-such-cluster", "-n", NS, "--yes"],
            "not found in namespace production",
        ),
        (
            &["switchover", DR, "--to", PROD, "-n", NS, "--yes"],
            "is not a primary",
        ),
    ];
    let mut failures = Vec::new();
    for (args, want) in cases {
        let (code, out, err) = d.kubectl_redis(args, None)?;
        if code != 1 || !err.contains(want) {
            failures.push(format!(
                "{args:?}: exit {code}, want 1 and {want:?}: {out}{err}"
            ));
        }
    }
    let promote = d.kubectl(&[
        "-n",
        NS,
        "get",
        "rediscluster",
        DR,
        "-o",
        "jsonpath={.spec.replicaMode.promote}",
    ])?;
    if promote.trim() == "true" {
        failures.push("dr-redis was promoted by a refused command".into());
    }
    d.check(
        "promote/demote/switchover refuse with a reason (already promoted, not promoted, no --yes without a terminal, unknown cluster, a switchover from a replica) and change nothing",
        ok_if(failures.is_empty(), || failures.join("\n")),
    )
}

/// `kubectl redis switchover` both ways: each one command, done when the old side follows.
fn switchover_round_trip(d: &mut Drill) -> Result<(), String> {
    for (from, to) in [(PROD, DR), (DR, PROD)] {
        let started = std::time::Instant::now();
        let (code, out, err) =
            d.kubectl_redis(&["switchover", from, "--to", to, "-n", NS, "--yes"], None)?;
        let done = out
            .lines()
            .find(|l| l.starts_with("switchover done"))
            .unwrap_or_default()
            .to_string();
        let promoted = d
            .condition(to, "ReplicaMode")
            .is_some_and(|c| c.1 == "Promoted");
        let follows = d
            .condition(from, "ReplicaMode")
            .is_some_and(|c| c.1 == "Enabled");
        d.check(
            &format!(
                "kubectl redis switchover {from} --to {to} --yes: {done} ({:.1} s with kubectl)",
                started.elapsed().as_secs_f64()
            ),
            ok_if(code == 0 && !done.is_empty() && promoted && follows, || {
                format!(
                    "exit {code}, {to} promoted {promoted}, {from} follows {follows}\n{out}{err}"
                )
            }),
        )?;
    }
    let all = d.all_pods().len();
    d.check_keyspaces_converge(&format!(
        "after the plugin's switchovers all {all} keyspaces are equal"
    ))
}

fn report(d: &mut Drill) -> Result<(), String> {
    let archive = d.o.dir.join("report.tar.gz");
    let (code, out, err) = d.kubectl_redis(
        &["report", DR, "-n", NS, "-o", &archive.display().to_string()],
        None,
    )?;
    if code != 0 {
        return d.check(
            "report writes a bundle",
            Err(format!("exit {code}: {out}{err}")),
        );
    }
    let dir = d.o.dir.join("report");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let untar = std::process::Command::new("tar")
        .args([
            "-xzf",
            &archive.display().to_string(),
            "-C",
            &dir.display().to_string(),
        ])
        .status()
        .map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    collect_files(&dir, &mut files);
    let mut problems = Vec::new();
    if !untar.success() {
        problems.push("tar -xzf failed".to_string());
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&archive)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    if mode != 0o600 {
        problems.push(format!("archive mode {mode:o}, want 600"));
    }
    let has = |suffix: &str| files.iter().any(|(p, _)| p.ends_with(suffix));
    for want in [
        "/README.txt",
        "/cluster.yaml",
        "/events.yaml",
        "/secrets.txt",
        "/objects/pods.yaml",
        "/pods/dr-redis-0/instance-manager-status.json",
        "/pods/dr-redis-0/info.txt",
        "/pods/dr-redis-0/redis.log",
    ] {
        if !has(want) {
            problems.push(format!("{want} missing"));
        }
    }
    if !files
        .iter()
        .any(|(p, _)| p.contains("/operator/redis-operator/"))
    {
        problems.push("no operator log".into());
    }
    if !files
        .iter()
        .any(|(p, t)| p.ends_with("/pods/dr-redis-0/info.txt") && t.contains("role:slave"))
    {
        problems.push("info.txt of dr-redis-0 does not show role:slave".into());
    }
    // The passwords appear nowhere: neither the clusters' own nor the source's.
    let passwords: Vec<String> = d.passwords.values().cloned().collect();
    for (p, t) in &files {
        for pw in &passwords {
            if t.contains(pw.as_str()) {
                problems.push(format!("{p} holds a password"));
            }
        }
    }
    let secrets = files
        .iter()
        .find(|(p, _)| p.ends_with("/secrets.txt"))
        .map(|(_, t)| t.trim().replace('\n', "; "))
        .unwrap_or_default();
    d.check(
        &format!(
            "report: {} files (cluster, Events, objects, each pod's /status, INFO and logs, the operator's logs), archive mode 600, no password in any file ({secrets})",
            files.len()
        ),
        ok_if(problems.is_empty(), || problems.join("\n")),
    )
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned();
            out.push((p.display().to_string(), text));
        }
    }
}

/// A kubeconfig for ServiceAccount `sa` of the drill's namespace (created here), as a user would
/// get one.
fn sa_kubeconfig(d: &mut Drill, sa: &str) -> Result<std::path::PathBuf, String> {
    d.kubectl(&["-n", NS, "create", "serviceaccount", sa])?;
    let token = d.kubectl(&["-n", NS, "create", "token", sa])?;
    let view = |path: &str| {
        d.kubectl(&[
            "config",
            "view",
            "--raw",
            "-o",
            &format!("jsonpath={{.clusters[0].cluster.{path}}}"),
        ])
    };
    let server = view("server")?;
    let ca = view("certificate-authority-data")?;
    let ca_line = if ca.trim().is_empty() {
        format!(
            "certificate-authority: {}",
            view("certificate-authority")?.trim()
        )
    } else {
        format!("certificate-authority-data: {}", ca.trim())
    };
    let kubeconfig = d.o.dir.join(format!("{sa}.kubeconfig"));
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    {ca_line}\n\
             users:\n- name: {sa}\n  user:\n    token: {}\ncontexts:\n- name: {sa}\n  context:\n    cluster: c\n    user: {sa}\n    namespace: {NS}\n\
             current-context: {sa}\n",
            server.trim(),
            token.trim()
        ),
    )
    .map_err(|e| e.to_string())?;
    Ok(kubeconfig)
}

/// A ServiceAccount with no role at all is told what is missing; one bound to Kubernetes'
/// built-in `edit` role in the namespace can use the plugin there (the chart's aggregated
/// ClusterRoles, `rbac.aggregateToDefaultRoles`).
fn no_rbac(d: &mut Drill) -> Result<(), String> {
    let kubeconfig = sa_kubeconfig(d, "plugin-nobody")?;
    let (code, out, err) = d.kubectl_redis(&["status"], Some(&kubeconfig))?;
    d.check(
        &format!(
            "a user without RBAC is told what is missing and how to check it: \"{}\"",
            err.lines().next().unwrap_or_default()
        ),
        ok_if(
            code == 1
                && err.contains("not allowed to list redisclusters in namespace production")
                && err.contains("kubectl auth can-i list redisclusters -n production"),
            || format!("exit {code}: {out}{err}"),
        ),
    )?;
    let kubeconfig = sa_kubeconfig(d, "plugin-editor")?;
    d.kubectl(&[
        "-n",
        NS,
        "create",
        "rolebinding",
        "plugin-editor",
        "--clusterrole=edit",
        &format!("--serviceaccount={NS}:plugin-editor"),
    ])?;
    let who = format!("--as=system:serviceaccount:{NS}:plugin-editor");
    let can_patch = d
        .kubectl(&[
            "auth",
            "can-i",
            "patch",
            "redisclusters.redis.io",
            "-n",
            NS,
            &who,
        ])
        .unwrap_or_default();
    let (code, out, err) = d.kubectl_redis(&["status", DR, "-o", "json"], Some(&kubeconfig))?;
    let j: Value = serde_json::from_str(&out).unwrap_or_default();
    let live = j["pods"]
        .as_array()
        .is_some_and(|p| !p.is_empty() && p.iter().all(|p| p["source"] == "live"));
    d.check(
        "a user with Kubernetes' built-in edit role in the namespace reads status with every pod live, may patch redisclusters (the chart's aggregated roles), and sees the operator as unknown",
        ok_if(
            code == 0 && live && j["operator"]["state"] == "unknown" && can_patch.trim() == "yes",
            || format!("exit {code}, can-i patch: {can_patch}: {out}{err}"),
        ),
    )
}

fn operator_stopped(d: &mut Drill) -> Result<(), String> {
    d.kubectl(&[
        "-n",
        "redis-operator",
        "scale",
        "deployment",
        "redis-operator",
        "--replicas=0",
    ])?;
    let r = wait(
        "the operator's pods to be gone",
        Duration::from_secs(60),
        || {
            let pods = d
                .kubectl(&[
                    "get",
                    "pods",
                    "-A",
                    "-l",
                    "app.kubernetes.io/name=redis-operator",
                    "-o",
                    "name",
                ])
                .ok()?;
            pods.trim().is_empty().then_some(())
        },
    );
    let outcome = r.and_then(|_| d.kubectl_redis(&["promote", DR, "-n", NS, "--yes"], None));
    // Put it back either way: whatever runs after this step expects an operator.
    let _ = d.kubectl(&[
        "-n",
        "redis-operator",
        "scale",
        "deployment",
        "redis-operator",
        "--replicas=2",
    ]);
    let (code, out, err) = outcome?;
    d.check(
        &format!(
            "with the operator stopped, promote refuses: \"{}\"",
            err.lines().next().unwrap_or_default()
        ),
        ok_if(code == 1 && err.contains("operator is not running"), || {
            format!("exit {code}: {out}{err}")
        }),
    )
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("      {l}\n")).collect()
}
