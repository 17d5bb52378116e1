//! The OpenAPI 3.1 description every service serves at `GET /openapi.json` and commits as
//! `docs/openapi/<service>.json`.
//!
//! A service derives `utoipa::OpenApi` over its annotated handlers (`#[utoipa::path]`) and
//! passes the result to [`complete`], which adds what every service shares, so that no
//! handler has to repeat it:
//! - the operational endpoints (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`);
//! - the problem schema ([`Problem`], `application/problem+json`) on every error response,
//!   and the error responses the kit itself produces: 400/413/415 for an operation with a
//!   body, 400 for one with parameters, 401 (with its `WWW-Authenticate` challenge) and 503
//!   `auth-unavailable` for one that needs a token, 408, 500 and 503 `overloaded` for all;
//! - the `bearer` security scheme.
//!
//! Its tests' helpers hold a service to its description: [`undocumented_routes`] lists the
//! routes of a router that the description lacks, [`body_fields_mismatch`] and
//! [`query_parameters_mismatch`] compare a request type's schema with what its
//! [`FromBody`] / [`FromQuery`] reader accepts, and [`stale_file`] compares the committed
//! file with the generated description.

use crate::error::{FieldError, PROBLEM_JSON, Problem, ProblemType};
use crate::fields::{FromBody, FromQuery};
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get};
use std::collections::BTreeSet;
use std::path::Path;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{
    AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    Content, HttpMethod, OpenApi, PathItem, Ref, RefOr, Response, ResponseBuilder,
};
use utoipa::{IntoParams, PartialSchema, ToSchema};

/// The name of the bearer-token security scheme operations refer to.
pub const BEARER: &str = "bearer";

/// The methods a path item can hold, with how a route's `Debug` spells them.
const METHODS: [(&str, HttpMethod); 7] = [
    ("get", HttpMethod::Get),
    ("post", HttpMethod::Post),
    ("put", HttpMethod::Put),
    ("patch", HttpMethod::Patch),
    ("delete", HttpMethod::Delete),
    ("options", HttpMethod::Options),
    ("trace", HttpMethod::Trace),
];

/// The operational endpoints of [`crate::http::service_router`] and `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    crate::http::healthz,
    crate::http::readyz,
    crate::http::metrics_text,
    openapi_json
))]
struct Operational;

/// The description of this service's HTTP API: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This OpenAPI 3.1 description", content_type = "application/json", body = Object))
)]
#[allow(dead_code)] // Only its `#[utoipa::path]` is used: `serve` answers the route.
async fn openapi_json() {}

/// `document` completed with what every service shares (see the module documentation):
/// `service` names it, `problem_types` are the service's own beyond [`ProblemType::SHARED`].
pub fn complete(mut document: OpenApi, service: &str, problem_types: &[ProblemType]) -> OpenApi {
    document.info.title = service.to_string();
    document.info.version = env!("CARGO_PKG_VERSION").to_string();
    document.info.description = Some(description(problem_types));
    document.info.license = None;
    document.info.contact = None;
    document.merge(<Operational as utoipa::OpenApi>::openapi());
    let components = document.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert("Problem".to_string(), Problem::schema());
    components
        .schemas
        .insert("FieldError".to_string(), FieldError::schema());
    components.security_schemes.insert(
        BEARER.to_string(),
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "An EdDSA JWT from user-service's POST /api/users/login",
                ))
                .build(),
        ),
    );
    let mut bodies = BTreeSet::new();
    for item in document.paths.paths.values_mut() {
        for (_, operation) in operations_mut(item) {
            add_problem_responses(operation);
            bodies.extend(body_schema_names(operation));
        }
    }
    // Unknown body members are refused (crate::fields), which JSON Schema says so.
    for name in bodies {
        let schema = document
            .components
            .as_mut()
            .and_then(|components| components.schemas.get_mut(&name));
        if let Some(RefOr::T(Schema::Object(object))) = schema {
            object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        }
    }
    document
}

