//! `kubectl redis status`: the view (what it means) and the plain-text layout (golden files in
//! tests/golden/; `UPDATE_GOLDEN=1 cargo test -p kubectl-redis` rewrites them after a deliberate
//! change, and the diff is reviewed like code).

mod common;

use common::*;
use k8s_openapi::jiff::Timestamp;
use kubectl_redis::render::{self, Style};
use kubectl_redis::view::{self, ClusterView, Inputs, OperatorView};

fn running() -> OperatorView {
    OperatorView::from_pods(Ok(vec![
        ("redis-operator-a".into(), true),
        ("redis-operator-b".into(), true),
    ]))
}

fn golden(case: &str, text: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{case}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        text, want,
        "{case}: the layout changed (UPDATE_GOLDEN=1 to accept)"
    );
}

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn replicating_view() -> ClusterView {
    let c = dr(replicating(), false, None);
    let reports = vec![
        report("dr-redis-0", 0, 0.0, false),
        report("dr-redis-1", 2048, 1.5, false),
    ];
    let events = vec![
        event(
            "TopologyPublished",
            "Normal",
            "published epoch 3",
            "2026-11-27T11:00:00Z",
            1,
        ),
        event(
            "SourceLinkUp",
            "Normal",
            "the source link is up again",
            "2026-11-27T11:58:30Z",
            3,
        ),
    ];
    view::view(&Inputs {
        cluster: &c,
        reports: &reports,
        events: &events,
        operator: &running(),
    })
}

#[test]
fn replicating_cluster_golden_and_meaning() {
    let v = replicating_view();
    assert_eq!(v.replica_mode, "replicating");
    assert_eq!(v.source_link.as_ref().unwrap().state, "up");
    let risk = v.data_at_risk.as_ref().unwrap();
    assert_eq!(
        (risk.state.as_str(), risk.target.as_str(), risk.lag_bytes),
        ("none", "dr-redis-0", Some(0))
    );
    // Live reports for pods 0 and 1, the stored status for pod 2 (its instance manager did not answer).
    let sources: Vec<&str> = v.pods.iter().map(|p| p.source.as_str()).collect();
    assert_eq!(sources, ["live", "live", "status"]);
    assert_eq!(v.pods[1].lag_seconds, Some(1.5));
    assert_eq!(v.events[0].reason, "SourceLinkUp", "newest first");
    assert_eq!(
        v.attention,
        ["Ready=False InstancesNotReady: 2/3 instances ready"]
    );
    golden("replicating", &render::cluster(&v, now(), Style::Plain));
}

#[test]
fn a_lagging_leader_shows_the_bytes_and_seconds_a_promotion_would_lose() {
    let c = dr(replicating(), false, None);
    let reports = vec![report("dr-redis-0", 3 * 1024 * 1024, 4.2, false)];
    let v = view::view(&Inputs {
        cluster: &c,
        reports: &reports,
        events: &[],
        operator: &running(),
    });
    let risk = v.data_at_risk.unwrap();
    assert_eq!(risk.state, "bytes");
    assert_eq!(
        risk.summary,
        "a promotion now would lose the source's last 3.0 MiB, about 4.2 s (dr-redis-0 is behind)"
    );
}

#[test]
fn a_down_link_makes_the_data_at_risk_unknown_since_the_cut() {
    let c = dr(link_down(), false, None);
    let v = view::view(&Inputs {
        cluster: &c,
        reports: &[],
        events: &[],
        operator: &running(),
    });
    let risk = v.data_at_risk.as_ref().unwrap();
    assert_eq!(risk.state, "unknown");
    assert_eq!(
        risk.link_down_since.as_deref(),
        Some("2026-11-27T11:57:00Z")
    );
    assert!(
        risk.summary
            .contains("unreachable since 2026-11-27T11:57:00Z"),
        "{}",
        risk.summary
    );
    assert!(
        risk.summary.contains("plus the 0 B dr-redis-0 was behind"),
        "{}",
        risk.summary
    );
    golden("link-down", &render::cluster(&v, now(), Style::Plain));
}

