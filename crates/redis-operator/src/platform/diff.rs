//! Whether an object must be written: the one comparison both platforms make before applying.

use serde_json::Value;

/// Whether `desired` (what we apply) is already contained in `live` (what the server has, with
/// its defaults and other managers' fields added). Arrays must match element by element.
pub fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d
            .iter()
            .all(|(k, dv)| l.get(k).is_some_and(|lv| contains(lv, dv))),
        (Value::Array(l), Value::Array(d)) => {
            l.len() == d.len() && l.iter().zip(d).all(|(lv, dv)| contains(lv, dv))
        }
        (l, d) => l == d,
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
    }
}
