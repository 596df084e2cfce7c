//! The Kubernetes adapter against a mock API server (tower-test): the exact method, path and body
//! of every request, in the style of kube-rs's controller-rs `ApiServerVerifier`. The drills run
//! the same adapter against a real API server; here every request is asserted, including that
//! reads come from the watch caches (issue 16: no GET, no LIST per reconcile).

use std::collections::BTreeMap;
use std::pin::pin;

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kube::runtime::watcher;
use redis_cluster_api::RedisCluster;
use redis_operator::objects::{Settings, build};
use redis_operator::platform::Platform;
use redis_operator::platform::PodInfo;
use redis_operator::platform::kube::KubePlatform;
use redis_operator::platform::kube::{CacheWriters, caches};
use redis_operator::platform::report::Watches;
use redis_topology::validate::SecretState;
use serde_json::{Value, json};
use tower_test::mock::{Handle, pair};

type Verifier = Handle<Request<Body>, Response<Body>>;

/// The adapter before its watch caches are filled, and the mock API server.
fn setup() -> (KubePlatform, Verifier) {
    let (service, handle) = pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let (caches, _) = caches();
    let platform = KubePlatform::new(client, Some("test".into()), caches, Watches::new().0);
    (platform, handle)
}

/// The adapter with its watch caches filled (empty), the mock API server, and the caches'
/// writers (what the controller's reflectors fill), so a test can say what the caches hold.
async fn setup_with_caches() -> (KubePlatform, Verifier, CacheWriters) {
    let (service, handle) = pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let (caches, mut w) = caches();
    fn listed<K: kube::Resource<DynamicType = ()> + Clone + 'static>(
        w: &mut kube::runtime::reflector::store::Writer<K>,
    ) {
        w.apply_watcher_event(&watcher::Event::Init);
        w.apply_watcher_event(&watcher::Event::InitDone);
    }
    listed(&mut w.service_accounts);
    listed(&mut w.roles);
    listed(&mut w.role_bindings);
    listed(&mut w.config_maps);
    listed(&mut w.services);
    listed(&mut w.pdbs);
    listed(&mut w.network_policies);
    listed(&mut w.statefulsets);
    listed(&mut w.pods);
    let platform = KubePlatform::new(client, Some("test".into()), caches, Watches::new().0);
    assert!(platform.caches_ready(std::time::Duration::ZERO).await);
    (platform, handle, w)
}

/// Put `objects` into `writer`'s cache as watch events would.
fn fill<K>(writer: &mut kube::runtime::reflector::store::Writer<K>, objects: Vec<K>)
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(o));
    }
}

fn sample(file: &str) -> RedisCluster {
    let mut rc: RedisCluster = redis_test_support::samples::load(file);
    rc.metadata.uid = Some("uid-1".into());
    rc
}

fn dr() -> RedisCluster {
    sample("dr-redis.yaml")
}

/// Expect one request; answer it with `status` and `body`. Returns the request body as JSON.
async fn expect(
    handle: &mut Verifier,
    method: http::Method,
    uri: &str,
    status: StatusCode,
    body: Value,
) -> (Option<String>, Value) {
    let mut handle = pin!(handle);
    let (request, send) = handle
        .next_request()
        .await
        .expect("the adapter made no request");
    assert_eq!(request.method(), method, "{}", request.uri());
    assert_eq!(request.uri().to_string(), uri);
    let content_type = request
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let sent = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    let response = Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    send.send_response(response);
    (content_type, sent)
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "metadata": {}})
}

