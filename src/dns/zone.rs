//! The cluster's names, as CoreDNS's kubernetes plugin answers them, built from Services and
//! EndpointSlices: `<svc>.<ns>.svc.<domain>` (the cluster IPs, or for a headless Service its ready
//! endpoints, each also as `<hostname>.<svc>…` or `<a-b-c-d>.<svc>…`), ExternalName Services as
//! CNAMEs, SRV records `_<port>._<proto>.<svc>…` for named ports, PTR records for cluster IPs and
//! headless endpoints, and `<a-b-c-d>.<ns>.pod.<domain>` for any pod address. Names inside the zone
//! that do not exist are NXDOMAIN; names that exist without records of the asked type are NODATA.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Time to live of every answer from the zone (CoreDNS's kubernetes plugin's default).
pub const TTL: u32 = 5;

/// What the zone says about a name.
#[derive(Debug, PartialEq)]
pub enum Answer {
    Records(Vec<Record>),
    /// The name exists, without records of that type.
    NoData,
    NxDomain,
    /// Not the cluster's name: ask upstream.
    Elsewhere,
}

/// The cluster's names and their records.
pub struct Zone {
    domain: LowerName,
    /// Address ranges whose reverse names the zone owns.
    reverse: Vec<IpNet>,
    names: HashMap<LowerName, Vec<Record>>,
    soa: Record,
}

fn name(text: &str) -> Option<Name> {
    Name::from_ascii(text).ok().map(|mut name| {
        name.set_fqdn(true);
        name
    })
}

/// `10.42.1.5` as `10-42-1-5` (`fd00::5` as `fd00--5`).
fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

fn address_record(owner: &Name, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner.clone(), TTL, data)
}

impl Zone {
    /// The zone of `domain` (e.g. `cluster.local`) owning the reverse names of `reverse`, from the
    /// Services and EndpointSlices.
    pub fn build(domain: &str, reverse: Vec<IpNet>, services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Zone {
        let origin = name(domain).unwrap_or_else(Name::root);
        let soa = SOA::new(
            name(&format!("ns.dns.{domain}")).unwrap_or_else(Name::root),
            name(&format!("hostmaster.{domain}")).unwrap_or_else(Name::root),
            1,
            7200,
            1800,
            86400,
            TTL,
        );
        let soa = Record::from_rdata(origin.clone(), TTL, RData::SOA(soa));
        let mut zone = Zone { domain: LowerName::new(&origin), reverse, names: HashMap::new(), soa: soa.clone() };
        // The apex answers its SOA; `svc` and `pod` exist (names below them do).
        zone.add(&origin, Some(soa));
        for below in ["svc", "pod"] {
            if let Some(empty) = name(&format!("{below}.{domain}")) {
                zone.add(&empty, None);
            }
        }
        let mut slices_of: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let service = slice.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/service-name"));
            if let (Some(namespace), Some(service)) = (slice.metadata.namespace.as_deref(), service) {
                slices_of.entry((namespace, service.as_str())).or_default().push(slice);
            }
        }
        for service in services {
            let (Some(namespace), Some(service_name)) =
                (service.metadata.namespace.as_deref(), service.metadata.name.as_deref())
            else {
                continue;
            };
            let slices = slices_of.get(&(namespace, service_name)).map(Vec::as_slice).unwrap_or_default();
            zone.add_service(domain, namespace, service_name, service, slices);
        }
        zone
    }

    fn add(&mut self, owner: &Name, record: Option<Record>) {
        let records = self.names.entry(LowerName::new(owner)).or_default();
        records.extend(record);
    }

