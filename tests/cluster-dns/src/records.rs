//! The DNS names a cluster's Services and Endpoints give, and their hosts-file form.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The names of the cluster's Services and endpoints, by the address they resolve to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterRecords {
    names_by_address: BTreeMap<IpAddr, BTreeSet<String>>,
}

impl ClusterRecords {
    /// Builds the records of every Service: a ClusterIP Service's names resolve to its
    /// cluster IPs, a headless Service's to the ready addresses of its Endpoints, and a ready
    /// endpoint address with a `hostname` (a StatefulSet pod) gets `<hostname>.<service>...`.
    /// Each name exists as `<...>.svc.<cluster_domain>` and as the host-side short form
    /// `<...>.svc`.
    pub fn build<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        endpoints: impl IntoIterator<Item = &'a Endpoints>,
        cluster_domain: &str,
    ) -> Self {
        let endpoints_by_service: HashMap<(&str, &str), &Endpoints> = endpoints
            .into_iter()
            .filter_map(|e| Some(((namespace_of(&e.metadata)?, name_of(&e.metadata)?), e)))
            .collect();
        let domain = cluster_domain.trim_matches('.');
        let mut records = Self::default();
        for service in services {
            let (Some(namespace), Some(name)) =
                (namespace_of(&service.metadata), name_of(&service.metadata))
            else {
                continue;
            };
            let ready = endpoints_by_service
                .get(&(namespace, name))
                .map(|endpoints| ready_addresses(endpoints))
                .unwrap_or_default();
            let service_names = dns_names(&format!("{name}.{namespace}"), domain);
            if is_headless(service) {
                let ips = ready.iter().filter_map(|address| address.ip.parse().ok());
                records.add_all(ips, &service_names);
            } else {
                records.add_all(cluster_ips(service), &service_names);
            }
            for address in ready {
                let hostname = address.hostname.as_deref().filter(|h| is_dns_label(h));
                if let (Some(hostname), Ok(ip)) = (hostname, address.ip.parse()) {
                    let names = dns_names(&format!("{hostname}.{name}.{namespace}"), domain);
                    records.add_all([ip], &names);
                }
            }
        }
        records
    }

    /// The addresses `name` resolves to, in ascending order.
    pub fn addresses_of(&self, name: &str) -> Vec<IpAddr> {
        self.names_by_address
            .iter()
            .filter(|(_, names)| names.contains(name))
            .map(|(address, _)| *address)
            .collect()
    }

    /// How many distinct names the records hold.
    pub fn name_count(&self) -> usize {
        let names: BTreeSet<&String> = self.names_by_address.values().flatten().collect();
        names.len()
    }

    /// The records as hosts-file lines (`<address> <name>...`), one per address in
    /// ascending order. The most specific name comes first because dnsmasq answers a
    /// reverse lookup with a line's first name: a StatefulSet pod's own name before its
    /// Service's, the `.svc.<domain>` form before the short one.
    pub fn to_hosts_lines(&self) -> String {
        let mut text = String::new();
        for (address, names) in &self.names_by_address {
            let mut names: Vec<&String> = names.iter().collect();
            names.sort_by_key(|name| (Reverse(name.split('.').count()), name.as_str()));
            text.push_str(&address.to_string());
            for name in names {
                text.push(' ');
                text.push_str(name);
            }
            text.push('\n');
        }
        text
    }

    fn add_all(&mut self, addresses: impl IntoIterator<Item = IpAddr>, names: &[String; 2]) {
        for address in addresses {
            self.names_by_address
                .entry(address)
                .or_default()
                .extend(names.iter().cloned());
        }
    }
}

/// `<prefix>.svc.<domain>` and the short `<prefix>.svc` the host resolves through /etc/hosts.
fn dns_names(prefix: &str, domain: &str) -> [String; 2] {
    [format!("{prefix}.svc.{domain}"), format!("{prefix}.svc")]
}