#[tokio::test]
async fn status_is_server_side_applied_on_the_status_subresource() {
    let (platform, mut handle) = setup();
    let rc = dr();
    let status = redis_cluster_api::RedisClusterStatus {
        current_primary: Some("dr-redis-0".into()),
        ..Default::default()
    };
    let verifier = tokio::spawn(async move {
        let (ct, body) = expect(
            &mut handle,
            http::Method::PATCH,
            "/apis/redis.io/v1/namespaces/production/redisclusters/dr-redis/status?&force=true&fieldManager=redis-operator",
            StatusCode::OK,
            serde_json::to_value(dr()).unwrap(),
        )
        .await;
        assert_eq!(ct.as_deref(), Some("application/apply-patch+yaml"));
        assert_eq!(
            body,
            json!({"apiVersion": "redis.io/v1", "kind": "RedisCluster",
                   "status": {"currentPrimary": "dr-redis-0", "instances": 0, "readyInstances": 0}})
        );
    });
    platform.patch_status(&rc, &status).await.unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn pod_metadata_is_merge_patched_with_only_what_changed() {
    let (platform, mut handle) = setup();
    let verifier = tokio::spawn(async move {
        let (ct, body) = expect(
            &mut handle,
            http::Method::PATCH,
            "/api/v1/namespaces/production/pods/dr-redis-0?&fieldManager=redis-operator",
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dr-redis-0"}}),
        )
        .await;
        assert_eq!(ct.as_deref(), Some("application/merge-patch+json"));
        assert_eq!(
            body,
            json!({"metadata": {"labels": {"redis.io/role": "primary"}, "annotations": {"redis.io/topology": "{}"}}})
        );
    });
    let labels = BTreeMap::from([("redis.io/role".to_string(), "primary".to_string())]);
    let annotations = BTreeMap::from([("redis.io/topology".to_string(), "{}".to_string())]);
    platform
        .patch_pod("production", "dr-redis-0", &labels, &annotations)
        .await
        .unwrap();
    verifier.await.unwrap();
}

/// Two Events of one reason with different notes (three pods' full resyncs in one pass, a
/// second failover) are two Events, each with its own text: kube-runtime's Recorder alone
/// folded the second into a series of the first, which kept the first note.
#[tokio::test]
async fn events_of_one_reason_with_different_notes_are_each_created() {
    let (platform, mut handle) = setup();
    let verifier = tokio::spawn(async move {
        let mut notes = Vec::new();
        for _ in 0..2 {
            let (_, body) = expect(
                &mut handle,
                http::Method::POST,
                "/apis/events.k8s.io/v1/namespaces/production/events?",
                StatusCode::CREATED,
                json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                       "metadata": {"name": "dr-redis.1", "namespace": "production"},
                       "eventTime": "2026-11-27T00:00:00.000000Z"}),
            )
            .await;
            assert_eq!(body["reason"], "FullResyncAfterFailover");
            assert_eq!(body["type"], "Warning");
            notes.push(body["note"].as_str().unwrap().to_string());
        }
        notes
    });
    let rc = dr();
    for pod in ["dr-redis-0", "dr-redis-1"] {
        platform
            .publish_event(
                &rc,
                &redis_topology::PlannedEvent {
                    type_: redis_topology::EventType::Warning,
                    reason: redis_topology::EventReason::FullResyncAfterFailover,
                    note: format!("{pod} held 10 bytes its upstream's new primary never received"),
                },
            )
            .await
            .unwrap();
    }
    assert_eq!(
        verifier.await.unwrap(),
        [
            "dr-redis-0 held 10 bytes its upstream's new primary never received",
            "dr-redis-1 held 10 bytes its upstream's new primary never received"
        ]
    );
}

/// The API paths of what every cluster owns, in the order they are applied.
fn data_paths(n: &str) -> Vec<String> {
    vec![
        format!("/api/v1/namespaces/production/serviceaccounts/{n}-instance-manager"),
        format!(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/production/roles/{n}-instance-manager"
        ),
        format!(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/production/rolebindings/{n}-instance-manager"
        ),
        format!("/api/v1/namespaces/production/configmaps/{n}-config"),
        format!("/api/v1/namespaces/production/services/{n}-leader"),
        format!("/api/v1/namespaces/production/services/{n}-replica"),
        format!("/api/v1/namespaces/production/services/{n}-any"),
        format!("/api/v1/namespaces/production/services/{n}-headless"),
        format!("/apis/policy/v1/namespaces/production/poddisruptionbudgets/{n}-pdb"),
        format!("/apis/networking.k8s.io/v1/namespaces/production/networkpolicies/{n}-redis"),
        format!("/apis/apps/v1/namespaces/production/statefulsets/{n}"),
    ]
}

