//! Checks of a `Service` spec beyond the OpenAPI schema (the 1.20 API server has no CEL). Each
//! failure names the field and says what would be accepted.

use std::collections::BTreeSet;

use kube::ResourceExt;

use super::ServiceError;
use crate::build::microservice::{Broker, BrokerUrl, url_variable};
use crate::crd::{
    BrokerSpec, DEFAULT_BROKER_PORT, DatabaseSource, DatabaseTemplate, ProbesSpec, Service,
    ServiceEnvVar,
};
use crate::image;
use crate::validate::{is_dns_label, is_dns_subdomain};

/// Where a valid service's database comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum DatabaseChoice {
    /// An existing `Database` of the namespace.
    Ref(String),
    /// A `Database` the operator creates from this template.
    Template(Box<DatabaseTemplate>),
}

/// A `Service` whose spec passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidService {
    /// Container image.
    pub image: String,
    /// Port.
    pub port: u16,
    /// Pods.
    pub replicas: i32,
    /// Extra environment.
    pub env: Vec<ServiceEnvVar>,
    /// Probe paths.
    pub probes: ProbesSpec,
    /// Its database, if any.
    pub database: Option<DatabaseChoice>,
    /// Dependencies as (namespace, name), in spec order.
    pub dependencies: Vec<(String, String)>,
    /// Broker.
    pub broker: Option<Broker>,
}

fn invalid(message: String) -> ServiceError {
    ServiceError::InvalidSpec(message)
}

/// Validates `service`'s own spec (what it names is checked when it is looked up).
pub fn service(service: &Service) -> Result<ValidService, ServiceError> {
    let spec = &service.spec;
    let name = service.name_any();
    if !is_dns_1035_label(&name) {
        return Err(invalid(format!(
            "metadata.name {name:?} must be a DNS-1035 label (lower-case letters, digits and '-', starting with a letter, at most 63 characters): it names the service's ClusterIP Service"
        )));
    }
    if let Err(why) = image::check_reference(&spec.image) {
        return Err(invalid(format!(
            "spec.image {:?} is not an image reference such as registry.example.com/shop/user-service:1.0: it {why}",
            spec.image
        )));
    }
    let port = tcp_port(spec.port, "spec.port")?;
    if spec.replicas < 0 {
        return Err(invalid(format!(
            "spec.replicas {} must not be negative",
            spec.replicas
        )));
    }
    probe_paths(&spec.probes)?;
    let database = spec.database.as_ref().map(database_choice).transpose()?;
    let own_namespace = service.namespace().unwrap_or_default();
    let dependencies = dependencies(service, &own_namespace)?;
    let broker = spec.broker.as_ref().map(broker).transpose()?;
    let mut injected = vec!["PORT".to_string()];
    if database.is_some() {
        injected.push("DATABASE_URL".into());
    }
    if broker.is_some() {
        injected.push("BROKER_URL".into());
    }
    injected.extend(dependencies.iter().map(|(_, name)| url_variable(name)));
    env(&spec.env, &injected)?;
    Ok(ValidService {
        image: spec.image.clone(),
        port,
        replicas: spec.replicas,
        env: spec.env.clone(),
        probes: spec.probes.clone(),
        database,
        dependencies,
        broker,
    })
}

/// Kubernetes' `IsDNS1035Label`, which Service names must be.
fn is_dns_1035_label(text: &str) -> bool {
    is_dns_label(text) && text.starts_with(|c: char| c.is_ascii_lowercase())
}

fn tcp_port(port: i32, field: &str) -> Result<u16, ServiceError> {
    u16::try_from(port).ok().filter(|p| *p != 0).ok_or_else(|| {
        invalid(format!(
            "{field} {port} is out of range: a TCP port is 1 to 65535"
        ))
    })
}

fn probe_paths(probes: &ProbesSpec) -> Result<(), ServiceError> {
    for (field, path) in [
        ("spec.probes.livenessPath", &probes.liveness_path),
        ("spec.probes.readinessPath", &probes.readiness_path),
    ] {
        if !path.starts_with('/') {
            return Err(invalid(format!(
                "{field} {path:?} must be an HTTP path starting with '/'"
            )));
        }
    }
    Ok(())
}

fn database_choice(source: &DatabaseSource) -> Result<DatabaseChoice, ServiceError> {
    match (&source.reference, &source.template) {
        (Some(name), None) if is_dns_subdomain(name) => Ok(DatabaseChoice::Ref(name.clone())),
        (Some(name), None) => Err(invalid(format!(
            "spec.database.ref {name:?} is not a valid Database name"
        ))),
        (None, Some(template)) => Ok(DatabaseChoice::Template(Box::new(template.clone()))),
        _ => Err(invalid(
            "spec.database must set exactly one of ref (a Database of this namespace) or template"
                .into(),
        )),
    }
}

