//! `promote` and `demote`: every refusal, and when each is done.

mod common;

use common::*;
use kubectl_redis::actions::{self, Progress};
use kubectl_redis::view::OperatorView;
use serde_json::json;

fn running() -> OperatorView {
    OperatorView::from_pods(Ok(vec![("redis-operator-a".into(), true)]))
}

fn pods() -> Vec<String> {
    (0..3).map(|i| format!("dr-redis-{i}")).collect()
}

#[test]
fn promote_is_refused_with_a_reason_a_person_can_act_on() {
    let op = running();
    let e = actions::check_promote(&prod(), &op, None, &[]).unwrap_err();
    assert!(e.contains("not in replica mode"), "{e}");
    let e = actions::check_promote(
        &dr(promoted(), true, Some("dr-redis-0")),
        &op,
        None,
        &pods(),
    )
    .unwrap_err();
    assert!(e.contains("already promoted"), "{e}");
    let e = actions::check_promote(&dr(replicating(), true, None), &op, None, &pods()).unwrap_err();
    assert!(e.contains("already in progress"), "{e}");
    let e = actions::check_promote(
        &dr(replicating(), false, None),
        &op,
        Some("dr-redis-7"),
        &pods(),
    )
    .unwrap_err();
    assert!(e.contains("dr-redis-7 is not a pod of dr-redis"), "{e}");
    let stopped = OperatorView::from_pods(Ok(vec![("redis-operator-a".into(), false)]));
    let e = actions::check_promote(&dr(replicating(), false, None), &stopped, None, &pods())
        .unwrap_err();
    assert!(e.contains("operator is not running"), "{e}");
    // Unknown (no right to list the operator's pods) does not block.
    let unknown = OperatorView::from_pods(Err("forbidden".into()));
    actions::check_promote(
        &dr(replicating(), false, None),
        &unknown,
        Some("dr-redis-1"),
        &pods(),
    )
    .unwrap();
    actions::check_promote(&dr(link_down(), false, None), &op, None, &pods()).unwrap();
}

#[test]
fn the_patches_are_the_specs() {
    assert_eq!(
        actions::promote_patch(None),
        json!({"spec": {"replicaMode": {"promote": true}}})
    );
    assert_eq!(
        actions::promote_patch(Some("dr-redis-1")),
        json!({"spec": {"replicaMode": {"promote": true}},
               "metadata": {"annotations": {"redis.io/promote-pod": "dr-redis-1"}}})
    );
    assert_eq!(
        actions::demote_patch(),
        json!({"spec": {"replicaMode": {"promote": false}}})
    );
}

#[test]
fn promotion_is_done_only_once_the_leader_confirmed_and_is_named() {
    // The operator has not seen the patched generation yet.
    let mut c = dr(replicating(), true, None);
    assert!(
        matches!(actions::promotion_progress(&c, 3), Progress::Pending(m) if m.contains("generation 3"))
    );
    // Seen, promoting.
    c.status.as_mut().unwrap().observed_generation = Some(3);
    c.status.as_mut().unwrap().conditions.push(
        serde_json::from_value(cond(
            "PromotionTarget",
            "True",
            "Chosen",
            "dr-redis-0 holds every other pod's data",
            "2026-11-27T11:59:00Z",
        ))
        .unwrap(),
    );
    assert_eq!(
        actions::promotion_progress(&c, 3),
        Progress::Pending("Chosen: dr-redis-0 holds every other pod's data".into())
    );
    // Promoted and named.
    let mut done = dr(promoted(), true, Some("dr-redis-0"));
    done.status.as_mut().unwrap().observed_generation = Some(3);
    assert!(
        matches!(actions::promotion_progress(&done, 3), Progress::Done(m) if m.contains("dr-redis-0 is primary"))
    );
    // No pod holds every other's data: the user must choose.
    let mut stuck = dr(replicating(), true, None);
    stuck.status.as_mut().unwrap().observed_generation = Some(3);
    stuck.status.as_mut().unwrap().conditions.push(
        serde_json::from_value(cond(
            "PromotionTarget",
            "False",
            "NeedsChoice",
            "dr-redis-1 and dr-redis-2 hold different writes",
            "2026-11-27T11:59:00Z",
        ))
        .unwrap(),
    );
    assert!(
        matches!(actions::promotion_progress(&stuck, 3), Progress::Stuck(m) if m.contains("NeedsChoice") && m.contains("--pod"))
    );
}

#[test]
fn demote_is_refused_unless_promoted_and_done_once_the_link_is_up() {
    let op = running();
    assert!(
        actions::check_demote(&prod(), &op)
            .unwrap_err()
            .contains("not a replica cluster")
    );
    assert!(
        actions::check_demote(&dr(replicating(), false, None), &op)
            .unwrap_err()
            .contains("not promoted")
    );
    actions::check_demote(&dr(promoted(), true, Some("dr-redis-0")), &op).unwrap();

    let mut back = dr(replicating(), false, None);
    back.status.as_mut().unwrap().observed_generation = Some(4);
    assert!(
        matches!(actions::demotion_progress(&back, 4), Progress::Done(m) if m.contains("replicates its source again"))
    );
    let mut down = dr(link_down(), false, None);
    down.status.as_mut().unwrap().observed_generation = Some(4);
    assert!(
        matches!(actions::demotion_progress(&down, 4), Progress::Pending(m) if m.starts_with("LinkDown"))
    );
}