#[tokio::test]
async fn owned_objects_are_applied_once_and_not_rewritten_when_unchanged() {
    applied_once_then_never_rewritten(dr(), data_paths("dr-redis")).await;
}

/// mode: sentinel adds the Sentinels' objects, after the data StatefulSet.
#[tokio::test]
async fn sentinel_objects_are_applied_after_the_data_pods() {
    let mut paths = data_paths("prod-redis");
    paths.extend(
        [
            "/api/v1/namespaces/production/services/prod-redis-sentinel-headless",
            "/api/v1/namespaces/production/services/prod-redis-sentinel",
            "/apis/policy/v1/namespaces/production/poddisruptionbudgets/prod-redis-sentinel-pdb",
            "/apis/networking.k8s.io/v1/namespaces/production/networkpolicies/prod-redis-sentinel",
            "/apis/apps/v1/namespaces/production/statefulsets/prod-redis-sentinel",
        ]
        .map(String::from),
    );
    applied_once_then_never_rewritten(sample("prod-redis.yaml"), paths).await;
}

async fn applied_once_then_never_rewritten(rc: RedisCluster, paths: Vec<String>) {
    let owned = build(&rc, &Settings::default());
    let objects = owned.to_values();
    assert_eq!(objects.len(), paths.len());
    let count = paths.len();

    // First pass: the caches hold nothing: every object is server-side applied with force, and
    // nothing is read from the API server (the caches are the reads).
    let (platform, mut handle, _w) = setup_with_caches().await;
    let (objs, p) = (objects.clone(), paths.clone());
    let verifier = tokio::spawn(async move {
        for (obj, path) in objs.iter().zip(p) {
            let (ct, body) = expect(
                &mut handle,
                http::Method::PATCH,
                &format!("{path}?&force=true&fieldManager=redis-operator"),
                StatusCode::OK,
                obj.clone(),
            )
            .await;
            assert_eq!(ct.as_deref(), Some("application/apply-patch+yaml"));
            assert_eq!(&body, obj, "{path}");
        }
    });
    assert_eq!(platform.apply_owned(&owned).await.unwrap(), count);
    verifier.await.unwrap();

    // Second pass: the caches hold them (with the server's own fields added): no request at
    // all. Third: one object changed on the server (drift): only it is written.
    let (platform, handle, mut w) = setup_with_caches().await;
    let live = |v: &Value| {
        let mut live = v.clone();
        live["metadata"]["resourceVersion"] = "42".into();
        live["metadata"]["creationTimestamp"] = "2026-11-25T00:00:00Z".into();
        live
    };
    let of = |kind: &str| -> Vec<Value> {
        objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .map(&live)
            .collect()
    };
    fn typed<K: serde::de::DeserializeOwned>(v: Vec<Value>) -> Vec<K> {
        v.into_iter()
            .map(|o| serde_json::from_value(o).unwrap())
            .collect()
    }
    let fill_all_but_statefulsets = |w: &mut CacheWriters| {
        fill(&mut w.service_accounts, typed(of("ServiceAccount")));
        fill(&mut w.roles, typed(of("Role")));
        fill(&mut w.role_bindings, typed(of("RoleBinding")));
        fill(&mut w.config_maps, typed(of("ConfigMap")));
        fill(&mut w.services, typed(of("Service")));
        fill(&mut w.pdbs, typed(of("PodDisruptionBudget")));
        fill(&mut w.network_policies, typed(of("NetworkPolicy")));
    };
    fill_all_but_statefulsets(&mut w);
    let mut drifted = of("StatefulSet");
    drifted[0]["spec"]["replicas"] = 7.into();
    let want = objects
        .iter()
        .zip(&paths)
        .find(|(o, _)| o["kind"] == "StatefulSet")
        .map(|(o, p)| (o.clone(), p.clone()))
        .unwrap();
    fill(&mut w.statefulsets, typed(of("StatefulSet")));
    let verifier = tokio::spawn(async move {
        let mut handle = pin!(handle);
        assert!(
            handle.next_request().await.is_none(),
            "a request was made although the caches hold every object as desired"
        );
    });
    assert_eq!(platform.apply_owned(&owned).await.unwrap(), 0);
    drop(platform);
    verifier.await.unwrap();

    let (platform, mut handle, mut w) = setup_with_caches().await;
    fill_all_but_statefulsets(&mut w);
    fill(&mut w.statefulsets, typed(drifted));
    let verifier = tokio::spawn(async move {
        let (obj, path) = want;
        let (_, body) = expect(
            &mut handle,
            http::Method::PATCH,
            &format!("{path}?&force=true&fieldManager=redis-operator"),
            StatusCode::OK,
            obj.clone(),
        )
        .await;
        assert_eq!(body, obj);
        let mut handle = pin!(handle);
        assert!(
            handle.next_request().await.is_none(),
            "more than the drifted object was written"
        );
    });
    assert_eq!(platform.apply_owned(&owned).await.unwrap(), 1);
    drop(platform);
    verifier.await.unwrap();
}

