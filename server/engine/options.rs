//! A tracker's own options: one typed struct per tracker, parsed from the JSON keys of its
//! [`TrackerConfig`](super::TrackerConfig) when it starts, and described (name, type,
//! default, doc comment) from the struct's JSON Schema, so the CLI, the API and the
//! console learn them from the code rather than from a second list.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::TrackerError;

/// The options of one tracker. Derive `JsonSchema` and put `#[serde(default,
/// deny_unknown_fields)]` on the struct: its doc comments become the descriptions users
/// read, its `Default` the defaults.
pub trait TrackerOptions:
    Serialize + DeserializeOwned + Default + schemars::JsonSchema + Send + 'static
{
    /// Checks that field types cannot express; the error says what is wrong.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }

    /// Whether records are counted in the kernel, each standing for an interval's calls
    /// and holding their sums in its total fields (see `FieldInfo::total`).
    fn reports_totals(&self) -> bool {
        false
    }

    /// The total fields whose records (in a session of totals) each hold calls of one
    /// power-of-two bucket, as an in-kernel histogram's rows do: a histogram of them is
    /// exact, each record's calls binned at their mean.
    fn totals_per_log2_bucket(&self) -> &'static [&'static str] {
        &[]
    }

    /// The tracker's fields that no event has with these options (null in every one):
    /// the text table leaves them out by default.
    fn empty_fields(&self) -> Vec<&'static str> {
        Vec::new()
    }
}

/// The options of a tracker that takes none.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

impl TrackerOptions for NoOptions {}

/// One option as users see it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OptionInfo {
    pub name: String,
    /// The JSON type: `boolean`, `integer`, `string`, `enum`, or `[T]` for a list of T.
    pub type_name: String,
    /// The values an `enum` (or a list of them) takes; empty otherwise.
    pub values: Vec<String>,
    /// What the tracker does without it (`null`: it decides, as the description says).
    pub default: Value,
    pub description: String,
}

/// Describes the options `O` declares, in declaration order.
pub fn describe<O: TrackerOptions>() -> Vec<OptionInfo> {
    let schema = schemars::schema_for!(O);
    let root = schema.as_value();
    let Some(properties) = root.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, property)| {
            let (type_name, values) = type_of(root, property);
            OptionInfo {
                name: name.clone(),
                type_name,
                values,
                default: property.get("default").cloned().unwrap_or(Value::Null),
                description: property
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .replace('\n', " "),
            }
        })
        .collect()
}

/// Parses a tracker's options; an option it does not declare is an error that lists the
/// ones it does, never silently ignored.
pub fn parse<O: TrackerOptions>(
    tracker: &str,
    options: &Map<String, Value>,
) -> Result<O, TrackerError> {
    let declared = describe::<O>();
    if let Some(unknown) = options
        .keys()
        .find(|key| !declared.iter().any(|option| &option.name == *key))
    {
        let takes: Vec<&str> = declared.iter().map(|o| o.name.as_str()).collect();
        return Err(TrackerError::Config(format!(
            "option `{unknown}` does not apply to the {tracker} tracker (it takes: {})",
            if takes.is_empty() {
                "none".to_string()
            } else {
                takes.join(", ")
            }
        )));
    }
    let parsed: O = serde_json::from_value(Value::Object(options.clone()))
        .map_err(|e| TrackerError::Config(format!("{tracker} tracker options: {e}")))?;
    parsed.check().map_err(TrackerError::Config)?;
    Ok(parsed)
}

/// The user-facing type of a schema node, and its enum values.
fn type_of(root: &Value, node: &Value) -> (String, Vec<String>) {
    let node = resolve(root, node);
    if let Some(items) = node.get("items") {
        let (item, values) = type_of(root, items);
        return (format!("[{item}]"), values);
    }
    let values = enum_values(node);
    if !values.is_empty() {
        return ("enum".to_string(), values);
    }
    let type_name = match node.get("type") {
        Some(Value::String(t)) => t.clone(),
        // `Option<T>` is `[T, "null"]`.
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null")
            .to_string(),
        _ => "json".to_string(),
    };
    (type_name, Vec::new())
}

/// Follows a `$ref` to the definition it names, and an `Option`'s `anyOf [T, null]` to T.
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    if let Some(name) = node
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
    {
        if let Some(def) = root.get("$defs").and_then(|defs| defs.get(name)) {
            return resolve(root, def);
        }
    }
    if let Some(Value::Array(any)) = node.get("anyOf") {
        if let Some(inner) = any.iter().find(|n| n.get("type") != Some(&"null".into())) {
            return resolve(root, inner);
        }
    }
    node
}

/// An enum's values: `enum: [...]`, or `oneOf` of documented `const`s.
fn enum_values(node: &Value) -> Vec<String> {
    let names = |v: &Value| v.as_str().map(str::to_string);
    if let Some(Value::Array(values)) = node.get("enum") {
        return values.iter().filter_map(names).collect();
    }
    match node.get("oneOf") {
        Some(Value::Array(variants)) => variants
            .iter()
            .filter_map(|v| v.get("const").and_then(names))
            .collect(),
        _ => Vec::new(),
    }
}
