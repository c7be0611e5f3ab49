//! Container probes as upstream's kubelet runs them: startup, liveness and readiness, each exec (through
//! the CRI's ExecSync), httpGet (2xx/3xx within the timeout, HTTP or HTTPS without certificate checks,
//! with its headers), tcpSocket (a connection) or grpc (the standard health service answering SERVING
//! over plaintext HTTP/2), on their
//! timing (initialDelaySeconds, periodSeconds, timeoutSeconds) and thresholds (successThreshold,
//! failureThreshold). Until a startup probe succeeds the others wait; a container failing its liveness
//! (or startup) probe is killed and restarted by its restart policy; readiness decides whether it counts
//! as ready. Results are kept per container ID, so a new attempt starts afresh.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_cri::v1::ExecSyncRequest;
use k8s_openapi::api::core::v1::{Container, ExecAction, GRPCAction, HTTPGetAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::kubelet::cri::Cri;

/// What probes say they are (upstream's `kube-probe/<major>.<minor>`).
const PROBE_USER_AGENT: &str = "kube-probe/1.33";

/// The three kinds, in the order they gate each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// One probe's running tally.
#[derive(Debug, Clone)]
struct Tally {
    next: Instant,
    successes: i32,
    failures: i32,
    /// The verdict so far: None until the thresholds decide.
    passing: Option<bool>,
}

/// What the probes say about a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Counts as ready (no readiness probe, or it passes, and startup has passed).
    pub ready: bool,
    /// Started (no startup probe, or it has passed).
    pub started: bool,
    /// Must be killed: its liveness or startup probe failed `failureThreshold` times in a row; the
    /// message says which and why.
    pub kill: Option<String>,
    /// What each probe that failed this time said (`Readiness probe failed: …`), for Unhealthy events.
    pub failed: Vec<String>,
}

/// The probes' state for every container of one pod.
#[derive(Debug, Default)]
pub struct Probes {
    tallies: HashMap<(String, Kind), Tally>,
}

fn probe_of(container: &Container, kind: Kind) -> Option<&Probe> {
    match kind {
        Kind::Startup => container.startup_probe.as_ref(),
        Kind::Liveness => container.liveness_probe.as_ref(),
        Kind::Readiness => container.readiness_probe.as_ref(),
    }
}

fn seconds(value: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(value.unwrap_or(default).max(0) as u64)
}

/// A named or numbered port of the container.
fn port_of(container: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// What a probe or a lifecycle hook does: run a command, GET a URL, open a TCP connection or (probes
/// only) ask a gRPC health service.
#[derive(Clone, Copy, Default)]
pub(super) struct Handler<'a> {
    pub exec: Option<&'a ExecAction>,
    pub http_get: Option<&'a HTTPGetAction>,
    pub tcp_socket: Option<&'a TCPSocketAction>,
    pub grpc: Option<&'a GRPCAction>,
}

impl<'a> From<&'a Probe> for Handler<'a> {
    fn from(probe: &'a Probe) -> Handler<'a> {
        Handler {
            exec: probe.exec.as_ref(),
            http_get: probe.http_get.as_ref(),
            tcp_socket: probe.tcp_socket.as_ref(),
            grpc: probe.grpc.as_ref(),
        }
    }
}

/// Runs the probe once: Ok(()) when it passes, Err(why) when not.
async fn run_once(cri: &mut Cri, container: &Container, id: &str, pod_ip: &str, probe: &Probe) -> Result<(), String> {
    let timeout = seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1));
    run_handler(cri, container, id, pod_ip, probe.into(), timeout).await
}

/// Runs `handler` against the container once, within `timeout`.
pub(super) async fn run_handler(
    cri: &mut Cri,
    container: &Container,
    id: &str,
    pod_ip: &str,
    handler: Handler<'_>,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(exec) = handler.exec {
        let request = ExecSyncRequest {
            container_id: id.to_string(),
            cmd: exec.command.clone().unwrap_or_default(),
            timeout: timeout.as_secs() as i64,
        };
        let response = cri.runtime.exec_sync(request).await.map_err(|s| s.message().to_string())?.into_inner();
        return match response.exit_code {
            0 => Ok(()),
            code => Err(format!("command exited with {code}: {}", String::from_utf8_lossy(&response.stdout).trim())),
        };
    }
    if let Some(http) = handler.http_get {
        let port = port_of(container, &http.port).ok_or("no such port")?;
        let host = http.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| pod_ip.to_string());
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> =
            http.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
        let tls = http.scheme.as_deref() == Some("HTTPS");
        return tokio::time::timeout(timeout, http_get(&host, port, &path, &headers, tls))
            .await
            .map_err(|_| format!("Get \"http://{host}:{port}{path}\": context deadline exceeded"))?;
    }
    if let Some(tcp) = handler.tcp_socket {
        let port = port_of(container, &tcp.port).ok_or("no such port")?;
        let host = tcp.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| pod_ip.to_string());
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    if let Some(grpc) = handler.grpc {
        let port = u16::try_from(grpc.port).map_err(|_| format!("invalid port {}", grpc.port))?;
        return grpc_check(pod_ip, port, grpc.service.as_deref().unwrap_or(""), timeout).await;
    }
    Err("no handler tug supports (exec, httpGet, tcpSocket, grpc)".into())
}

