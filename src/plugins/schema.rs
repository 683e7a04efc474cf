//! The parameters a plugin declares, and the check of a lane's `with:` against them.
//!
//! Checking at load time is what lets `validate` point at a bad `max_age:` by line and column
//! instead of the plugin failing at 03:00. Values are also normalised here (durations become
//! milliseconds) so every runtime receives the same shapes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::model::duration;

/// The type of one parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// Any string.
    String,
    /// An integer.
    Int,
    /// Any number.
    Number,
    /// true or false.
    Bool,
    /// A duration such as `36h`; the plugin receives milliseconds.
    Duration,
    /// The name of a lane in this home.
    Lane,
    /// A list of lane names.
    Lanes,
    /// The name of a metric the host can read.
    Metric,
    /// An http:// or https:// URL.
    Url,
    /// A daily window `HH:MM-HH:MM`.
    Window,
    /// A list of `{ metric: NAME, above: NUMBER }`.
    Thresholds,
    /// A list of anything.
    List,
    /// A mapping of anything.
    Map,
    /// Anything.
    Any,
}

const TYPES: &[(&str, ParamType)] = &[
    ("string", ParamType::String),
    ("int", ParamType::Int),
    ("number", ParamType::Number),
    ("bool", ParamType::Bool),
    ("duration", ParamType::Duration),
    ("lane", ParamType::Lane),
    ("lanes", ParamType::Lanes),
    ("metric", ParamType::Metric),
    ("url", ParamType::Url),
    ("window", ParamType::Window),
    ("thresholds", ParamType::Thresholds),
    ("list", ParamType::List),
    ("map", ParamType::Map),
    ("any", ParamType::Any),
];

impl FromStr for ParamType {
    type Err = UnknownParamType;
    fn from_str(s: &str) -> Result<Self, UnknownParamType> {
        TYPES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, t)| *t)
            .ok_or_else(|| UnknownParamType(s.to_string()))
    }
}

/// A `params()` type that is none of [`TYPES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown parameter type `{0}` (types: {types})", types = type_names())]
pub struct UnknownParamType(pub String);

fn type_names() -> String {
    TYPES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

impl ParamType {
    /// What a value of this type looks like, in JSON Schema.
    pub fn json_schema(self) -> Value {
        use serde_json::json;
        let name = json!({ "type": "string", "minLength": 1 });
        match self {
            ParamType::String => json!({ "type": "string" }),
            ParamType::Int => json!({ "type": "integer" }),
            ParamType::Number => json!({ "type": "number" }),
            ParamType::Bool => json!({ "type": "boolean" }),
            ParamType::Duration => json!({
                "type": "string",
                "pattern": "^\\s*([0-9]+\\s*(ms|s|m|h|d|w)\\s*)+$",
                "description": "a duration such as 90s, 15m, 36h or 7d",
            }),
            ParamType::Lane => {
                json!({ "type": "string", "minLength": 1, "description": "a lane of this home" })
            }
            ParamType::Lanes => {
                json!({ "type": "array", "items": name, "description": "lanes of this home" })
            }
            ParamType::Metric => {
                json!({ "type": "string", "minLength": 1, "description": "a metric source (lanekeeper.yaml) or a built-in one" })
            }
            ParamType::Url => {
                json!({ "type": "string", "pattern": "^https?://", "description": "an http:// or https:// URL" })
            }
            ParamType::Window => json!({
                "type": "string",
                "pattern": "^\\s*[0-9]{1,2}:[0-9]{2}\\s*-\\s*[0-9]{1,2}:[0-9]{2}\\s*$",
                "description": "a daily window HH:MM-HH:MM, start inclusive, end exclusive; may wrap midnight",
            }),
            ParamType::Thresholds => json!({
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": { "metric": name, "above": { "type": "number" } },
                    "required": ["metric", "above"],
                    "additionalProperties": false,
                },
            }),
            ParamType::List => json!({ "type": "array" }),
            ParamType::Map => json!({ "type": "object" }),
            ParamType::Any => json!({}),
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = TYPES
            .iter()
            .find(|(_, t)| t == self)
            .map(|(n, _)| *n)
            .unwrap_or("any");
        f.write_str(name)
    }
}

/// One declared parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    /// Its type.
    pub ty: ParamType,
    /// Whether `with:` must give it.
    pub required: bool,
}

impl FromStr for ParamSpec {
    type Err = UnknownParamType;
    /// `"duration"` is required; `"duration?"` is optional.
    fn from_str(s: &str) -> Result<Self, UnknownParamType> {
        let (name, required) = match s.strip_suffix('?') {
            Some(n) => (n, false),
            None => (s, true),
        };
        Ok(Self {
            ty: name.trim().parse()?,
            required,
        })
    }
}

/// A plugin's declared parameters. A plugin that declares none accepts any `with:` as is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamSchema {
    /// Declared parameters by name; `None` when the plugin declares no schema.
    pub params: Option<BTreeMap<String, ParamSpec>>,
}

