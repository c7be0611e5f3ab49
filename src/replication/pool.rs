//! Idle connections to peer servers, for tug's own calls (forwarded writes, read indexes, joins,
//! removals), which run concurrently: each call takes an idle connection to its peer or opens one, and
//! gives it back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::network::{CallError, PeerClient};

/// Idle connections kept per peer.
const MAX_IDLE_PER_PEER: usize = 16;

pub struct Pool {
    tls: Arc<rustls::ClientConfig>,
    idle: Mutex<HashMap<String, Vec<PeerClient>>>,
}

impl Pool {
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Pool {
        Pool { tls, idle: Mutex::new(HashMap::new()) }
    }

    /// Calls `path` on the peer at `address` (see [`PeerClient::call`]).
    pub async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        address: &str,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let idle = self.lock().get_mut(address).and_then(Vec::pop);
        let mut client = idle.unwrap_or_else(|| PeerClient::new(address.to_string(), self.tls.clone()));
        let answer = client.call(path, request, timeout).await;
        if answer.is_ok() {
            let mut idle = self.lock();
            let connections = idle.entry(address.to_string()).or_default();
            if connections.len() < MAX_IDLE_PER_PEER {
                connections.push(client);
            }
        }
        answer
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<PeerClient>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}
