//! Whether an object must be written: the one comparison both platforms make before applying.

use serde_json::Value;

/// Whether `desired` (what we apply) is already contained in `live` (what the server has, with
/// its defaults and other managers' fields added). Arrays must match element by element. An
/// empty list, empty map or null in `desired` matches a missing field: the API server omits
/// empty fields (`omitempty`), so they never come back (a StatefulSet with `env: []` was
/// rewritten at every reconcile).
pub fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => contains(lv, dv),
            None => is_empty(dv),
        }),
        (Value::Array(l), Value::Array(d)) => {
            l.len() == d.len() && l.iter().zip(d).all(|(lv, dv)| contains(lv, dv))
        }
        (l, d) => l == d,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// The first path at which `desired` is not contained in `live` (for the log line that says why
/// an object is written), None when it is contained.
pub fn first_difference(live: &Value, desired: &Value) -> Option<String> {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d.iter().find_map(|(k, dv)| match l.get(k) {
            None if is_empty(dv) => None,
            None => Some(format!(".{k} (missing)")),
            Some(lv) => first_difference(lv, dv).map(|p| format!(".{k}{p}")),
        }),
        (Value::Array(l), Value::Array(d)) if l.len() != d.len() => {
            Some(format!(" ({} items, want {})", l.len(), d.len()))
        }
        (Value::Array(l), Value::Array(d)) => l
            .iter()
            .zip(d)
            .enumerate()
            .find_map(|(i, (lv, dv))| first_difference(lv, dv).map(|p| format!("[{i}]{p}"))),
        (l, d) if l == d => None,
        (l, d) => Some(format!(" ({l} -> {d})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contains_ignores_server_defaults_but_not_changes() {
        let live = json!({"spec": {"ports": [{"port": 6379, "protocol": "TCP"}], "clusterIP": "10.0.0.1"}});
        assert!(contains(
            &live,
            &json!({"spec": {"ports": [{"port": 6379}]}})
        ));
        assert!(!contains(
            &live,
            &json!({"spec": {"ports": [{"port": 6380}]}})
        ));
        assert!(!contains(
            &live,
            &json!({"spec": {"ports": [{"port": 6379}, {"port": 1}]}})
        ));
        assert!(!contains(&live, &json!({"spec": {"selector": {"a": "b"}}})));
        // What the server omits when empty.
        assert!(contains(
            &live,
            &json!({"spec": {"env": [], "selector": {}, "x": null}})
        ));
        assert!(!contains(&live, &json!({"spec": {"env": [{"name": "A"}]}})));
        assert_eq!(
            first_difference(&live, &json!({"spec": {"ports": [{"port": 6380}]}})).as_deref(),
            Some(".spec.ports[0].port (6379 -> 6380)")
        );
        assert_eq!(
            first_difference(&live, &json!({"spec": {"ports": [{"port": 6379}]}})),
            None
        );
    }
}
