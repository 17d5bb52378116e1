//! The CRD schemas as the API server publishes them. A 1.20 API server leaves the properties of
//! a `nullable: true` object (and the type of any `nullable: true` field) out of the OpenAPI
//! document `kubectl explain` reads, so `kubectl explain database.spec.server.dedicated` would
//! show nothing. The generated schemas mark every optional field `nullable`; this takes the
//! mark off. Nothing is lost: the operator never writes `null`, and the API server prunes a
//! `null` a user writes into a field that is not nullable, as if the field were absent.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// `crd` with `nullable` taken off every schema in it.
pub fn without_nullable(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let mut value = serde_json::to_value(&crd).unwrap_or_default();
    if let Some(versions) = value["spec"]["versions"].as_array_mut() {
        for version in versions {
            if let Some(schema) = version.pointer_mut("/schema/openAPIV3Schema") {
                strip(schema);
            }
        }
    }
    serde_json::from_value(value).unwrap_or(crd)
}

/// Removes the `nullable` keyword from `schema` and every schema nested in it (and only the
/// keyword: a property that happens to be called `nullable` is kept).
fn strip(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    object.remove("nullable");
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        properties.values_mut().for_each(strip);
    }
    for keyword in ["items", "additionalProperties", "not"] {
        if let Some(nested) = object.get_mut(keyword) {
            strip(nested);
        }
    }
    for keyword in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(schemas)) = object.get_mut(keyword) {
            schemas.iter_mut().for_each(strip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_schema_of_a_crd_is_nullable_and_fields_named_nullable_survive() {
        let mut schema = serde_json::json!({
            "type": "object",
            "properties": {
                "dedicated": { "type": "object", "nullable": true, "properties": {
                    "nullable": { "type": "boolean" },
                    "tags": { "type": "array", "nullable": true, "items": { "type": "string", "nullable": true } },
                    "labels": { "type": "object", "additionalProperties": { "type": "string", "nullable": true } },
                } },
                "either": { "anyOf": [ { "type": "integer", "nullable": true }, { "type": "string" } ] },
            },
        });
        strip(&mut schema);
        let text = schema.to_string();
        assert!(!text.contains("\"nullable\":true"), "{text}");
        assert_eq!(
            schema["properties"]["dedicated"]["properties"]["nullable"]["type"],
            "boolean"
        );
        for crd in crate::crd::all_crds() {
            let text = serde_json::to_string(&crd).unwrap();
            assert!(
                !text.contains("\"nullable\":true"),
                "{:?}",
                crd.metadata.name
            );
        }
    }
}