/// What the checker needs to know about the rest of the configuration.
pub trait Names {
    /// Whether a lane of this name exists.
    fn is_lane(&self, name: &str) -> bool;
    /// Whether a metric of this name can be read.
    fn is_metric(&self, name: &str) -> bool;
}

/// A problem with one parameter; `key` is `None` when the whole `with:` is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamProblem {
    /// The parameter, if one is concerned.
    pub key: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

impl ParamSchema {
    /// The JSON Schema of a `with:` this plugin accepts: each declared parameter by its type,
    /// the required ones required, nothing else allowed. `None` when the plugin declares no
    /// schema (any `with:` is taken as is).
    pub fn json_schema(&self) -> Option<serde_json::Value> {
        let specs = self.params.as_ref()?;
        let properties: serde_json::Map<String, Value> = specs
            .iter()
            .map(|(k, spec)| (k.clone(), spec.ty.json_schema()))
            .collect();
        let required: Vec<&String> = specs
            .iter()
            .filter(|(_, s)| s.required)
            .map(|(k, _)| k)
            .collect();
        Some(serde_json::json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        }))
    }

    /// Checks `with` and returns it normalised (durations in milliseconds).
    pub fn check(
        &self,
        plugin: &str,
        with: &BTreeMap<String, Value>,
        names: &dyn Names,
    ) -> Result<Value, Vec<ParamProblem>> {
        let Some(params) = &self.params else {
            return Ok(Value::Object(with.clone().into_iter().collect()));
        };
        let mut problems = Vec::new();
        let mut out = serde_json::Map::new();
        for (key, value) in with {
            match params.get(key) {
                None => {
                    let known: Vec<&str> = params.keys().map(String::as_str).collect();
                    problems.push(ParamProblem {
                        key: Some(key.clone()),
                        message: format!(
                            "plugin `{plugin}` has no parameter `{key}` (it takes: {})",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    });
                }
                Some(spec) => match normalise(spec.ty, value, names) {
                    Ok(v) => {
                        out.insert(key.clone(), v);
                    }
                    Err(msg) => problems.push(ParamProblem {
                        key: Some(key.clone()),
                        message: format!("plugin `{plugin}` parameter `{key}`: {msg}"),
                    }),
                },
            }
        }
        for (key, spec) in params {
            if spec.required && !with.contains_key(key) {
                problems.push(ParamProblem {
                    key: None,
                    message: format!(
                        "plugin `{plugin}` needs parameter `{key}` ({}); add it under `with:`",
                        spec.ty
                    ),
                });
            }
        }
        if problems.is_empty() {
            Ok(Value::Object(out))
        } else {
            Err(problems)
        }
    }
}

impl ParamSchema {
    /// What checked `params` name in typed parameters (`url`, `metric`, `thresholds`): the
    /// gate may reach exactly those, because its lane's author wrote them.
    pub fn grants_named(&self, params: &Value) -> crate::model::grants::Grants {
        let mut grants = crate::model::grants::Grants::default();
        let Some(specs) = &self.params else {
            return grants;
        };
        for (key, spec) in specs {
            match (spec.ty, params.get(key)) {
                (ParamType::Url, Some(Value::String(url))) => {
                    if let Ok(g) = crate::model::grants::HttpGrant::parse(url) {
                        grants.http.push(g);
                    }
                }
                (ParamType::Metric, Some(Value::String(m))) => grants.metrics.push(m.clone()),
                (ParamType::Thresholds, Some(Value::Array(list))) => grants.metrics.extend(
                    list.iter()
                        .filter_map(|t| t.get("metric")?.as_str())
                        .map(str::to_string),
                ),
                _ => {}
            }
        }
        grants
    }

    /// The windows of `window` parameters of checked `params`, as minutes of the day (start,
    /// end): what the lint and the calendar know of a gate without running it.
    pub fn windows_named(&self, params: &Value) -> Vec<(u32, u32)> {
        let Some(specs) = &self.params else {
            return Vec::new();
        };
        specs
            .iter()
            .filter(|(_, spec)| spec.ty == ParamType::Window)
            .filter_map(|(key, _)| parse_window(params.get(key)?.as_str()?).ok())
            .collect()
    }