/// A watch that cannot list (an RBAC rule missing, an API server not answering yet) must not
/// stop the operator: until every cache is filled, each object is read first, with a LIST by
/// name (the role has no `get` on them).
#[tokio::test]
async fn before_the_caches_are_filled_objects_are_read_from_the_api_server() {
    let rc = dr();
    let owned = build(&rc, &Settings::default());
    let objects = owned.to_values();
    let paths = data_paths("dr-redis");
    let (platform, mut handle) = setup();
    assert!(
        !platform
            .caches_ready(std::time::Duration::from_millis(10))
            .await
    );
    let verifier = tokio::spawn(async move {
        for (obj, path) in objects.iter().zip(paths) {
            let (collection, name) = path.rsplit_once('/').unwrap();
            expect(
                &mut handle,
                http::Method::GET,
                &format!("{collection}?&fieldSelector=metadata.name%3D{name}"),
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": []}),
            )
            .await;
            expect(
                &mut handle,
                http::Method::PATCH,
                &format!("{path}?&force=true&fieldManager=redis-operator"),
                StatusCode::OK,
                obj.clone(),
            )
            .await;
        }
    });
    platform.apply_owned(&owned).await.unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn secrets_are_read_not_written() {
    let (platform, mut handle) = setup();
    let verifier = tokio::spawn(async move {
        expect(
            &mut handle,
            http::Method::GET,
            "/api/v1/namespaces/production/secrets/a",
            StatusCode::NOT_FOUND,
            not_found(),
        )
        .await;
        expect(
            &mut handle,
            http::Method::GET,
            "/api/v1/namespaces/production/secrets/b",
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b"}, "data": {"pass": "eA=="}}),
        )
        .await;
        expect(
            &mut handle,
            http::Method::GET,
            "/api/v1/namespaces/production/secrets/c",
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "c"}, "data": {"password": "eA=="}}),
        )
        .await;
    });
    assert_eq!(
        platform
            .secret_state("production", "a", &["password"])
            .await
            .unwrap(),
        SecretState::Missing
    );
    assert_eq!(
        platform
            .secret_state("production", "b", &["password", "other"])
            .await
            .unwrap(),
        SecretState::MissingKeys(vec!["password".into(), "other".into()])
    );
    assert_eq!(
        platform
            .secret_state("production", "c", &["password"])
            .await
            .unwrap(),
        SecretState::Present
    );
    verifier.await.unwrap();
}