/// grpc.health.v1.Health/Check of `service` at `host:port`, as upstream's gRPC prober asks it.
async fn grpc_check(host: &str, port: u16, service: &str, timeout: Duration) -> Result<(), String> {
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
    let target = crate::core::net::join_host_port(host, port);
    let within = humantime::format_duration(timeout);
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{target}"))
        .and_then(|e| e.user_agent(PROBE_USER_AGENT))
        .map_err(|e| format!("invalid gRPC target {target:?}: {e}"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = endpoint.connect().await.map_err(|e| {
        format!(
            "timeout: failed to connect service {target:?} within {within}: {}",
            std::error::Error::source(&e).map_or(e.to_string(), ToString::to_string)
        )
    })?;
    let request = HealthCheckRequest { service: service.to_string() };
    let answer = HealthClient::new(channel).check(request).await.map_err(|status| match status.code() {
        tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => {
            format!("timeout: health rpc did not complete within {within}")
        }
        _ => format!("error: health rpc probe failed: {}", status.message()),
    })?;
    match answer.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("service unhealthy (responded with {:?})", other.as_str_name())),
    }
}

async fn http_get(host: &str, port: u16, path: &str, headers: &[(String, String)], tls: bool) -> Result<(), String> {
    let url = format!("{}://{host}:{port}{path}", if tls { "https" } else { "http" });
    let failed = |e: String| format!("Get \"{url}\": {e}");
    let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| failed(e.to_string()))?;
    let mut headers = headers.to_vec();
    headers.insert(0, ("User-Agent".to_string(), PROBE_USER_AGENT.to_string()));
    let authority = format!("{host}:{port}");
    let response = if tls {
        // Probes check that the container answers, not who it is (as upstream, which skips verification).
        let config = crate::http_client::trusting_any_server();
        let stream = crate::http_client::tls(tcp, host, config).await.map_err(failed)?;
        crate::http_client::get(stream, &authority, path, &headers).await
    } else {
        crate::http_client::get(tcp, &authority, path, &headers).await
    }
    .map_err(failed)?;
    let status = response.status().as_u16();
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {status}"))
    }
}

impl Probes {
    /// Runs the probes of a running container that are due; its verdict now. `started_at` is when the
    /// container started, for initialDelaySeconds.
    pub async fn check(
        &mut self,
        cri: &mut Cri,
        container: &Container,
        id: &str,
        pod_ip: &str,
        started_at: Instant,
    ) -> Verdict {
        // A new attempt of the container starts its probes afresh.
        let prefix = format!("{}/", container.name);
        let current = format!("{prefix}{id}");
        self.tallies.retain(|(known, _), _| !known.starts_with(&prefix) || *known == current);
        let mut verdict = Verdict { ready: true, started: true, kill: None, failed: Vec::new() };
        for kind in [Kind::Startup, Kind::Liveness, Kind::Readiness] {
            let Some(probe) = probe_of(container, kind) else { continue };
            if kind != Kind::Startup && !verdict.started {
                if kind == Kind::Readiness {
                    verdict.ready = false;
                }
                continue;
            }
            let key = (current.clone(), kind);
            let tally = self.tallies.entry(key).or_insert_with(|| Tally {
                next: started_at + seconds(probe.initial_delay_seconds, 0),
                successes: 0,
                failures: 0,
                passing: None,
            });
            // A startup probe that has passed is done for this container.
            let settled = kind == Kind::Startup && tally.passing == Some(true);
            if !settled && Instant::now() >= tally.next {
                tally.next = Instant::now() + seconds(probe.period_seconds, 10).max(Duration::from_secs(1));
                match run_once(cri, container, id, pod_ip, probe).await {
                    Ok(()) => {
                        tally.successes += 1;
                        tally.failures = 0;
                        if tally.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                            tally.passing = Some(true);
                        }
                    }
                    Err(why) => {
                        tally.failures += 1;
                        tally.successes = 0;
                        let message = format!("{} probe failed: {why}", kind.name());
                        if tally.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                            tally.passing = Some(false);
                            if kind != Kind::Readiness {
                                verdict.kill = Some(message.clone());
                            }
                        }
                        verdict.failed.push(message);
                    }
                }
            }
            let passing = tally.passing.unwrap_or(false);
            match kind {
                Kind::Startup => verdict.started = passing,
                Kind::Liveness => {}
                Kind::Readiness => verdict.ready = passing,
            }
        }
        verdict.ready &= verdict.started;
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn ports_are_found_by_number_or_name() {
        let container: Container =
            serde_json::from_value(json!({"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}))
                .expect("c");
        assert_eq!(port_of(&container, &IntOrString::String("http".into())), Some(8080));
        assert_eq!(port_of(&container, &IntOrString::Int(9000)), Some(9000));
        assert_eq!(port_of(&container, &IntOrString::String("nope".into())), None);
    }

    #[tokio::test]
    async fn an_http_probe_passes_on_2xx_and_3xx_only() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { return };
                let service = hyper::service::service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                    let status = if request.uri().path() == "/ok" { 200 } else { 503 };
                    http::Response::builder().status(status).body(http_body_util::Empty::<bytes::Bytes>::new())
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service),
                );
            }
        });
        let headers = [("X-Probe".to_string(), "1".to_string())];
        assert_eq!(http_get("127.0.0.1", port, "/ok", &headers, false).await, Ok(()));
        assert_eq!(
            http_get("127.0.0.1", port, "/bad", &[], false).await,
            Err("HTTP probe failed with statuscode: 503".into())
        );
    }

    #[tokio::test]
    async fn an_https_probe_accepts_any_certificate() {
        use rustls::pki_types::pem::PemObject;
        let signed = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
        let chain = vec![signed.cert.der().clone()];
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(signed.signing_key.serialize_pem().as_bytes())
            .expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let Ok((socket, _)) = listener.accept().await else { return };
            let Ok(tls) = acceptor.accept(socket).await else { return };
            let service = hyper::service::service_fn(|_: http::Request<hyper::body::Incoming>| async {
                http::Response::builder().status(204).body(http_body_util::Empty::<bytes::Bytes>::new())
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
        assert_eq!(http_get("127.0.0.1", port, "/healthz", &[], true).await, Ok(()));
    }
}