/// The dependencies as (namespace, name): valid names, not this service, none twice, and no two
/// of the same name (their `<NAME>_URL` variables would be one).
fn dependencies(
    service: &Service,
    own_namespace: &str,
) -> Result<Vec<(String, String)>, ServiceError> {
    let own_name = service.name_any();
    let mut names = BTreeSet::new();
    let mut found = Vec::new();
    for (i, dependency) in service.spec.depends_on.iter().enumerate() {
        let field = format!("spec.dependsOn[{i}]");
        let namespace = dependency.namespace_or(own_namespace).to_string();
        if !is_dns_1035_label(&dependency.service) {
            return Err(invalid(format!(
                "{field}.service {:?} is not a valid Service name",
                dependency.service
            )));
        }
        if !is_dns_label(&namespace) {
            return Err(invalid(format!(
                "{field}.namespace {namespace:?} is not a valid namespace name"
            )));
        }
        if dependency.service == own_name && namespace == own_namespace {
            return Err(invalid(format!(
                "{field} names this service itself; a service needs no permission to call itself"
            )));
        }
        if !names.insert(dependency.service.clone()) {
            return Err(invalid(format!(
                "{field}: a second dependency named {}; each becomes the variable {}, so names must differ",
                dependency.service,
                url_variable(&dependency.service)
            )));
        }
        found.push((namespace, dependency.service.clone()));
    }
    Ok(found)
}

fn broker(spec: &BrokerSpec) -> Result<Broker, ServiceError> {
    let explicit_port = spec
        .port
        .map(|port| tcp_port(port, "spec.broker.port"))
        .transpose()?;
    match (&spec.url, &spec.secret_ref) {
        (Some(url), None) => {
            let from_url = url_port(url).map_err(|why| {
                invalid(format!(
                    "spec.broker.url {url:?} is not a URL such as nats://nats.messaging.svc:4222: {why}"
                ))
            })?;
            let default = u16::try_from(DEFAULT_BROKER_PORT).unwrap_or(4222);
            Ok(Broker {
                url: BrokerUrl::Literal(url.clone()),
                port: explicit_port.or(from_url).unwrap_or(default),
            })
        }
        (None, Some(key)) if is_dns_subdomain(&key.name) && !key.key.is_empty() => Ok(Broker {
            url: BrokerUrl::Secret(key.clone()),
            port: explicit_port.unwrap_or(u16::try_from(DEFAULT_BROKER_PORT).unwrap_or(4222)),
        }),
        (None, Some(key)) => Err(invalid(format!(
            "spec.broker.secretRef must name a Secret and a key (got name {:?}, key {:?})",
            key.name, key.key
        ))),
        _ => Err(invalid(
            "spec.broker must set exactly one of url or secretRef".into(),
        )),
    }
}

/// The port of `scheme://[user[:password]@]host[:port][/path]`, if it names one.
fn url_port(url: &str) -> Result<Option<u16>, String> {
    let (_, rest) = url
        .split_once("://")
        .ok_or_else(|| "it has no scheme".to_string())?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.is_empty() {
        return Err("it has no host".into());
    }
    // An IPv6 address is bracketed: only a ':' after the bracket starts a port.
    let port_text = match host_port.rsplit_once(']') {
        Some((_, after)) => after.strip_prefix(':'),
        None => host_port.rsplit_once(':').map(|(_, port)| port),
    };
    match port_text {
        None => Ok(None),
        Some(text) => text
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .map(Some)
            .ok_or_else(|| format!("port {text:?} is not 1 to 65535")),
    }
}

/// `[-._a-zA-Z][-._a-zA-Z0-9]*`, what the API server accepts as an environment variable name.
fn is_env_name(name: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    name.chars().next().is_some_and(|c| !c.is_ascii_digit()) && name.chars().all(allowed)
}