#[tokio::test]
async fn pods_are_listed_by_cluster_label_and_addressed_by_stable_dns() {
    let items = json!([
        {"metadata": {"name": "dr-redis-0", "namespace": "production", "labels": {"redis.io/cluster": "dr-redis"}},
         "status": {"podIP": "10.1.2.3"}},
        {"metadata": {"name": "dr-redis-sentinel-0", "namespace": "production", "labels": {"redis.io/cluster": "dr-redis"}}},
        {"metadata": {"name": "dr-redis-1", "namespace": "production", "deletionTimestamp": "2026-11-25T00:00:00Z",
                      "labels": {"redis.io/cluster": "dr-redis"}}},
        {"metadata": {"name": "dr-redis-2", "namespace": "staging", "labels": {"redis.io/cluster": "dr-redis"}}},
        {"metadata": {"name": "prod-redis-0", "namespace": "production", "labels": {"redis.io/cluster": "prod-redis"}}}
    ]);
    let (platform, mut handle, mut w) = setup_with_caches().await;
    fill(&mut w.pods, serde_json::from_value(items.clone()).unwrap());
    // From the cache: no request. After the operator patched one of the cluster's pods, the
    // next read is a LIST (the planner must see the topology it published) not older than what
    // the patch returned (the API server answers it from its watch cache), then the cache
    // again. After a patch that failed (it may still have been applied), a consistent LIST.
    let list = items.as_array().unwrap()[..3].to_vec();
    let verifier = tokio::spawn(async move {
        let patch = "/api/v1/namespaces/production/pods/dr-redis-0?&fieldManager=redis-operator";
        let listed =
            "/api/v1/namespaces/production/pods?&labelSelector=redis.io%2Fcluster%3Ddr-redis";
        let pod_list =
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": list});
        expect(
            &mut handle,
            http::Method::PATCH,
            patch,
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dr-redis-0", "resourceVersion": "4242"}}),
        )
        .await;
        expect(
            &mut handle,
            http::Method::GET,
            &format!("{listed}&resourceVersion=4242&resourceVersionMatch=NotOlderThan"),
            StatusCode::OK,
            pod_list.clone(),
        )
        .await;
        expect(
            &mut handle,
            http::Method::PATCH,
            patch,
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd timeout", "reason": "InternalError", "code": 500}),
        )
        .await;
        expect(
            &mut handle,
            http::Method::GET,
            listed,
            StatusCode::OK,
            pod_list,
        )
        .await;
        let mut handle = pin!(handle);
        assert!(
            handle.next_request().await.is_none(),
            "the cache was not used"
        );
    });
    let from_cache = platform.list_pods("production", "dr-redis").await.unwrap();
    platform
        .patch_pod(
            "production",
            "dr-redis-0",
            &BTreeMap::from([("redis.io/role".to_string(), "primary".to_string())]),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    let listed = platform.list_pods("production", "dr-redis").await.unwrap();
    let again = platform.list_pods("production", "dr-redis").await.unwrap();
    assert!(
        platform
            .patch_pod(
                "production",
                "dr-redis-0",
                &BTreeMap::from([("redis.io/role".to_string(), "replica".to_string())]),
                &BTreeMap::new(),
            )
            .await
            .is_err()
    );
    assert_eq!(
        platform.list_pods("production", "dr-redis").await.unwrap(),
        listed
    );
    drop(platform);
    verifier.await.unwrap();
    assert_eq!(from_cache, listed);
    assert_eq!(from_cache, again);
    let pods: Vec<PodInfo> = from_cache;
    assert_eq!(
        pods.len(),
        2,
        "data pods only, Terminating ones too: {pods:?}"
    );
    assert_eq!(pods[0].name, "dr-redis-0");
    assert_eq!(pods[0].report_endpoint.as_deref(), Some("10.1.2.3:9121"));
    assert_eq!(
        pods[0].address,
        "dr-redis-0.dr-redis-headless.production.svc"
    );
    assert!(!pods[0].terminating());
    // Issue 12, path 5: a pod with a deletionTimestamp is still running (the kubelet has not
    // stopped it; on a partitioned node it never will): it stays in the view, marked, and its
    // deletion is no proof that its Redis takes no writes. The code before dropped it here.
    assert_eq!(pods[1].name, "dr-redis-1");
    assert!(pods[1].terminating());
    assert_eq!(
        pods[1].problem.as_deref(),
        Some(
            "terminating (deletion requested at 2026-11-25T00:00:00Z; its Redis runs until the kubelet stops it)"
        )
    );
    assert_eq!(
        pods[1].redis_running, None,
        "no container status: unknown, never proof"
    );
}