    /// The lanes named by `lane` and `lanes` parameters of checked `params`: the lanes whose
    /// state the gate reads, so a pass decides them first.
    pub fn lanes_named(&self, params: &Value) -> Vec<String> {
        let Some(specs) = &self.params else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, spec) in specs {
            match (spec.ty, params.get(key)) {
                (ParamType::Lane, Some(Value::String(lane))) => out.push(lane.clone()),
                (ParamType::Lanes, Some(Value::Array(lanes))) => {
                    out.extend(lanes.iter().filter_map(Value::as_str).map(str::to_string))
                }
                _ => {}
            }
        }
        out
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn normalise(ty: ParamType, v: &Value, names: &dyn Names) -> Result<Value, String> {
    let want = |what: &str| format!("expected {what}, found {}", type_name(v));
    match ty {
        ParamType::Any => Ok(v.clone()),
        ParamType::String => v
            .as_str()
            .map(|_| v.clone())
            .ok_or_else(|| want("a string")),
        ParamType::Int => v
            .as_i64()
            .map(|_| v.clone())
            .ok_or_else(|| want("an integer")),
        ParamType::Number => v
            .as_f64()
            .map(|_| v.clone())
            .ok_or_else(|| want("a number")),
        ParamType::Bool => v
            .as_bool()
            .map(|_| v.clone())
            .ok_or_else(|| want("true or false")),
        ParamType::List => v
            .as_array()
            .map(|_| v.clone())
            .ok_or_else(|| want("a list")),
        ParamType::Map => v
            .as_object()
            .map(|_| v.clone())
            .ok_or_else(|| want("a mapping")),
        ParamType::Duration => {
            let s = v.as_str().ok_or_else(|| want("a duration such as 36h"))?;
            let d = duration::parse(s).map_err(|e| e.to_string())?;
            Ok(Value::from(
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            ))
        }
        ParamType::Lane => {
            let s = v.as_str().ok_or_else(|| want("a lane name"))?;
            lane(s, names)
        }
        ParamType::Lanes => {
            let list = v.as_array().ok_or_else(|| want("a list of lane names"))?;
            let lanes: Result<Vec<Value>, String> = list
                .iter()
                .map(|item| {
                    item.as_str()
                        .ok_or_else(|| format!("expected lane names, found {}", type_name(item)))
                        .and_then(|s| lane(s, names))
                })
                .collect();
            Ok(Value::Array(lanes?))
        }
        ParamType::Metric => {
            let s = v.as_str().ok_or_else(|| want("a metric name"))?;
            metric(s, names)
        }
        ParamType::Url => {
            let s = v.as_str().ok_or_else(|| want("a URL"))?;
            if s.starts_with("http://") || s.starts_with("https://") {
                Ok(v.clone())
            } else {
                Err(format!("`{s}` is not an http:// or https:// URL"))
            }
        }
        ParamType::Window => {
            let s = v
                .as_str()
                .ok_or_else(|| want("a window such as \"01:00-06:00\""))?;
            parse_window(s).map_err(|e| e.to_string())?;
            Ok(v.clone())
        }
        ParamType::Thresholds => {
            let list = v
                .as_array()
                .ok_or_else(|| want("a list of { metric: NAME, above: NUMBER }"))?;
            for item in list {
                let obj = item.as_object().ok_or_else(|| {
                    "each threshold is { metric: NAME, above: NUMBER }".to_string()
                })?;
                for k in obj.keys() {
                    if k != "metric" && k != "above" {
                        return Err(format!(
                            "threshold key `{k}` is unknown (keys: metric, above)"
                        ));
                    }
                }
                let name = obj
                    .get("metric")
                    .and_then(Value::as_str)
                    .ok_or("each threshold needs `metric: NAME`")?;
                metric(name, names)?;
                obj.get("above")
                    .and_then(Value::as_f64)
                    .ok_or("each threshold needs `above: NUMBER`")?;
            }
            Ok(v.clone())
        }
    }
}

fn lane(s: &str, names: &dyn Names) -> Result<Value, String> {
    if names.is_lane(s) {
        Ok(Value::from(s))
    } else {
        Err(format!("no lane named `{s}` in rules/"))
    }
}

fn metric(s: &str, names: &dyn Names) -> Result<Value, String> {
    if names.is_metric(s) {
        Ok(Value::from(s))
    } else {
        Err(format!(
            "unknown metric `{s}`; define it under `metrics:` in lanekeeper.yaml, or use a built-in (psi.io.some.avg10, loadavg.1, …)"
        ))
    }
}

/// Why a daily window did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// Not `HH:MM-HH:MM`.
    #[error("`{0}` is not a window; write HH:MM-HH:MM, e.g. \"01:00-06:00\"")]
    NotAWindow(String),
    /// Start equals end.
    #[error("window `{0}` is empty (start equals end)")]
    Empty(String),
}

/// Parses `HH:MM-HH:MM` into minutes of the day (start inclusive, end exclusive).
pub fn parse_window(s: &str) -> Result<(u32, u32), WindowError> {
    let bad = || WindowError::NotAWindow(s.to_string());
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let hm = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        // `then`, not `then_some`: the minutes of an hour past 23 may not fit in a u32.
        (h < 24 && m < 60 && t.trim().len() == 5).then(|| h * 60 + m)
    };
    let (start, end) = (hm(a).ok_or_else(bad)?, hm(b).ok_or_else(bad)?);
    if start == end {
        return Err(WindowError::Empty(s.to_string()));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `schedule` fuzz target: the hour was multiplied before it was checked.
    #[test]
    fn a_window_with_a_huge_hour_is_refused_not_an_overflow() {
        for text in [
            "4294967295:00-06:00",
            "01:00-4294967295:00",
            "99999:99-00:00",
        ] {
            assert_eq!(
                parse_window(text),
                Err(WindowError::NotAWindow(text.to_string()))
            );
        }
        assert_eq!(parse_window("22:00-04:00"), Ok((1320, 240)));
    }
}
