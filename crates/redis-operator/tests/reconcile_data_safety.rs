//! Issue 12 through the reconcile pipeline, against the in-memory Kubernetes: a missing Secret
//! freezes nothing but the objects that need it (path 7), bad input is a condition and one
//! Event with no write storm (path 8), and the RedisCluster's annotations reach the pods'
//! topologies. Only the API that existed before issue 12 is used, so this file also builds
//! against that code, where each test fails (the reconcile returned before observing, applied
//! objects for an unusable name, replicated port 6379 for an out-of-range port, overflowed the
//! epoch, ignored the annotations).

mod world;
use world::*;
// Path 7: a missing Secret freezes everything.

#[tokio::test]
async fn a_deleted_secret_stops_only_the_objects_that_need_it() {
    let mut h = Harness::new(STANDALONE);
    h.converge().await;
    assert_eq!(
        h.rc.status.as_ref().unwrap().current_primary.as_deref(),
        Some("cache-0")
    );
    // The Secret is deleted (to be re-created); the pods keep the copy they have mounted.
    h.platform
        .state
        .lock()
        .unwrap()
        .secrets
        .remove("production/cache-auth");
    // Meanwhile the spec asks for a fourth pod: that change needs the Secret, it waits.
    h.rc.spec.instances = 4;
    h.rc.metadata.generation = Some(2);
    let (_, calls) = h.step().await;
    assert!(
        calls.iter().all(|c| !matches!(c, Call::Apply { .. })),
        "{:?}",
        kinds(&calls)
    );
    let (status, reason, message) = h.condition("ConfigurationValid");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "SecretMissing")
    );
    assert_eq!(
        message,
        "Secret production/cache-auth does not exist: create it with a 'password' key; meanwhile the pods keep the copy they have mounted: observation, status and failover go on, and changes to the cluster's objects (StatefulSet, Services, ConfigMap) wait for it"
    );
    assert_eq!(event_note(&calls, "SecretMissing"), Some(message));
    // Observation goes on: the primary's Redis dies, the status says so, and the failover
    // happens as it would with the Secret there.
    h.platform.set_report("cache-0", None);
    {
        let mut s = h.platform.state.lock().unwrap();
        s.pods.get_mut("production/cache-0").unwrap().redis_running = Some(false);
    }
    let (_, calls) = h.step().await;
    assert_eq!(h.condition("PrimaryAvailable").0, "False");
    assert!(h.condition("Ready").2.contains("cache-0"));
    assert!(calls.iter().all(|c| !matches!(c, Call::Apply { .. })));
    h.clock += 11;
    let (outcome, calls) = h.step().await;
    assert!(
        kinds(&calls).contains(&"event FailingOver".to_string()),
        "{:?}",
        kinds(&calls)
    );
    assert_eq!(h.topology("cache-0").role, Role::Fenced);
    assert_eq!(h.topology("cache-1").role, Role::Primary);
    assert!(outcome.requeue_after.as_secs() <= 5, "{outcome:?}");
    // No Event storm while it lasts.
    let (_, calls) = h.step().await;
    assert!(event_note(&calls, "SecretMissing").is_none());
    // The Secret is back: the waiting change is applied.
    h.platform
        .add_secret("production", "cache-auth", &["password"]);
    let (_, calls) = h.step().await;
    assert!(kinds(&calls).contains(&"apply StatefulSet/cache".to_string()));
    assert!(kinds(&calls).contains(&"event ConfigurationValid".to_string()));
    assert_eq!(h.condition("ConfigurationValid").0, "True");
}

// Path 8: bad input loops silently.

async fn refused_once(yaml: &str, edit: impl FnOnce(&mut RedisCluster), expected: &str) {
    let mut h = Harness::new(yaml);
    edit(&mut h.rc);
    let (outcome, calls) = h.step().await;
    assert!(outcome.invalid);
    assert_eq!(kinds(&calls), ["patch status", "event InvalidSpec"]);
    let (status, reason, message) = h.condition("ConfigurationValid");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains(expected), "{message}");
    // Nothing else, and nothing again.
    for _ in 0..3 {
        let (outcome, calls) = h.step().await;
        assert!(calls.is_empty(), "{:?}", kinds(&calls));
        assert_eq!(outcome.requeue_after.as_secs(), 30);
    }
}

