//! JSON Schemas of a home's files, for editors (yaml-language-server) and CI.
//!
//! The lane file's and `lanekeeper.yaml`'s come from the types they are read into
//! ([`crate::config::lane::json_schema`], [`crate::config::settings::json_schema`]); the lane
//! file's `with:` is then narrowed per plugin, keyed by `use:`, from each plugin's declared
//! parameters (`fn params()` or a WASM `params` export).

use serde_json::{Value, json};

use crate::config;
use crate::plugins::registry::Registry;

/// The lane file's schema, with `with:` checked against the parameters of each plugin in
/// `registry` that declares them.
pub fn lane(registry: &Registry) -> Value {
    let mut schema = config::lane::json_schema().to_value();
    let names = registry.names();
    let cases: Vec<Value> = names
        .iter()
        .filter_map(|name| {
            let with = registry.get(name)?.schema().json_schema()?;
            Some(json!({
                "if": { "properties": { "use": { "const": name } }, "required": ["use"] },
                "then": { "properties": { "with": with } },
            }))
        })
        .collect();
    if let Some(gate) = schema.pointer_mut("/$defs/Gate")
        && let Some(gate) = gate.as_object_mut()
    {
        if !names.is_empty()
            && let Some(uses) = gate.get_mut("properties").and_then(|p| p.get_mut("use"))
        {
            *uses = json!({
                "type": "string",
                "description": "the plugin: plugins/<name>.rhai or plugins/<name>.wasm",
                "enum": names,
            });
        }
        if !cases.is_empty() {
            gate.insert("allOf".into(), Value::Array(cases));
        }
    }
    titled(schema, "lanekeeper lane file (rules/*.yaml)")
}

/// `lanekeeper.yaml`'s schema.
pub fn settings() -> Value {
    titled(
        config::settings::json_schema().to_value(),
        "lanekeeper host settings (lanekeeper.yaml)",
    )
}

fn titled(mut schema: Value, title: &str) -> Value {
    if let Some(o) = schema.as_object_mut() {
        o.insert("title".into(), json!(title));
    }
    schema
}