fn name_of(metadata: &ObjectMeta) -> Option<&str> {
    metadata.name.as_deref().filter(|name| is_dns_label(name))
}

fn namespace_of(metadata: &ObjectMeta) -> Option<&str> {
    metadata.namespace.as_deref().filter(|ns| is_dns_label(ns))
}

/// The API server validates these names already; checking again keeps anything that could
/// break a hosts-file line (spaces, `#`) out of it whatever the source.
fn is_dns_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn is_headless(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|spec| spec.cluster_ip.as_deref())
        == Some("None")
}

/// `clusterIPs` (both families on a dual-stack Service), else the single `clusterIP`;
/// an ExternalName Service has none.
fn cluster_ips(service: &Service) -> Vec<IpAddr> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    let chosen: Vec<&String> = match spec.cluster_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.iter().collect(),
        _ => spec.cluster_ip.iter().collect(),
    };
    chosen
        .into_iter()
        .filter_map(|ip| ip.parse().ok())
        .collect()
}

/// Ready addresses only: the endpoints controller already lists not-ready pods among them
/// when the Service sets `publishNotReadyAddresses`.
fn ready_addresses(endpoints: &Endpoints) -> Vec<&EndpointAddress> {
    endpoints
        .subsets
        .iter()
        .flatten()
        .flat_map(|subset| subset.addresses.iter().flatten())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::ClusterRecords;
    use k8s_openapi::api::core::v1::{
        EndpointAddress, EndpointSubset, Endpoints, Service, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::net::IpAddr;

    fn metadata(namespace: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        }
    }

    fn service(namespace: &str, name: &str, cluster_ip: Option<&str>) -> Service {
        Service {
            metadata: metadata(namespace, name),
            spec: Some(ServiceSpec {
                cluster_ip: cluster_ip.map(str::to_string),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn headless(namespace: &str, name: &str) -> Service {
        service(namespace, name, Some("None"))
    }

    fn address(ip: &str, hostname: Option<&str>) -> EndpointAddress {
        EndpointAddress {
            ip: ip.to_string(),
            hostname: hostname.map(str::to_string),
            ..EndpointAddress::default()
        }
    }

    /// Endpoints with one subset: `ready` addresses, and `not_ready` ones.
    fn endpoints(
        namespace: &str,
        name: &str,
        ready: Vec<EndpointAddress>,
        not_ready: Vec<EndpointAddress>,
    ) -> Endpoints {
        Endpoints {
            metadata: metadata(namespace, name),
            subsets: Some(vec![EndpointSubset {
                addresses: Some(ready),
                not_ready_addresses: Some(not_ready),
                ..EndpointSubset::default()
            }]),
        }
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter()
            .map(|ip| ip.parse().expect("test IPs are valid"))
            .collect()
    }

    fn build(services: &[Service], endpoints: &[Endpoints]) -> ClusterRecords {
        ClusterRecords::build(services, endpoints, "cluster.local")
    }

    #[test]
    fn cluster_ip_service_resolves_to_its_cluster_ip_in_long_and_short_form() {
        let records = build(&[service("shop", "web", Some("10.96.0.10"))], &[]);
        let want = ips(&["10.96.0.10"]);
        assert_eq!(records.addresses_of("web.shop.svc.cluster.local"), want);
        assert_eq!(records.addresses_of("web.shop.svc"), want);
        assert_eq!(records.name_count(), 2);
    }

    #[test]
    fn cluster_ip_service_ignores_its_endpoint_addresses() {
        let ready = vec![address("10.244.0.9", None)];
        let records = build(
            &[service("shop", "web", Some("10.96.0.10"))],
            &[endpoints("shop", "web", ready, vec![])],
        );
        assert_eq!(
            records.addresses_of("web.shop.svc.cluster.local"),
            ips(&["10.96.0.10"])
        );
    }

    #[test]
    fn dual_stack_service_resolves_to_both_cluster_ips() {
        let mut web = service("shop", "web", Some("10.96.0.10"));
        if let Some(spec) = web.spec.as_mut() {
            spec.cluster_ips = Some(vec!["10.96.0.10".into(), "fd00::a".into()]);
        }
        let records = build(&[web], &[]);
        assert_eq!(
            records.addresses_of("web.shop.svc.cluster.local"),
            ips(&["10.96.0.10", "fd00::a"])
        );
    }

    #[test]
    fn headless_service_resolves_to_every_ready_endpoint_and_no_unready_one() {
        let ready = vec![address("10.244.0.6", None), address("10.244.0.5", None)];
        let not_ready = vec![address("10.244.0.7", None)];
        let records = build(
            &[headless("db", "pg")],
            &[endpoints("db", "pg", ready, not_ready)],
        );
        let want = ips(&["10.244.0.5", "10.244.0.6"]);
        assert_eq!(records.addresses_of("pg.db.svc.cluster.local"), want);
        assert_eq!(records.addresses_of("pg.db.svc"), want);
    }

    #[test]
    fn headless_service_without_ready_endpoints_has_no_record() {
        let not_ready = vec![address("10.244.0.7", Some("pg-0"))];
        let records = build(
            &[headless("db", "pg")],
            &[endpoints("db", "pg", vec![], not_ready)],
        );
        assert_eq!(records, ClusterRecords::default());
    }

    #[test]
    fn statefulset_pod_resolves_by_its_hostname_under_the_service() {
        let ready = vec![
            address("10.244.0.5", Some("pg-0")),
            address("10.244.0.6", Some("pg-1")),
        ];
        let records = build(
            &[headless("db", "pg")],
            &[endpoints("db", "pg", ready, vec![])],
        );
        assert_eq!(
            records.addresses_of("pg-0.pg.db.svc.cluster.local"),
            ips(&["10.244.0.5"])
        );
        assert_eq!(records.addresses_of("pg-1.pg.db.svc"), ips(&["10.244.0.6"]));
    }

    #[test]
    fn external_name_service_and_endpoints_without_service_give_no_names() {
        let external = service("shop", "mail", None);
        let orphan = endpoints("shop", "gone", vec![address("10.244.0.5", None)], vec![]);
        assert_eq!(build(&[external], &[orphan]), ClusterRecords::default());
    }

    #[test]
    fn names_that_could_break_a_hosts_line_are_skipped() {
        let ready = vec![address("10.244.0.5", Some("pg 0 # evil"))];
        let records = build(
            &[
                service("shop", "Web", Some("10.96.0.10")),
                headless("db", "pg"),
            ],
            &[endpoints("db", "pg", ready, vec![])],
        );
        let lines = records.to_hosts_lines();
        assert_eq!(lines, "10.244.0.5 pg.db.svc.cluster.local pg.db.svc\n");
    }

    #[test]
    fn hosts_lines_are_sorted_by_address_with_the_most_specific_name_first() {
        let ready = vec![address("10.244.0.5", Some("pg-0"))];
        let records = build(
            &[
                service("shop", "web", Some("10.96.0.10")),
                headless("db", "pg"),
            ],
            &[endpoints("db", "pg", ready, vec![])],
        );
        assert_eq!(
            records.to_hosts_lines(),
            "10.96.0.10 web.shop.svc.cluster.local web.shop.svc\n\
             10.244.0.5 pg-0.pg.db.svc.cluster.local pg.db.svc.cluster.local pg-0.pg.db.svc pg.db.svc\n"
        );
    }

    #[test]
    fn cluster_domain_is_taken_as_given_without_its_dots() {
        let records = ClusterRecords::build(
            &[service("shop", "web", Some("10.96.0.10"))],
            &[],
            ".corp.example.",
        );
        assert_eq!(
            records.addresses_of("web.shop.svc.corp.example"),
            ips(&["10.96.0.10"])
        );
    }
}