/// The operator's `status.dataAtRisk` (the target's lag when it last read the source, and
/// when) is what the plugin shows while the link is down, before `promote` asks to confirm.
#[test]
fn a_down_link_shows_the_operators_account_of_the_data_at_risk() {
    let mut c = dr(link_down(), false, None);
    let message = "dr-redis-0 was 1500 bytes (0.4 s of writes) behind the source when it last read it, at 2026-11-27T11:56:58Z: a promotion now loses those writes and every write the source accepted since";
    c.status.as_mut().unwrap().data_at_risk = Some(redis_cluster_api::DataAtRisk {
        pod: "dr-redis-0".into(),
        source_last_seen: Some("2026-11-27T11:56:58Z".into()),
        lag_bytes: Some(1500),
        lag_seconds: Some(0.4),
        message: message.into(),
    });
    let v = view::view(&Inputs {
        cluster: &c,
        reports: &[],
        events: &[],
        operator: &running(),
    });
    let risk = v.data_at_risk.as_ref().unwrap();
    assert_eq!(risk.state, "unknown");
    assert_eq!(risk.summary, format!("unknown: {message}"));
    assert_eq!(
        (risk.lag_bytes, risk.source_last_seen.as_deref()),
        (Some(1500), Some("2026-11-27T11:56:58Z"))
    );
    // Another pod's account is not the target's.
    c.status
        .as_mut()
        .unwrap()
        .data_at_risk
        .as_mut()
        .unwrap()
        .pod = "dr-redis-1".into();
    let v = view::view(&Inputs {
        cluster: &c,
        reports: &[],
        events: &[],
        operator: &running(),
    });
    assert!(
        v.data_at_risk
            .unwrap()
            .summary
            .contains("unreachable since"),
        "the plugin's own account"
    );
}

#[test]
fn a_promoted_cluster_shows_no_data_at_risk_and_warns_about_the_writable_source() {
    let c = dr(promoted(), true, Some("dr-redis-0"));
    let mut r = report("dr-redis-0", 0, 0.0, false);
    r.role = Some(redis_cluster_api::report::ObservedRole::Primary);
    r.upstream = None;
    r.lag_bytes = None;
    r.lag_seconds = None;
    r.sync_full = 1;
    let v = view::view(&Inputs {
        cluster: &c,
        reports: &[r],
        events: &[],
        operator: &running(),
    });
    assert_eq!(v.replica_mode, "promoted");
    assert_eq!(v.primary.as_deref(), Some("dr-redis-0"));
    assert!(v.data_at_risk.is_none());
    assert!(
        v.attention
            .iter()
            .any(|a| a.starts_with("FormerSourceWritable=True AcceptsWrites")),
        "{:?}",
        v.attention
    );
    golden("promoted", &render::cluster(&v, now(), Style::Plain));
}

#[test]
fn a_standalone_cluster_and_a_stopped_operator() {
    let c = prod();
    let op = OperatorView::from_pods(Ok(vec![]));
    let v = view::view(&Inputs {
        cluster: &c,
        reports: &[],
        events: &[],
        operator: &op,
    });
    assert_eq!(v.replica_mode, "off");
    assert!(v.source_link.is_none() && v.data_at_risk.is_none());
    assert_eq!(v.operator.state, "not running");
    golden(
        "standalone-operator-down",
        &render::cluster(&v, now(), Style::Plain),
    );
}

#[test]
fn colour_only_repeats_what_the_words_say() {
    let v = replicating_view();
    let plain = render::cluster(&v, now(), Style::Plain);
    let colour = render::cluster(&v, now(), Style::Color);
    assert!(colour.contains("\x1b["));
    assert!(!plain.contains('\x1b'));
    // Without the escape codes the coloured text is the plain text.
    let mut stripped = String::new();
    let mut chars = colour.chars();
    while let Some(ch) = chars.next() {
        if ch == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            stripped.push(ch);
        }
    }
    assert_eq!(stripped, plain);
}

#[test]
fn json_names_every_field_a_script_needs() {
    let v = replicating_view();
    let j = serde_json::to_value(&v).unwrap();
    for key in [
        "namespace",
        "name",
        "mode",
        "replicaMode",
        "source",
        "sourceLink",
        "dataAtRisk",
        "pods",
        "events",
        "operator",
        "attention",
    ] {
        assert!(j.get(key).is_some(), "{key} missing: {j}");
    }
    let pod = &j["pods"][1];
    assert_eq!(pod["lagBytes"], 2048);
    assert_eq!(pod["lagSeconds"], 1.5);
    assert_eq!(pod["linkUp"], true);
    assert_eq!(pod["fullResyncsServed"], 0);
    assert_eq!(pod["fenced"], false);
    assert_eq!(j["dataAtRisk"]["state"], "none");
}

#[test]
fn ages_read_like_kubectl() {
    let now = now();
    assert_eq!(render::age("2026-11-27T11:59:30Z", now), "30s ago");
    assert_eq!(render::age("2026-11-27T11:50:00Z", now), "10m ago");
    assert_eq!(render::age("2026-11-27T06:00:00Z", now), "6h ago");
    assert_eq!(render::age("2026-11-20T12:00:00Z", now), "7d ago");
    assert_eq!(render::age("garbage", now), "");
}