#[tokio::test]
async fn a_name_with_dots_is_refused_once_and_nothing_is_created() {
    refused_once(
        &STANDALONE.replace("name: cache,", "name: cache.prod,"),
        |_| {},
        "The cluster's name 'cache.prod' cannot name the objects it needs: it contains '.'",
    )
    .await;
}

#[tokio::test]
async fn a_name_too_long_for_the_sentinels_pods_is_refused_once() {
    let name = "a".repeat(44);
    refused_once(
        &format!("{STANDALONE}  mode: sentinel\n")
            .replace("name: cache,", &format!("name: {name},")),
        |_| {},
        "it is 44 characters long, and at most 43 fit the names derived from it",
    )
    .await;
}

#[tokio::test]
async fn a_port_out_of_range_from_an_older_crd_is_refused_not_replaced_by_6379() {
    refused_once(
        DR,
        |rc| {
            rc.spec
                .replica_mode
                .as_mut()
                .unwrap()
                .source
                .as_mut()
                .unwrap()
                .port = 70000;
        },
        "replicaMode.source.port 70000 is out of range (1-65535",
    )
    .await;
}

#[tokio::test]
async fn a_hand_written_largest_epoch_is_reported_once_and_never_wraps() {
    let mut h = Harness::new(DR);
    h.converge().await;
    let mut t = h.topology("dr-redis-1");
    t.epoch = u64::MAX;
    h.platform
        .state
        .lock()
        .unwrap()
        .pods
        .get_mut("production/dr-redis-1")
        .unwrap()
        .annotations
        .insert("redis.io/topology".into(), t.to_annotation());
    let (_, calls) = h.step().await;
    assert!(
        calls
            .iter()
            .all(|c| !matches!(c, Call::PatchPod { pod, annotations, .. } if pod == "dr-redis-1" && !annotations.is_empty())),
        "{:?}",
        kinds(&calls)
    );
    let (status, reason, message) = h.condition("ConfigurationValid");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "InvalidAnnotation")
    );
    assert!(message.starts_with("dr-redis-1's topology annotation has epoch 18446744073709551615"));
    assert_eq!(event_note(&calls, "InvalidAnnotation"), Some(message));
    let (_, calls) = h.step().await;
    assert!(calls.is_empty(), "no write storm: {:?}", kinds(&calls));
    // The other pods still get topologies, with small epochs.
    h.rc.spec
        .replica_mode
        .as_mut()
        .unwrap()
        .source
        .as_mut()
        .unwrap()
        .host = "10.0.0.9".into();
    h.step().await;
    assert_eq!(h.topology("dr-redis-0").upstream.unwrap().host, "10.0.0.9");
    assert!(h.topology("dr-redis-0").epoch < 100);
    assert_eq!(h.topology("dr-redis-1").epoch, u64::MAX);
}

// The RedisCluster's annotations reach the planner and the pods.

#[tokio::test]
async fn an_accepted_history_reaches_every_pods_topology() {
    let mut h = Harness::new(DR);
    h.converge().await;
    assert_eq!(h.topology("dr-redis-0").accept_history, None);
    h.rc.metadata.annotations = Some(BTreeMap::from([(
        "redis.io/accept-replication-history".into(),
        " 7509078fd6b600d18857f5f39c2c74433c02399e ".into(),
    )]));
    let (outcome, _) = h.step().await;
    assert_eq!(outcome.published.len(), 3);
    for i in 0..3 {
        assert_eq!(
            h.topology(&format!("dr-redis-{i}"))
                .accept_history
                .as_deref(),
            Some("7509078fd6b600d18857f5f39c2c74433c02399e")
        );
    }
}

#[tokio::test]
async fn the_pod_the_user_names_is_promoted() {
    let mut h = Harness::new(DR);
    h.converge().await;
    h.rc.metadata.annotations = Some(BTreeMap::from([(
        "redis.io/promote-pod".into(),
        "dr-redis-2".into(),
    )]));
    h.rc.spec.replica_mode.as_mut().unwrap().promote = true;
    h.rc.metadata.generation = Some(2);
    let (_, calls) = h.step().await;
    assert_eq!(h.topology("dr-redis-2").role, Role::Primary);
    assert_eq!(h.topology("dr-redis-0").role, Role::Replica);
    assert_eq!(
        h.condition("PromotionTarget").1,
        "Chosen",
        "{:?}",
        kinds(&calls)
    );
    assert!(
        event_note(&calls, "Promoting")
            .unwrap()
            .starts_with("Promoting dr-redis-2 to standalone primary")
    );
}