/// The component names of the schemas of `operation`'s request body.
fn body_schema_names(operation: &Operation) -> Vec<String> {
    let Some(body) = &operation.request_body else {
        return Vec::new();
    };
    body.content
        .values()
        .filter_map(|content| match &content.schema {
            Some(RefOr::Ref(reference)) => reference
                .ref_location
                .strip_prefix("#/components/schemas/")
                .map(str::to_string),
            _ => None,
        })
        .collect()
}

/// The top of the description: the error format and where the problem types are listed.
fn description(problem_types: &[ProblemType]) -> String {
    let mut slugs: Vec<&str> = ProblemType::SHARED
        .iter()
        .chain(problem_types)
        .map(|problem| problem.slug())
        .collect();
    slugs.sort_unstable();
    format!(
        "Every error is an RFC 9457 problem (`{PROBLEM_JSON}`, schema `Problem`): `type` is \
         `{base}<name>` for one of: {names}; `errors` lists every invalid request field. \
         docs/services.md describes each problem type and the request rules.",
        base = crate::error::PROBLEM_TYPE_BASE,
        names = slugs.join(", "),
    )
}

/// The operations of `item`, by method.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, &mut item.get),
        (HttpMethod::Post, &mut item.post),
        (HttpMethod::Put, &mut item.put),
        (HttpMethod::Patch, &mut item.patch),
        (HttpMethod::Delete, &mut item.delete),
        (HttpMethod::Options, &mut item.options),
        (HttpMethod::Head, &mut item.head),
        (HttpMethod::Trace, &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|operation| (method, operation)))
}

/// The operations of `item`, by method.
fn operations(item: &PathItem) -> impl Iterator<Item = (HttpMethod, &Operation)> {
    [
        (HttpMethod::Get, &item.get),
        (HttpMethod::Post, &item.post),
        (HttpMethod::Put, &item.put),
        (HttpMethod::Patch, &item.patch),
        (HttpMethod::Delete, &item.delete),
        (HttpMethod::Options, &item.options),
        (HttpMethod::Head, &item.head),
        (HttpMethod::Trace, &item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_ref().map(|operation| (method, operation)))
}

/// Adds the kit's error responses to `operation` and the problem schema to every error
/// response the handler declared without a body.
fn add_problem_responses(operation: &mut Operation) {
    let has_body = operation.request_body.is_some();
    let has_parameters = operation
        .parameters
        .as_ref()
        .is_some_and(|parameters| !parameters.is_empty());
    let secured = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    let mut kit: Vec<(u16, Vec<ProblemType>)> = Vec::new();
    if has_body {
        kit.push((
            400,
            vec![
                ProblemType::MALFORMED_JSON,
                ProblemType::BODY_NOT_OBJECT,
                ProblemType::VALIDATION_FAILED,
            ],
        ));
        kit.push((413, vec![ProblemType::PAYLOAD_TOO_LARGE]));
        kit.push((415, vec![ProblemType::UNSUPPORTED_MEDIA_TYPE]));
    } else if has_parameters {
        kit.push((400, vec![ProblemType::VALIDATION_FAILED]));
    }
    if secured {
        kit.push((
            401,
            vec![ProblemType::UNAUTHENTICATED, ProblemType::INVALID_TOKEN],
        ));
    }
    kit.push((408, vec![ProblemType::REQUEST_TIMEOUT]));
    kit.push((500, vec![ProblemType::INTERNAL]));
    let mut unavailable = vec![ProblemType::OVERLOADED];
    if secured {
        unavailable.push(ProblemType::AUTH_UNAVAILABLE);
    }
    kit.push((503, unavailable));

    let responses = &mut operation.responses.responses;
    for (status, types) in kit {
        let names = types
            .iter()
            .map(|problem| format!("`{}`", problem.slug()))
            .collect::<Vec<_>>()
            .join(", ");
        match responses.get_mut(&status.to_string()) {
            // The handler's own wording first, then the kit's types of the same status.
            Some(RefOr::T(response)) => {
                response.description = format!("{}; also {names}", response.description);
            }
            Some(RefOr::Ref(_)) => {}
            None => {
                responses.insert(
                    status.to_string(),
                    RefOr::T(
                        ResponseBuilder::new()
                            .description(format!("Problem {names}"))
                            .build(),
                    ),
                );
            }
        }
    }
    for (status, response) in responses.iter_mut() {
        let is_error = status.starts_with('4') || status.starts_with('5');
        let RefOr::T(response) = response else {
            continue;
        };
        if is_error {
            response
                .content
                .entry(PROBLEM_JSON.to_string())
                .or_insert_with(|| Content::new(Some(Ref::from_schema_name("Problem"))));
        }
        if status == "401" {
            response
                .headers
                .entry("WWW-Authenticate".to_string())
                .or_insert_with(|| {
                    let mut challenge = utoipa::openapi::header::Header::new(
                        ObjectBuilder::new().schema_type(Type::String),
                    );
                    challenge.description = Some(
                        "Bearer realm=\"silo\", with error=\"invalid_token\" when a token was \
                         rejected"
                            .to_string(),
                    );
                    challenge
                });
        }
    }
}

/// A `GET` route answering `document` as JSON (serialised once).
pub fn serve<S: Clone + Send + Sync + 'static>(document: &OpenApi) -> MethodRouter<S> {
    let body = to_json(document);
    get(move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body).into_response() }
    })
}

