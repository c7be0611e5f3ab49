//! The agent's load balancer over the API servers (as k3s's agent load balancer): a TCP proxy on
//! `127.0.0.1:<--lb-server-port>` that the join, the kubelet and the node's other API clients talk to.
//! TLS passes through untouched (every server's serving certificate covers 127.0.0.1), so clients
//! authenticate to the servers exactly as when connecting directly.
//!
//! Each new connection goes to the server in use while it accepts connections; when it does not, the
//! next server is tried and takes over (servers that failed lately are tried last). Every
//! [`HEALTH_PERIOD`] the server in use is asked for `/readyz` (anonymous, over TLS): when it does not
//! answer ready (it died without closing its connections, its link is cut, or it lost its quorum) and
//! another server does, that one takes over. The connections to a server that failed or left the list
//! are closed, so clients reconnect (and re-watch) through the one in use. Which servers exist is
//! [`servers`]'s concern.

pub mod servers;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long connecting to one server may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the server in use is checked.
const HEALTH_PERIOD: Duration = Duration::from_secs(5);
/// How long a server that failed is tried only after the others.
const FAILED_LATELY: Duration = Duration::from_secs(30);

/// The running balancer; its tasks end when it is dropped.
pub struct Balancer {
    shared: Arc<Shared>,
    address: SocketAddr,
    /// Accepting, health-checking and following the Endpoints.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The servers and which one is in use.
struct Shared {
    state: Mutex<State>,
    list: servers::ServerList,
    /// For the health checks, which only read the status code.
    tls: Arc<rustls::ClientConfig>,
}

#[derive(Default)]
struct State {
    /// The servers, `host:port`, in the order they are tried.
    servers: Vec<String>,
    current: Option<String>,
    /// Per server, a signal that closes its connections: bumped when it fails, dropped when it leaves.
    closers: HashMap<String, watch::Sender<u64>>,
    /// When each server last failed.
    failed_at: HashMap<String, Instant>,
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
        let tls = crate::http_client::trusting_any_server();
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), list, tls });
        shared.set_servers(shared.list.servers());
        let tasks = vec![tokio::spawn(serve(shared.clone(), listener)), tokio::spawn(check_health(shared.clone()))];
        tracing::info!(%address, servers = ?shared.list.servers(), "API server load balancer listening");
        Ok(Balancer { shared, address, tasks })
    }

    /// Where clients connect: `127.0.0.1:<port>`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Keeps the servers up to date with the `kubernetes` Endpoints read through `client`, until
    /// the balancer is dropped.
    pub fn follow_endpoints(&mut self, client: kube::Client) {
        let shared = self.shared.clone();
        self.tasks.push(tokio::spawn(servers::follow(client, move |learned| {
            shared.set_servers(shared.list.learned(learned));
        })));
    }
}

impl Drop for Balancer {
    /// Stops its tasks and closes every connection through it.
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.state().closers.clear();
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

    /// The servers in the order to try them: the one in use first, those that failed lately last.
    fn candidates(&self) -> Vec<String> {
        let state = self.state();
        let failed_lately =
            |server: &String| state.failed_at.get(server).is_some_and(|at| at.elapsed() < FAILED_LATELY);
        let mut candidates: Vec<String> = state.current.iter().cloned().collect();
        let others = state.servers.iter().filter(|s| Some(*s) != state.current.as_ref());
        let (lately, fine): (Vec<&String>, Vec<&String>) = others.partition(|s| failed_lately(s));
        candidates.extend(fine.into_iter().chain(lately).cloned());
        candidates
    }

    /// A connection to the first server that takes one, and the signal that closes it.
    async fn connect(&self) -> Option<(TcpStream, watch::Receiver<u64>)> {
        for server in self.candidates() {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&server)).await {
                Ok(Ok(stream)) => match self.start_using(&server) {
                    Some(closer) => return Some((stream, closer)),
                    // It left the list meanwhile.
                    None => continue,
                },
                Ok(Err(error)) => self.failed(&server, &error.to_string()),
                Err(_) => self.failed(&server, "connecting timed out"),
            }
        }
        tracing::warn!("API server load balancer: no server can be reached");
        None
    }

    /// Makes `server` the one in use; the signal that closes its connections, unless it left the list.
    fn start_using(&self, server: &str) -> Option<watch::Receiver<u64>> {
        let mut state = self.state();
        let closer = state.closers.get(server)?.subscribe();
        if state.current.as_deref() != Some(server) {
            tracing::info!(server, "API server load balancer: now using this server");
            state.current = Some(server.to_string());
        }
        Some(closer)
    }

    /// `server` does not answer: its connections are closed and it is no longer the one in use.
    fn failed(&self, server: &str, reason: &str) {
        let mut state = self.state();
        if state.current.as_deref() == Some(server) {
            tracing::warn!(server, reason, "API server load balancer: the server in use failed");
            state.current = None;
        }
        state.failed_at.insert(server.to_string(), Instant::now());
        if let Some(closer) = state.closers.get(server) {
            closer.send_modify(|generation| *generation += 1);
        }
    }

    /// Whether `server` answers `/readyz` with 200 in time.
    async fn ready(&self, server: &str) -> bool {
        let asked = async {
            let tcp = TcpStream::connect(server).await.ok()?;
            let host = crate::core::net::host_of(server);
            let tls = crate::http_client::tls(tcp, host, self.tls.clone()).await.ok()?;
            let response = crate::http_client::get(tls, server, "/readyz", &[]).await.ok()?;
            Some(response.status() == http::StatusCode::OK)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, asked).await.ok().flatten() == Some(true)
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
            let connected = shared.connect().await;
            // Only the closer keeps the connection tied to the balancer.
            drop(shared);
            let Some((mut upstream, mut closer)) = connected else { return };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                _ = closer.changed() => {}
            }
        });
    }
}

/// Every [`HEALTH_PERIOD`], moves off the server in use when it is not ready and another one is.
async fn check_health(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(HEALTH_PERIOD).await;
        let Some(current) = shared.state().current.clone() else { continue };
        if shared.ready(&current).await {
            continue;
        }
        for other in shared.candidates().into_iter().filter(|s| *s != current) {
            if shared.ready(&other).await {
                shared.failed(&current, "not ready");
                shared.start_using(&other);
                break;
            }
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
