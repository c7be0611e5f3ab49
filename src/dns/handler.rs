//! Answering one query: names of the cluster from the zone (authoritative; SERVFAIL until the
//! caches first synced), everything else from the upstream resolvers through hickory's caching
//! resolver, their negative answers passed on with their SOA.

use std::sync::{Arc, RwLock};

use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::TokioResolver;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Metadata, ResponseCode};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::zone::{Answer, Zone};

/// The zone as last built; None until the caches first synced.
pub type SharedZone = Arc<RwLock<Option<Arc<Zone>>>>;

pub struct Handler {
    pub zone: SharedZone,
    pub upstream: TokioResolver,
}

/// One reply.
struct Reply<'a> {
    code: ResponseCode,
    authoritative: bool,
    answers: &'a [Record],
    authority: &'a [Record],
}

impl Handler {
    fn zone(&self) -> Option<Arc<Zone>> {
        self.zone.read().ok().and_then(|zone| zone.clone())
    }

    async fn send<R: ResponseHandler>(request: &Request, mut handle: R, reply: Reply<'_>) -> ResponseInfo {
        let edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().max(512));
            edns.set_version(0);
            edns
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = reply.authoritative;
        metadata.recursion_available = true;
        metadata.response_code = reply.code;
        let response = builder.build(metadata, reply.answers.iter(), reply.authority.iter(), [], []);
        match handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, "dns: cannot send a reply");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(hickory_server::proto::op::Header { metadata, counts: Default::default() })
            }
        }
    }

    async fn forward<R: ResponseHandler>(
        &self,
        request: &Request,
        handle: R,
        name: Name,
        kind: hickory_server::proto::rr::RecordType,
    ) -> ResponseInfo {
        let reply = |code, answers, authority| Reply { code, authoritative: false, answers, authority };
        match self.upstream.lookup(name, kind).await {
            Ok(lookup) => Self::send(request, handle, reply(ResponseCode::NoError, lookup.answers(), &[])).await,
            Err(NetError::Dns(DnsError::NoRecordsFound(NoRecords { response_code, soa, .. }))) => {
                let authority: Vec<Record> = soa.map(|soa| vec![soa.into_record_of_rdata()]).unwrap_or_default();
                Self::send(request, handle, reply(response_code, &[], &authority)).await
            }
            Err(NetError::Dns(DnsError::ResponseCode(code))) => {
                Self::send(request, handle, reply(code, &[], &[])).await
            }
            Err(error) => {
                tracing::debug!(%error, "dns: upstream failed");
                Self::send(request, handle, reply(ResponseCode::ServFail, &[], &[])).await
            }
        }
    }
}

impl Handler {
    /// The records of a CNAME's `target`: from the zone, or upstream.
    async fn chase(&self, zone: &Zone, target: Name, kind: RecordType) -> Vec<Record> {
        match zone.answer(&LowerName::new(&target), kind) {
            Answer::Records(records) => records,
            Answer::Elsewhere => match self.upstream.lookup(target, kind).await {
                Ok(lookup) => lookup.answers().to_vec(),
                Err(_) => Vec::new(),
            },
            Answer::NoData | Answer::NxDomain => Vec::new(),
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, handle: R) -> ResponseInfo {
        let Ok(info) = request.request_info() else {
            let reply = Reply { code: ResponseCode::FormErr, authoritative: false, answers: &[], authority: &[] };
            return Self::send(request, handle, reply).await;
        };
        let (query, kind) = (info.query.name(), info.query.query_type());
        let Some(zone) = self.zone() else {
            let reply = Reply { code: ResponseCode::ServFail, authoritative: false, answers: &[], authority: &[] };
            return Self::send(request, handle, reply).await;
        };
        let soa = std::slice::from_ref(zone.soa());
        let authoritative = |code, answers, authority| Reply { code, authoritative: true, answers, authority };
        match zone.answer(query, kind) {
            Answer::Records(mut records) => {
                // An ExternalName's CNAME comes with its target's records, as CoreDNS answers it:
                // stub resolvers do not chase it themselves.
                let target = records.iter().find_map(|r| match &r.data {
                    RData::CNAME(target) if kind != RecordType::CNAME => Some(target.0.clone()),
                    _ => None,
                });
                if let Some(target) = target {
                    records.extend(self.chase(&zone, target, kind).await);
                }
                Self::send(request, handle, authoritative(ResponseCode::NoError, &records, &[])).await
            }
            Answer::NoData => Self::send(request, handle, authoritative(ResponseCode::NoError, &[], soa)).await,
            Answer::NxDomain => Self::send(request, handle, authoritative(ResponseCode::NXDomain, &[], soa)).await,
            Answer::Elsewhere => self.forward(request, handle, Name::from(query.clone()), kind).await,
        }
    }
}
