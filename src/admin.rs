//! The CLI's commands that work through the API (`tug member`, `tug token`): a client from the admin
//! kubeconfig, and refusals shown as the server's message alone.

use std::path::Path;

use anyhow::Context;

/// A client of the cluster the kubeconfig at `path` names (the default one `tug server` writes when None).
pub async fn client(path: Option<&Path>) -> anyhow::Result<kube::Client> {
    let default = crate::config::default_kubeconfig();
    let path = path.unwrap_or(&default);
    let kubeconfig = kube::config::Kubeconfig::read_from(path).with_context(|| {
        format!("cannot read the kubeconfig {} (run this on a server, or pass --kubeconfig)", path.display())
    })?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("the kubeconfig {} is not usable", path.display()))?;
    // A refusal (say a 503 while the servers left would have no quorum) is the answer, not worth retrying.
    config.default_retry = false;
    Ok(kube::Client::try_from(config)?)
}

/// An API refusal as the server's message alone; other errors as they are.
pub fn plain_error(error: anyhow::Error) -> anyhow::Error {
    match error.downcast::<kube::Error>() {
        Ok(kube::Error::Api(status)) if status.message.is_empty() => {
            anyhow::anyhow!("the server answered {} {}", status.code, status.reason)
        }
        Ok(kube::Error::Api(status)) => anyhow::anyhow!(status.message),
        Ok(other) => other.into(),
        Err(error) => error,
    }
}
