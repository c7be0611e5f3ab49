//! The agent's load balancer over the API servers (as k3s's agent load balancer): a TCP proxy on
//! `127.0.0.1:<--lb-server-port>` that the join, the kubelet and the node's other API clients talk to.
//! TLS passes through untouched (every server's serving certificate covers 127.0.0.1), so clients
//! authenticate to the servers exactly as when connecting directly.
//!
//! Each new connection goes to the server in use while it accepts connections; when it does not, the
//! next server is tried and takes over. A health check (a TCP connect every [`HEALTH_PERIOD`]) notices
//! a server that died without closing its connections (power loss, a cut link), and the connections to
//! a server that failed or left the list are closed, so clients reconnect (and re-watch) through the
//! one in use. Which servers exist is [`servers`]'s concern.

pub mod servers;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long connecting to one server may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the server in use is checked.
const HEALTH_PERIOD: Duration = Duration::from_secs(2);

/// The running balancer; its tasks end when it is dropped.
pub struct Balancer {
    shared: Arc<Shared>,
    address: SocketAddr,
    serving: tokio::task::JoinHandle<()>,
    checking: tokio::task::JoinHandle<()>,
}

/// The servers and which one is in use.
struct Shared {
    state: Mutex<State>,
    list: servers::ServerList,
}

#[derive(Default)]
struct State {
    /// The servers, `host:port`, in the order they are tried.
    servers: Vec<String>,
    current: Option<String>,
    /// Per server, a signal that closes its connections: bumped when it fails, dropped when it leaves.
    closers: HashMap<String, watch::Sender<u64>>,
}

impl Balancer {
    /// Listens on 127.0.0.1:`port` (any free port for 0) in front of `default_server` (`host:port`) and
    /// the servers last learned, kept in `agent_dir`.
    pub async fn start(agent_dir: &Path, default_server: &str, port: u16) -> anyhow::Result<Balancer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{port} for the API server load balancer"))?;
        let address = listener.local_addr()?;
        let list = servers::ServerList::load(agent_dir, default_server);
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), list });
        shared.set_servers(shared.list.servers());
        let serving = tokio::spawn(serve(shared.clone(), listener));
        let checking = tokio::spawn(check_health(shared.clone()));
        tracing::info!(%address, servers = ?shared.list.servers(), "API server load balancer listening");
        Ok(Balancer { shared, address, serving, checking })
    }

    /// Where clients connect: `127.0.0.1:<port>`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Keeps the servers up to date with the `kubernetes` Endpoints read through `client`, until
    /// the balancer is dropped.
    pub fn follow_endpoints(&self, client: kube::Client) -> tokio::task::JoinHandle<()> {
        let shared = Arc::downgrade(&self.shared);
        tokio::spawn(servers::follow(client, move |learned| match shared.upgrade() {
            Some(shared) => {
                shared.set_servers(shared.list.learned(learned));
                true
            }
            None => false,
        }))
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.serving.abort();
        self.checking.abort();
    }
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the list; the connections to servers no longer on it are closed.
    fn set_servers(&self, servers: Vec<String>) {
        let mut state = self.state();
        state.closers.retain(|server, _| servers.contains(server));
        for server in &servers {
            state.closers.entry(server.clone()).or_insert_with(|| watch::channel(0).0);
        }
        if state.current.as_ref().is_some_and(|current| !servers.contains(current)) {
            state.current = None;
        }
        state.servers = servers;
    }

    /// The servers in the order to try them: the one in use first.
    fn candidates(&self) -> Vec<String> {
        let state = self.state();
        let mut candidates: Vec<String> = state.current.iter().cloned().collect();
        candidates.extend(state.servers.iter().filter(|s| Some(*s) != state.current.as_ref()).cloned());
        candidates
    }

    /// A connection to the first server that takes one, and the signal that closes it.
    async fn connect(&self) -> Option<(TcpStream, watch::Receiver<u64>)> {
        for server in self.candidates() {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&server)).await {
                Ok(Ok(stream)) => {
                    let mut state = self.state();
                    let closer = state.closers.get(&server)?.subscribe();
                    if state.current.as_ref() != Some(&server) {
                        tracing::info!(server, "API server load balancer: now using this server");
                        state.current = Some(server);
                    }
                    return Some((stream, closer));
                }
                Ok(Err(error)) => self.failed(&server, &error.to_string()),
                Err(_) => self.failed(&server, "connecting timed out"),
            }
        }
        tracing::warn!("API server load balancer: no server can be reached");
        None
    }

    /// `server` does not answer: its connections are closed and it is no longer the one in use.
    fn failed(&self, server: &str, reason: &str) {
        let mut state = self.state();
        if state.current.as_deref() == Some(server) {
            tracing::warn!(server, reason, "API server load balancer: the server in use failed");
            state.current = None;
        }
        if let Some(closer) = state.closers.get(server) {
            closer.send_modify(|generation| *generation += 1);
        }
    }
}

async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let mut client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(error) => {
                tracing::warn!(%error, "API server load balancer: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let Some((mut upstream, mut closer)) = shared.connect().await else { return };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                _ = closer.changed() => {}
            }
        });
    }
}

/// Checks the server in use every [`HEALTH_PERIOD`].
async fn check_health(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(HEALTH_PERIOD).await;
        let Some(current) = shared.state().current.clone() else { continue };
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&current)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => shared.failed(&current, &error.to_string()),
            Err(_) => shared.failed(&current, "health check timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server answering each connection with its name.
    async fn named_server(name: &'static str) -> (String, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    stream.write_all(name.as_bytes()).await.unwrap();
                    let _ = stream.read(&mut [0; 1]).await;
                });
            }
        });
        (address, task)
    }

    async fn answer(balancer: &Balancer) -> String {
        let mut stream = TcpStream::connect(balancer.address()).await.unwrap();
        let mut name = [0; 1];
        match stream.read(&mut name).await {
            Ok(1) => String::from_utf8_lossy(&name).into_owned(),
            other => format!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn connections_move_to_the_next_server_when_the_one_in_use_dies_and_its_connections_close() {
        let dir = tempfile::tempdir().unwrap();
        let (a, a_task) = named_server("a").await;
        let (b, _b_task) = named_server("b").await;
        let balancer = Balancer::start(dir.path(), &a, 0).await.unwrap();
        balancer.shared.set_servers(balancer.shared.list.learned(vec![a.clone(), b.clone()]));
        assert_eq!(answer(&balancer).await, "a", "the default server first");
        let mut held = TcpStream::connect(balancer.address()).await.unwrap();
        let mut byte = [0; 1];
        held.read_exact(&mut byte).await.unwrap();
        a_task.abort();
        let _ = a_task.await;
        assert_eq!(answer(&balancer).await, "b", "the next server once the first refuses");
        let closed = tokio::time::timeout(Duration::from_secs(1), held.read(&mut byte)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the connection to the failed server is closed: {closed:?}");
        let kept = servers::ServerList::load(dir.path(), &a).servers();
        assert_eq!(kept, [a, b], "the learned server is kept for the next start");
    }
}
