//! Validate a `RedisCluster` manifest against the generated CRD schema the way the apiserver does:
//! defaults first, then the structural OpenAPI checks (types, required fields, enums, ranges,
//! lengths, unknown fields as `kubectl apply`'s strict field validation reports them), then the
//! CEL rules (`x-kubernetes-validations`, evaluated by kube-rs's client-side CEL engine).
//!
//! Messages follow the apiserver's wording (`spec.replicaMode.source.port: Invalid value: 0:
//! ... should be greater than or equal to 1`), so what a test asserts is what a user would read.
//!
//! This is the one place the project imitates the API server; it is used by the sample tests and
//! by the drill's simulated API, never by the operator itself (the real apiserver validates there).

use kube::CustomResourceExt;
use kube::core::cel::{Validator, apply_defaults};
use serde_json::Value;

use crate::RedisCluster;

/// One reason a manifest is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// JSON path, `spec.replicaMode.source.port`.
    pub field: String,
    /// The apiserver-style message, including the field.
    pub message: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The `openAPIV3Schema` of the generated CRD, as JSON.
pub fn crd_schema() -> Value {
    let crd = RedisCluster::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("the derived CRD has an openAPIV3Schema");
    serde_json::to_value(schema).expect("a schema serializes to JSON")
}

/// Validate a whole object (`apiVersion`, `kind`, `metadata`, `spec`, ...). Returns the object
/// with defaults applied, as the apiserver would store it, or every reason it is rejected.
pub fn validate_object(object: &Value) -> Result<Value, Vec<Rejection>> {
    validate_against(&crd_schema(), object)
}

/// Validate an update of `old` to `object`, transition rules (`oldSelf`) included.
pub fn validate_update(old: &Value, object: &Value) -> Result<Value, Vec<Rejection>> {
    validate_inner(&crd_schema(), object, Some(old))
}

/// [`validate_object`] against an explicit schema (e.g. one read back from a checked-in YAML).
pub fn validate_against(schema: &Value, object: &Value) -> Result<Value, Vec<Rejection>> {
    validate_inner(schema, object, None)
}

fn validate_inner(
    schema: &Value,
    object: &Value,
    old: Option<&Value>,
) -> Result<Value, Vec<Rejection>> {
    let defaulted = apply_defaults(schema, object);
    let mut errors = Vec::new();
    structural(schema, &defaulted, "", &mut errors);
    // Like the apiserver, CEL rules only run on a structurally valid object: a rule over a field
    // of the wrong type would only add noise to the message that matters.
    if errors.is_empty()
        && let Err(cel) = Validator::new().validate(
            schema,
            &defaulted,
            old.map(|o| apply_defaults(schema, o)).as_ref(),
        )
    {
        for e in cel.iter() {
            let field = e.field_path.trim_start_matches('.').to_string();
            // The apiserver names the schema type of the failing node, not the value.
            let value = schema_type_at(schema, &field);
            errors.push(Rejection {
                message: format!("{field}: Invalid value: \"{value}\": {}", e.message),
                field,
            });
        }
    }
    if errors.is_empty() {
        Ok(defaulted)
    } else {
        Err(errors)
    }
}

fn schema_type_at<'a>(schema: &'a Value, path: &str) -> &'a str {
    path.split('.')
        .filter(|s| !s.is_empty())
        .try_fold(schema, |node, key| node.get("properties")?.get(key))
        .and_then(|node| node.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("object")
}

fn describe_kind(v: Option<&Value>) -> &'static str {
    match v {
        Some(Value::Object(_)) => "object",
        Some(Value::Array(_)) => "array",
        Some(Value::String(_)) => "string",
        Some(Value::Number(_)) => "number",
        Some(Value::Bool(_)) => "boolean",
        _ => "null",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn structural(schema: &Value, value: &Value, path: &str, errors: &mut Vec<Rejection>) {
    let mut push = |message: String| {
        errors.push(Rejection {
            field: path.to_string(),
            message,
        });
    };
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            push(format!(
                "{path}: Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                type_name(schema)
            ));
        }
        return;
    }
    if schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
    {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            push(format!(
                "{path}: Invalid value: \"{}\": {path} in body must be of type int-or-string",
                describe_kind(Some(value))
            ));
        }
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str);
    let type_ok = match ty {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        push(format!(
            "{path}: Invalid value: \"{kind}\": {path} in body must be of type {t}: \"{kind}\"",
            kind = describe_kind(Some(value)),
            t = ty.unwrap_or("?")
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        push(format!(
            "{path}: Unsupported value: {value}: supported values: {}",
            list.join(", ")
        ));
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            push(format!(
                "{path}: Invalid value: {value}: {path} in body should be greater than or equal to {min}"
            ));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            push(format!(
                "{path}: Invalid value: {value}: {path} in body should be less than or equal to {max}"
            ));
        }
    }
    if let (Some(s), Some(min)) = (
        value.as_str(),
        schema.get("minLength").and_then(Value::as_u64),
    ) && (s.chars().count() as u64) < min
    {
        push(format!(
            "{path}: Invalid value: {value}: {path} in body should be at least {min} chars long"
        ));
    }
    if let Some(obj) = value.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = req.as_str().unwrap_or_default();
            if !obj.contains_key(key) {
                errors.push(Rejection {
                    field: join(path, key),
                    message: format!("{}: Required value", join(path, key)),
                });
            }
        }
        let preserve = schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            == Some(true);
        let additional = schema.get("additionalProperties");
        for (key, child) in obj {
            let child_path = join(path, key);
            match (props.and_then(|p| p.get(key)), additional) {
                (Some(child_schema), _) => structural(child_schema, child, &child_path, errors),
                (None, Some(add)) if add.is_object() => structural(add, child, &child_path, errors),
                // `metadata` is validated by the apiserver's own ObjectMeta rules, not the CRD.
                (None, _)
                    if preserve
                        || path.is_empty()
                            && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") => {}
                (None, _) => errors.push(Rejection {
                    field: child_path.clone(),
                    message: format!("unknown field \"{child_path}\""),
                }),
            }
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), value.as_array()) {
        for (i, item) in list.iter().enumerate() {
            structural(items, item, &format!("{path}[{i}]"), errors);
        }
    }
}

fn type_name(schema: &Value) -> &str {
    schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("object")
}

/// JSON merge patch (RFC 7386), what `kubectl patch --type=merge` sends.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}