/// `document` as the text of `docs/openapi/<service>.json`: pretty JSON, one final newline.
pub fn to_json(document: &OpenApi) -> String {
    let mut text = document
        .to_pretty_json()
        .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
    text.push('\n');
    text
}

/// Why the committed file at `path` is not `document`, or `None` when it is.
pub fn stale_file(document: &OpenApi, path: &Path) -> Option<String> {
    let generated = to_json(document);
    match std::fs::read_to_string(path) {
        Ok(committed) if committed == generated => None,
        Ok(_) => Some(format!(
            "{} differs from the description the code generates; run services/write-openapi",
            path.display()
        )),
        Err(error) => Some(format!(
            "{} cannot be read ({error}); run services/write-openapi",
            path.display()
        )),
    }
}

/// The routes of `router` as `METHOD /path` (`HEAD` of a `GET` left out), read from its
/// `Debug` output: axum has no other way to list them. Pass the router before `.layer()`
/// (layers hide a route's methods). A `Debug` format this does not understand yields no
/// routes, which the callers' tests treat as a failure.
pub fn routes_of<S>(router: &Router<S>) -> BTreeSet<String> {
    let text = format!("{router:?}");
    // Only the path router: the fallback router holds the fallback, not routes.
    let text = text.split("fallback_router").next().unwrap_or_default();
    let (Some(routes_at), Some(node_at)) = (text.find("routes: {"), text.find("node: Node")) else {
        return BTreeSet::new();
    };
    let (endpoints, node) = (&text[routes_at..node_at], &text[node_at..]);
    let mut routes = BTreeSet::new();
    for entry in node.split("RouteId(").skip(1) {
        let Some((id, rest)) = entry.split_once("): \"") else {
            continue;
        };
        let Some((path, _)) = rest.split_once('"') else {
            continue;
        };
        let Some(endpoint) = endpoints
            .split("RouteId(")
            .find_map(|entry| entry.strip_prefix(&format!("{id}): ")))
        else {
            continue;
        };
        for (name, method) in METHODS {
            let declared = endpoint
                .split_once(&format!(" {name}: "))
                .is_some_and(|(_, rest)| !rest.starts_with("None"));
            if declared {
                routes.insert(format!("{} {path}", method_name(&method)));
            }
        }
    }
    routes
}

