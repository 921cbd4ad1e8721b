//! A local DNS answerer for tests: authoritative for a few names, over UDP on loopback, its
//! answers built with hickory-proto (the e-mail domain checks and the SSRF guard use it).

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{MX, TXT};
use hickory_proto::rr::{Name, RData, Record};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// An authoritative answerer for a few names: NXDOMAIN for names it does not know, an empty
/// answer for a known name without the asked type, SERVFAIL for names marked failing.
pub struct Answerer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
pub struct Zone {
    records: HashMap<String, Vec<RData>>,
    failing: Vec<String>,
    /// Answers' TTL; 60 s unless `no_cache` (a rebinding name is answered with TTL 0).
    no_cache: bool,
}

impl Zone {
    pub fn txt(mut self, name: &str, strings: &[&str]) -> Self {
        let txt = TXT::new(strings.iter().map(|s| (*s).to_owned()).collect());
        self.records
            .entry(name.to_owned())
            .or_default()
            .push(RData::TXT(txt));
        self
    }

    pub fn mx(mut self, name: &str, exchange: &str) -> Self {
        let mx = MX::new(10, Name::from_ascii(exchange).unwrap());
        self.records
            .entry(name.to_owned())
            .or_default()
            .push(RData::MX(mx));
        self
    }

    /// An A or AAAA record (by the address's family).
    pub fn ip(mut self, name: &str, ip: std::net::IpAddr) -> Self {
        let rdata = match ip {
            std::net::IpAddr::V4(v4) => RData::A(hickory_proto::rr::rdata::A(v4)),
            std::net::IpAddr::V6(v6) => RData::AAAA(hickory_proto::rr::rdata::AAAA(v6)),
        };
        self.records.entry(name.to_owned()).or_default().push(rdata);
        self
    }

    /// Answers with TTL 0, so resolvers ask again every time.
    pub fn no_cache(mut self) -> Self {
        self.no_cache = true;
        self
    }

    pub fn failing(mut self, name: &str) -> Self {
        self.failing.push(name.to_owned());
        self
    }

    fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        let request = Message::from_vec(query).ok()?;
        let q = request.queries.first()?.clone();
        let name = q
            .name()
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let mut response = Message::response(request.metadata.id, OpCode::Query);
        response.metadata.authoritative = true;
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.add_query(q.clone());
        if self.failing.contains(&name) {
            response.metadata.response_code = ResponseCode::ServFail;
        } else if let Some(records) = self.records.get(&name) {
            for rdata in records.iter().filter(|r| r.record_type() == q.query_type()) {
                let ttl = if self.no_cache { 0 } else { 60 };
                response.add_answer(Record::from_rdata(q.name().clone(), ttl, rdata.clone()));
            }
        } else {
            response.metadata.response_code = ResponseCode::NXDomain;
        }
        response.to_vec().ok()
    }
}

/// A zone that can be replaced while the answerer runs (a name that rebinds).
pub type SharedZone = Arc<std::sync::RwLock<Zone>>;

impl Answerer {
    pub async fn start(zone: Zone) -> Self {
        Self::start_shared(Arc::new(std::sync::RwLock::new(zone))).await
    }

    pub async fn start_shared(zone: SharedZone) -> Self {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let answer = zone.read().unwrap().answer(&buf[..n]);
                if let Some(answer) = answer {
                    let _ = socket.send_to(&answer, peer).await;
                }
            }
        });
        Self { addr, task }
    }
}

impl Drop for Answerer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