    fn add_service(
        &mut self,
        domain: &str,
        namespace: &str,
        service_name: &str,
        service: &Service,
        slices: &[&EndpointSlice],
    ) {
        let Some(spec) = &service.spec else { return };
        let (Some(base), Some(namespace_name), Some(svc_name)) = (
            name(&format!("{service_name}.{namespace}.svc.{domain}")),
            name(&format!("{namespace}.svc.{domain}")),
            name(&format!("svc.{domain}")),
        ) else {
            return;
        };
        self.add(&namespace_name, None);
        self.add(&svc_name, None);
        if spec.type_.as_deref() == Some("ExternalName") {
            let target = spec.external_name.as_deref().and_then(name);
            self.add(&base, target.map(|t| Record::from_rdata(base.clone(), TTL, RData::CNAME(CNAME(t)))));
            return;
        }
        let cluster_ips = crate::proxy::model::cluster_ips(spec);
        let ports = spec.ports.iter().flatten().filter_map(|p| Some((p.name.clone()?, p.protocol.clone(), p.port)));
        if !cluster_ips.is_empty() {
            self.add(&base, None);
            for ip in cluster_ips {
                self.add(&base, Some(address_record(&base, ip)));
                self.add(&Name::from(ip), Some(Record::from_rdata(Name::from(ip), TTL, RData::PTR(PTR(base.clone())))));
            }
            for (port_name, protocol, port) in ports {
                let Some(owner) = srv_owner(&port_name, protocol.as_deref(), &base) else { continue };
                let srv = SRV::new(0, 100, u16::try_from(port).unwrap_or_default(), base.clone());
                self.add(&owner, Some(Record::from_rdata(owner.clone(), TTL, RData::SRV(srv))));
            }
            return;
        }
        // Headless: the ready endpoints, by address and by name; SRV records per slice, each slice's
        // ports with its own endpoints.
        self.add(&base, None);
        let mut seen: Vec<IpAddr> = Vec::new();
        let mut per_slice: Vec<(&EndpointSlice, Vec<Name>)> = Vec::new();
        for slice in slices {
            let mut names = Vec::new();
            for endpoint in &slice.endpoints {
                if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                    continue;
                }
                for ip in endpoint.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                    let label = endpoint.hostname.clone().unwrap_or_else(|| dashed(ip));
                    let Some(own) = name(&format!("{label}.{service_name}.{namespace}.svc.{domain}")) else { continue };
                    if seen.contains(&ip) {
                        continue;
                    }
                    seen.push(ip);
                    self.add(&base, Some(address_record(&base, ip)));
                    self.add(&own, Some(address_record(&own, ip)));
                    let ptr = Record::from_rdata(Name::from(ip), TTL, RData::PTR(PTR(own.clone())));
                    self.add(&Name::from(ip), Some(ptr));
                    names.push(own);
                }
            }
            per_slice.push((slice, names));
        }
        let weight = u16::try_from(100 / seen.len().max(1)).unwrap_or(100);
        for (slice, names) in per_slice {
            for port in slice.ports.iter().flatten() {
                let (Some(port_name), Some(number)) = (&port.name, port.port) else { continue };
                let Some(owner) = srv_owner(port_name, port.protocol.as_deref(), &base) else { continue };
                self.add(&owner, None);
                for own in &names {
                    let srv = SRV::new(0, weight, u16::try_from(number).unwrap_or_default(), own.clone());
                    self.add(&owner, Some(Record::from_rdata(owner.clone(), TTL, RData::SRV(srv))));
                }
            }
        }
    }

    /// The SOA record, for the authority section of negative answers.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// What the zone says about `query` of type `kind`.
    pub fn answer(&self, query: &LowerName, kind: RecordType) -> Answer {
        if let Some(records) = self.names.get(query) {
            let matching: Vec<Record> = records
                .iter()
                .filter(|r| kind == RecordType::ANY || r.record_type() == kind || r.record_type() == RecordType::CNAME)
                .cloned()
                .collect();
            return if matching.is_empty() { Answer::NoData } else { Answer::Records(matching) };
        }
        if self.domain.zone_of(query) {
            return match self.pod_address(query) {
                Some(ip)
                    if matches!((ip, kind), (IpAddr::V4(_), RecordType::A) | (IpAddr::V6(_), RecordType::AAAA)) =>
                {
                    Answer::Records(vec![address_record(&Name::from(query.clone()), ip)])
                }
                Some(_) => Answer::NoData,
                None if self.is_pod_namespace(query) => Answer::NoData,
                None => Answer::NxDomain,
            };
        }
        let reverse = Name::from(query.clone()).parse_arpa_name().ok();
        match reverse {
            Some(net) if self.reverse.iter().any(|owned| owned.contains(&net.addr())) => Answer::NxDomain,
            _ => Answer::Elsewhere,
        }
    }

    /// Whether `query` is `<namespace>.pod.<domain>`, which has pod names below it.
    fn is_pod_namespace(&self, query: &LowerName) -> bool {
        let query = Name::from(query.clone());
        let zone_labels = Name::from(self.domain.clone()).num_labels();
        query.num_labels() == zone_labels + 2 && query.iter().nth(1) == Some(&b"pod"[..])
    }

    /// The address in `<a-b-c-d>.<namespace>.pod.<domain>`.
    fn pod_address(&self, query: &LowerName) -> Option<IpAddr> {
        let query = Name::from(query.clone());
        let labels: Vec<String> = query.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
        let zone_labels = Name::from(self.domain.clone()).num_labels() as usize;
        if labels.len() != zone_labels + 3 || labels[2] != "pod" {
            return None;
        }
        let dashed = &labels[0];
        dashed.replace('-', ".").parse().ok().or_else(|| dashed.replace('-', ":").parse().ok())
    }
}

fn srv_owner(port_name: &str, protocol: Option<&str>, base: &Name) -> Option<Name> {
    let protocol = protocol.unwrap_or("TCP").to_ascii_lowercase();
    name(&format!("_{port_name}._{protocol}.{base}"))
}

#[cfg(test)]
mod tests;
