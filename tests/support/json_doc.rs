//! The JSON shapes docs/JSON.md documents, and the check of output against them.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Type name -> field -> allowed JSON kinds ("string", "null", ...), from docs/JSON.md.
pub fn documented() -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/JSON.md")).unwrap();
    let mut types = BTreeMap::new();
    for section in doc.split("\n### `").skip(1) {
        let name = section.split('`').next().unwrap().to_string();
        let mut fields = BTreeMap::new();
        for row in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let field = cells[1].trim_matches('`').to_string();
            let kinds = cells[2].split(" or ").map(str::to_string).collect();
            fields.insert(field, kinds);
        }
        fields.insert("type".into(), vec!["string".into()]);
        fields.insert("version".into(), vec!["integer".into()]);
        types.insert(name, fields);
    }
    types
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Check `objects` against the documentation; returns the types seen.
pub fn check(objects: &[Value], what: &str) -> BTreeSet<String> {
    let docs = documented();
    let mut seen = BTreeSet::new();
    for object in objects {
        let kind = object["type"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no type: {object}"));
        let mut fields = docs
            .get(kind)
            .unwrap_or_else(|| panic!("{what}: type '{kind}' is not in docs/JSON.md"))
            .clone();
        // An audit event has the fields every event has, and those of its kind.
        if kind == "audit_event" {
            let sub = format!("audit_event.{}", object["event"].as_str().unwrap_or("?"));
            let own = docs
                .get(&sub)
                .unwrap_or_else(|| panic!("{what}: '{sub}' is not in docs/JSON.md"));
            fields.extend(own.clone());
            seen.insert(sub);
        }
        let fields = &fields;
        assert_eq!(object["version"], 1, "{what}: {object}");
        let map = object.as_object().unwrap();
        for (field, kinds) in fields {
            let value = map.get(field).unwrap_or_else(|| {
                panic!("{what}: {kind} lacks documented field {field}: {object}")
            });
            assert!(
                kinds.iter().any(|k| k == kind_of(value)),
                "{what}: {kind}.{field} is {} ({value}), documented as {kinds:?}",
                kind_of(value)
            );
        }
        for field in map.keys() {
            assert!(
                fields.contains_key(field),
                "{what}: {kind}.{field} is not documented"
            );
        }
        seen.insert(kind.to_string());
    }
    seen
}
