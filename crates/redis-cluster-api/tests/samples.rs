//! The checked-in CRD matches the Rust types, every spec sample is accepted as written, and every
//! bad sample is rejected with the message a user would see from the apiserver.

use std::path::{Path, PathBuf};

use kube::CustomResourceExt;
use kube::core::cel::{ScopeContext, analyze_rule, compile_schema};
use redis_cluster_api::validation::{
    crd_schema, merge_patch, validate_against, validate_object, validate_update,
};
use redis_cluster_api::{RedisCluster, crd_yaml};
use redis_test_support::repo_root as repo;
use serde_json::Value;

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

#[test]
fn checked_in_crds_match_the_rust_types() {
    let generated = crd_yaml();
    for file in [
        "config/crd/redis.io_redisclusters.yaml",
        "charts/redis-operator/crds/redis.io_redisclusters.yaml",
    ] {
        let checked_in = std::fs::read_to_string(repo().join(file)).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{file} differs from what the Rust types generate: run `make crd` and commit the result"
        );
    }
}

#[test]
fn every_spec_sample_is_accepted_as_written() {
    let files = yaml_files(&repo().join("config/samples"));
    assert!(
        files.len() >= 10,
        "expected the spec's samples, found {}",
        files.len()
    );
    // The checked-in YAML, not only the in-memory CRD, is what users apply.
    let checked_in: Value = load(&repo().join("config/crd/redis.io_redisclusters.yaml"));
    let schema = &checked_in["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    for file in files {
        let object = load(&file);
        let stored = validate_against(schema, &object)
            .unwrap_or_else(|errors| panic!("{} is rejected: {errors:#?}", file.display()));
        // ... and the operator can read what the apiserver would store.
        let rc: RedisCluster = serde_json::from_value(stored)
            .unwrap_or_else(|e| panic!("{} does not deserialize: {e}", file.display()));
        assert!(rc.spec.instances >= 1);
    }
}

#[test]
fn every_bad_sample_is_rejected_with_its_own_message() {
    let files = yaml_files(&repo().join("config/samples/invalid"));
    assert!(files.len() >= 5);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no '# expect: ' line", file.display()));
        let errors = validate_object(&load(&file))
            .err()
            .unwrap_or_else(|| panic!("{} was accepted", file.display()));
        let messages: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
        println!("{}:\n  {}", file.display(), messages.join("\n  "));
        assert!(
            messages.iter().any(|m| m.contains(expect)),
            "{}: expected a message containing {expect:?}, got {messages:#?}",
            file.display()
        );
    }
}

#[test]
fn the_spec_patch_commands_produce_valid_objects() {
    let west = load(&repo().join("config/samples/redis-west.yaml"));
    for patch in [
        r#"{"spec":{"replicaMode":{"promote":true}}}"#,
        r#"{"spec":{"replicaMode":{"promote":false}}}"#,
    ] {
        let mut object = west.clone();
        merge_patch(&mut object, &serde_json::from_str(patch).unwrap());
        let stored = validate_object(&object).unwrap_or_else(|e| panic!("{patch}: {e:#?}"));
        let promote = stored["spec"]["replicaMode"]["promote"].as_bool().unwrap();
        assert_eq!(promote, patch.contains("true"));
    }
    // The same patch on a cluster that is not in replica mode is refused, with the reason.
    let mut east = load(&repo().join("config/samples/redis-east.yaml"));
    merge_patch(
        &mut east,
        &serde_json::json!({"spec":{"replicaMode":{"promote":true}}}),
    );
    let errors = validate_object(&east).unwrap_err();
    assert!(
        errors[0]
            .message
            .contains("promote: true needs replicaMode.enabled: true"),
        "{errors:?}"
    );
}

#[test]
fn cel_rules_compile_and_fit_the_apiserver_cost_budget() {
    let schema = crd_schema();
    let compiled = compile_schema(&schema);
    assert!(
        !compiled.has_errors(),
        "{:?}",
        compiled.compilation_errors()
    );
    let mut rules = Vec::new();
    collect_rules(&schema, &mut rules);
    assert!(rules.len() >= 5, "expected our CEL rules, found {rules:?}");
    for rule in rules {
        let warnings = analyze_rule(&rule, &compiled, ScopeContext::CrdValidation);
        assert!(warnings.is_empty(), "{rule}: {warnings:?}");
    }
}

fn collect_rules(node: &Value, out: &mut Vec<String>) {
    if let Some(rules) = node
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        out.extend(
            rules
                .iter()
                .filter_map(|r| r["rule"].as_str().map(String::from)),
        );
    }
    match node {
        Value::Object(map) => map.values().for_each(|v| collect_rules(v, out)),
        Value::Array(list) => list.iter().for_each(|v| collect_rules(v, out)),
        _ => {}
    }
}

#[test]
fn kubectl_ergonomics() {
    let crd = RedisCluster::crd();
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["rdc".to_string()][..])
    );
    assert_eq!(
        crd.spec.names.categories.as_deref(),
        Some(&["redis".to_string()][..])
    );
    let version = &crd.spec.versions[0];
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Instances",
            "Ready",
            "Mode",
            "Primary",
            "Replicating From",
            "Age"
        ]
    );
}

#[test]
fn mode_is_immutable_but_everything_else_in_a_sample_can_change() {
    let old = load(&repo().join("config/samples/prod-redis.yaml"));
    let mut changed = old.clone();
    merge_patch(
        &mut changed,
        &serde_json::json!({"spec": {"mode": "standalone"}}),
    );
    let errors = validate_update(&old, &changed).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "spec.mode");
    assert!(
        errors[0]
            .message
            .contains("mode cannot be changed on an existing cluster"),
        "{}",
        errors[0].message
    );
    // A new object with either mode is fine, and other updates pass the transition rule.
    validate_object(&changed).unwrap();
    let mut scaled = old.clone();
    merge_patch(
        &mut scaled,
        &serde_json::json!({"spec": {"instances": 5, "sentinel": {"replicas": 5}}}),
    );
    validate_update(&old, &scaled).unwrap();
    // A cluster created without `mode` (defaulted to standalone) may say so explicitly later.
    let dr = load(&repo().join("config/samples/dr-redis.yaml"));
    let mut explicit = dr.clone();
    merge_patch(
        &mut explicit,
        &serde_json::json!({"spec": {"mode": "standalone"}}),
    );
    validate_update(&dr, &explicit).unwrap();
}