/// The operations of `document` as `METHOD /path`.
pub fn operations_of(document: &OpenApi) -> BTreeSet<String> {
    document
        .paths
        .paths
        .iter()
        .flat_map(|(path, item)| {
            operations(item).map(move |(method, _)| format!("{} {path}", method_name(&method)))
        })
        .collect()
}

/// What is wrong with `document` as the description of `router`, in words: `known` (a route
/// the service certainly has, `"GET /path"`) not read from the router, routes missing from the
/// description, operations without a success or a problem response. Empty when all is well.
pub fn description_problems<S>(router: &Router<S>, document: &OpenApi, known: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let read = routes_of(router);
    if !read.contains(known) {
        problems.push(format!(
            "the routes could not be read ({known} missing): {read:?}"
        ));
    }
    problems.extend(
        undocumented_routes(router, document)
            .into_iter()
            .map(|route| format!("not in the description: {route}")),
    );
    problems.extend(
        incompletely_documented(document)
            .into_iter()
            .map(|operation| format!("no success or problem response: {operation}")),
    );
    problems
}

/// The routes of `router` ([`routes_of`]) that `document` does not describe.
pub fn undocumented_routes<S>(router: &Router<S>, document: &OpenApi) -> Vec<String> {
    let documented = operations_of(document);
    routes_of(router)
        .into_iter()
        .filter(|route| !documented.contains(route))
        .collect()
}

/// The operations of `document` that lack a success response, or an error response with
/// the problem schema.
pub fn incompletely_documented(document: &OpenApi) -> Vec<String> {
    let mut incomplete = Vec::new();
    for (path, item) in &document.paths.paths {
        for (method, operation) in operations(item) {
            let responses = &operation.responses.responses;
            let success = responses.keys().any(|status| status.starts_with('2'));
            let problems = responses.iter().any(|(status, response)| {
                !status.starts_with('2')
                    && matches!(response, RefOr::T(Response { content, .. })
                        if content.contains_key(PROBLEM_JSON))
            });
            if !success || !problems {
                incomplete.push(format!("{} {path}", method_name(&method)));
            }
        }
    }
    incomplete
}

/// How `T`'s schema and its [`FromBody::FIELDS`] disagree: the fields only one of them has.
pub fn body_fields_mismatch<T: FromBody + ToSchema>() -> Vec<String> {
    let documented: BTreeSet<String> = match T::schema() {
        RefOr::T(Schema::Object(object)) => object.properties.keys().cloned().collect(),
        _ => BTreeSet::new(),
    };
    mismatch(&documented, T::FIELDS)
}

/// How `T`'s query parameters and its [`FromQuery::PARAMETERS`] disagree.
pub fn query_parameters_mismatch<T: FromQuery + IntoParams>() -> Vec<String> {
    let documented: BTreeSet<String> = T::into_params(|| Some(ParameterIn::Query))
        .into_iter()
        .map(|parameter| parameter.name)
        .collect();
    mismatch(&documented, T::PARAMETERS)
}

fn mismatch(documented: &BTreeSet<String>, accepted: &[&str]) -> Vec<String> {
    let accepted: BTreeSet<String> = accepted.iter().map(|name| name.to_string()).collect();
    let mut differences: Vec<String> = accepted
        .difference(documented)
        .map(|name| format!("{name} is accepted but not documented"))
        .collect();
    differences.extend(
        documented
            .difference(&accepted)
            .map(|name| format!("{name} is documented but not accepted")),
    );
    differences
}

/// An amount as [`crate::fields`] reads it: a JSON number, or a string in plain decimal
/// notation; both exact (use as `#[schema(schema_with = silo_kit::openapi::amount)]`).
pub fn amount() -> Schema {
    Schema::OneOf(
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^-?[0-9]+(\.[0-9]+)?$"))
                    .examples([serde_json::json!("12.50")]),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .examples([serde_json::json!(12.5)]),
            )
            .description(Some(
                "A decimal amount: a JSON number (12.5, 1250e-2) or a string in plain decimal \
                 notation (\"12.50\"), read exactly from its digits",
            ))
            .build(),
    )
}