fn env(vars: &[ServiceEnvVar], injected: &[String]) -> Result<(), ServiceError> {
    let mut seen = BTreeSet::new();
    for (i, var) in vars.iter().enumerate() {
        let field = format!("spec.env[{i}]");
        if !is_env_name(&var.name) {
            return Err(invalid(format!(
                "{field}.name {:?} is not a valid environment variable name (letters, digits, '_', '-', '.'; not starting with a digit)",
                var.name
            )));
        }
        if injected.contains(&var.name) {
            return Err(invalid(format!(
                "{field}.name {} is set by the operator (from spec.port, spec.database, spec.broker or spec.dependsOn); remove it",
                var.name
            )));
        }
        if !seen.insert(var.name.as_str()) {
            return Err(invalid(format!(
                "{field}.name {} appears twice in spec.env; names must be unique",
                var.name
            )));
        }
        if var.value.is_some() == var.secret_key_ref.is_some() {
            return Err(invalid(format!(
                "{field} ({}) must set exactly one of value and secretKeyRef",
                var.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml_spec: &str) -> Service {
        serde_yaml::from_str(&format!(
            "apiVersion: silo.dev/v1alpha1\nkind: Service\n\
             metadata: {{name: booking-service, namespace: shop}}\nspec: {yaml_spec}\n"
        ))
        .unwrap()
    }

    fn refused(yaml_spec: &str) -> String {
        match super::service(&service(yaml_spec)) {
            Err(ServiceError::InvalidSpec(message)) => message,
            other => panic!("{yaml_spec} was not refused: {other:?}"),
        }
    }

    #[test]
    fn a_complete_spec_is_accepted() {
        let valid = super::service(&service(
            "{image: shop/booking:1, port: 9000, replicas: 2, database: {ref: bookings},\n\
             dependsOn: [{service: user-service}, {service: audit, namespace: ops}],\n\
             broker: {url: 'nats://nats.messaging.svc'},\n\
             env: [{name: RUST_LOG, value: info}, {name: TOKEN, secretKeyRef: {name: t, key: k}}]}",
        ))
        .unwrap();
        assert_eq!(valid.port, 9000);
        assert_eq!(valid.database, Some(DatabaseChoice::Ref("bookings".into())));
        assert_eq!(
            valid.dependencies,
            [
                ("shop".to_string(), "user-service".to_string()),
                ("ops".into(), "audit".into())
            ]
        );
        assert_eq!(valid.broker.unwrap().port, 4222);
    }

    #[test]
    fn each_invalid_field_is_named() {
        for (spec, field) in [
            ("{image: 'Shop/Booking:1'}", "spec.image"),
            (
                "{image: shop/booking:1, port: 70000}",
                "spec.port 70000 is out of range",
            ),
            ("{image: shop/booking:1, port: 0}", "spec.port 0"),
            ("{image: shop/booking:1, replicas: -1}", "spec.replicas"),
            (
                "{image: shop/booking:1, dependsOn: [{service: booking-service}]}",
                "spec.dependsOn[0] names this service itself",
            ),
            (
                "{image: shop/booking:1, dependsOn: [{service: a}, {service: a, namespace: x}]}",
                "spec.dependsOn[1]",
            ),
            (
                "{image: shop/booking:1, env: [{name: A, value: x}, {name: A, value: y}]}",
                "spec.env[1].name A appears twice",
            ),
            (
                "{image: shop/booking:1, database: {ref: users}, env: [{name: DATABASE_URL, value: x}]}",
                "spec.env[0].name DATABASE_URL is set by the operator",
            ),
            (
                "{image: shop/booking:1, dependsOn: [{service: user-service}], env: [{name: USER_SERVICE_URL, value: x}]}",
                "spec.env[0].name USER_SERVICE_URL",
            ),
            (
                "{image: shop/booking:1, env: [{name: A}]}",
                "spec.env[0] (A)",
            ),
            (
                "{image: shop/booking:1, database: {}}",
                "spec.database must set exactly one",
            ),
            (
                "{image: shop/booking:1, probes: {livenessPath: healthz}}",
                "spec.probes.livenessPath",
            ),
            (
                "{image: shop/booking:1, broker: {url: 'nats://nats:99999'}}",
                "spec.broker.url",
            ),
        ] {
            let message = refused(spec);
            assert!(message.contains(field), "{spec}: {message}");
        }
    }

    #[test]
    fn a_database_url_of_its_own_is_allowed_without_a_database() {
        super::service(&service(
            "{image: shop/booking:1, env: [{name: DATABASE_URL, value: 'postgres://elsewhere'}]}",
        ))
        .unwrap();
    }

    #[test]
    fn broker_ports_come_from_the_url_the_spec_or_the_nats_default() {
        assert_eq!(url_port("nats://nats.messaging.svc:4223"), Ok(Some(4223)));
        assert_eq!(url_port("nats://user:pw@nats:5222/x"), Ok(Some(5222)));
        assert_eq!(url_port("nats://[fd00::1]:4224"), Ok(Some(4224)));
        assert_eq!(url_port("nats://[fd00::1]"), Ok(None));
        assert_eq!(url_port("nats://nats"), Ok(None));
        assert!(url_port("nats.messaging.svc").is_err());
        let secret = broker(&BrokerSpec {
            secret_ref: Some(crate::crd::SecretKeyRef {
                name: "nats".into(),
                key: "url".into(),
            }),
            port: Some(7422),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(secret.port, 7422);
    }

    #[test]
    fn service_names_must_start_with_a_letter() {
        let mut numbered = service("{image: shop/booking:1}");
        numbered.metadata.name = Some("1booking".into());
        assert!(matches!(
            super::service(&numbered),
            Err(ServiceError::InvalidSpec(m)) if m.contains("metadata.name")
        ));
    }
}
