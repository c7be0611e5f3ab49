//! The kubelet's side of the CRI (runtime.v1 over gRPC on the runtime's unix socket): one connection
//! shared by the runtime and image services, and the runtime's health as the node reports it.

use std::path::Path;

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{StatusRequest, VersionRequest};
use tonic::transport::Channel;

/// CRI failures.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("cannot connect to the container runtime at {path}: {source}")]
    Connect { path: String, source: tonic::transport::Error },
    #[error("container runtime: {0}")]
    Call(#[from] tonic::Status),
}

/// The runtime's name and version, as the node's nodeInfo.containerRuntimeVersion shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeVersion {
    pub name: String,
    pub version: String,
}

impl RuntimeVersion {
    /// `containerd://1.6.20`.
    pub fn as_node_info(&self) -> String {
        format!("{}://{}", self.name, self.version)
    }
}

/// Whether the runtime and its pod network are ready, with the runtime's reason when not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeHealth {
    pub runtime_ready: bool,
    pub network_ready: bool,
    pub message: String,
}

/// A connection to a CRI runtime.
#[derive(Clone)]
pub struct Cri {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

impl Cri {
    /// Connects to the runtime's socket (reconnecting by itself later if the runtime restarts).
    pub async fn connect(socket: &Path) -> Result<Channel, CriError> {
        containerd_client::connect(socket)
            .await
            .map_err(|source| CriError::Connect { path: socket.display().to_string(), source })
    }

    /// The CRI over a connection to the runtime's socket.
    pub fn over(channel: Channel) -> Cri {
        Cri { runtime: RuntimeServiceClient::new(channel.clone()), images: ImageServiceClient::new(channel) }
    }

    pub async fn version(&mut self) -> Result<RuntimeVersion, CriError> {
        let response = self.runtime.version(VersionRequest { version: "v1".into() }).await?.into_inner();
        Ok(RuntimeVersion { name: response.runtime_name, version: response.runtime_version })
    }

    pub async fn health(&mut self) -> Result<RuntimeHealth, CriError> {
        let status = self.runtime.status(StatusRequest { verbose: false }).await?.into_inner().status;
        Ok(health_of(status.map(|s| s.conditions).unwrap_or_default()))
    }
}

fn health_of(conditions: Vec<k8s_cri::v1::RuntimeCondition>) -> RuntimeHealth {
    let find = |kind: &str| conditions.iter().find(|c| c.r#type == kind);
    let runtime = find("RuntimeReady");
    let network = find("NetworkReady");
    let runtime_ready = runtime.is_some_and(|c| c.status);
    let network_ready = network.is_some_and(|c| c.status);
    let message = match (runtime, network) {
        (Some(c), _) if !c.status => format!("container runtime not ready: {}: {}", c.reason, c.message),
        (None, _) => "container runtime status check may not have completed yet".to_string(),
        (_, Some(c)) if !c.status => format!("container runtime network not ready: {}: {}", c.reason, c.message),
        (_, None) => "container runtime network status unknown".to_string(),
        _ => String::new(),
    };
    RuntimeHealth { runtime_ready, network_ready, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::RuntimeCondition;

    fn condition(kind: &str, status: bool, reason: &str) -> RuntimeCondition {
        RuntimeCondition { r#type: kind.into(), status, reason: reason.into(), message: "details".into() }
    }

    #[test]
    fn health_says_which_part_is_not_ready_as_the_kubelet_does() {
        let ready = health_of(vec![condition("RuntimeReady", true, ""), condition("NetworkReady", true, "")]);
        assert!(ready.runtime_ready && ready.network_ready && ready.message.is_empty());
        let no_cni = health_of(vec![
            condition("RuntimeReady", true, ""),
            condition("NetworkReady", false, "NetworkPluginNotReady"),
        ]);
        assert!(no_cni.runtime_ready && !no_cni.network_ready);
        assert_eq!(no_cni.message, "container runtime network not ready: NetworkPluginNotReady: details");
        assert!(!health_of(vec![]).runtime_ready);
    }

    #[test]
    fn the_version_reads_as_node_info_shows_it() {
        let version = RuntimeVersion { name: "containerd".into(), version: "1.6.20~ds1".into() };
        assert_eq!(version.as_node_info(), "containerd://1.6.20~ds1");
    }
}