/// An amount as responses write it: a decimal string (`"12.50"`).
pub fn amount_string() -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::from(Type::String))
            .pattern(Some(r"^-?[0-9]+(\.[0-9]+)?$"))
            .examples([serde_json::json!("12.50")])
            .build(),
    )
}

fn method_name(method: &HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Patch => "PATCH",
        HttpMethod::Delete => "DELETE",
        HttpMethod::Options => "OPTIONS",
        HttpMethod::Head => "HEAD",
        HttpMethod::Trace => "TRACE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Operations, operational_routes};
    use crate::metrics::Metrics;
    use crate::readiness::Readiness;
    use axum::routing::post;

    async fn nothing() {}

    #[test]
    fn the_routes_of_a_router_are_read_with_their_methods() {
        let router: Router = Router::new()
            .route("/api/things", post(nothing).get(nothing))
            .route("/api/things/{id}", get(nothing).patch(nothing))
            .route("/api/things/{id}/cancel", post(nothing));
        assert_eq!(
            routes_of(&router).into_iter().collect::<Vec<_>>(),
            [
                "GET /api/things",
                "GET /api/things/{id}",
                "PATCH /api/things/{id}",
                "POST /api/things",
                "POST /api/things/{id}/cancel",
            ]
        );
    }

    #[tokio::test]
    async fn the_description_is_served_as_json() {
        use tower::ServiceExt;
        let document = complete(OpenApi::default(), "test", &[]);
        let router: Router = Router::new().route("/openapi.json", serve(&document));
        let response = router
            .oneshot(
                axum::http::Request::get("/openapi.json")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), axum::http::StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(body, to_json(&document).as_bytes());
    }

    #[test]
    fn every_operational_endpoint_is_described() {
        let operations = Operations::new(Metrics::new(), Readiness::new());
        let router = operational_routes(operations).route("/openapi.json", get(nothing));
        let document = complete(OpenApi::default(), "test", &[]);
        assert_eq!(routes_of(&router).len(), 4);
        assert_eq!(
            undocumented_routes(&router, &document),
            Vec::<String>::new()
        );
        assert_eq!(incompletely_documented(&document), Vec::<String>::new());
    }

    #[test]
    fn an_operation_with_a_body_and_a_token_documents_the_kits_problems() {
        /// A body.
        #[derive(utoipa::ToSchema)]
        #[allow(dead_code)]
        struct Thing {
            name: String,
        }
        #[utoipa::path(post, path = "/api/things", request_body = Thing,
            security(("bearer" = [])), responses((status = 201, description = "Created")))]
        #[allow(dead_code)]
        async fn create() {}
        #[derive(utoipa::OpenApi)]
        #[openapi(paths(create), components(schemas(Thing)))]
        struct Api;

        let document = complete(<Api as utoipa::OpenApi>::openapi(), "test", &[]);
        let value = serde_json::to_value(&document).unwrap();
        let responses = &value["paths"]["/api/things"]["post"]["responses"];
        for status in ["400", "401", "408", "413", "415", "500", "503"] {
            assert_eq!(
                responses[status]["content"][PROBLEM_JSON]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "{status}"
            );
        }
        assert!(responses["401"]["headers"]["WWW-Authenticate"].is_object());
        assert_eq!(value["openapi"], "3.1.0");
        assert_eq!(
            value["components"]["schemas"]["Thing"]["additionalProperties"], false,
            "unknown members are refused"
        );
        let problem = &value["components"]["schemas"]["Problem"];
        for member in ["type", "title", "status", "detail", "errors"] {
            assert!(problem["properties"][member].is_object(), "{member}");
        }
    }
}
