//! `tug member`: lists the cluster's servers and removes one, through the members endpoints of any
//! server (`replication::admin_routes`), with the admin kubeconfig.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::cli::{MemberAction, MemberArgs};
use crate::replication::{Member, MEMBERS_PATH};

#[derive(Deserialize)]
struct MemberList {
    members: Vec<Member>,
}

#[derive(Deserialize)]
struct Status {
    message: String,
}

/// Runs `tug member`; a refusal is the server's message alone.
pub async fn run_command(args: MemberArgs) -> anyhow::Result<()> {
    match run(args).await {
        Err(error) => match error.downcast::<kube::Error>() {
            Ok(kube::Error::Api(status)) if status.message.is_empty() => {
                Err(anyhow::anyhow!("the server answered {} {}", status.code, status.reason))
            }
            Ok(kube::Error::Api(status)) => Err(anyhow::anyhow!(status.message)),
            Ok(other) => Err(other.into()),
            Err(error) => Err(error),
        },
        ok => ok,
    }
}

async fn run(args: MemberArgs) -> anyhow::Result<()> {
    let kubeconfig = args.kubeconfig.unwrap_or_else(crate::config::default_kubeconfig);
    let client = admin_client(&kubeconfig).await?;
    match args.action {
        MemberAction::Ls => {
            let list: MemberList = client.request(http::Request::get(MEMBERS_PATH).body(Vec::new())?).await?;
            println!("{:<20} {:<32} ROLE", "ID", "ADDRESS");
            for member in list.members {
                println!("{:<20} {:<32} {}", member.id, member.address, member.role);
            }
        }
        MemberAction::Remove { id } => {
            let request = http::Request::delete(format!("{MEMBERS_PATH}/{id}")).body(Vec::new())?;
            let status: Status = client.request(request).await?;
            println!("{}", status.message);
        }
    }
    Ok(())
}

/// A client of the cluster the kubeconfig at `path` names.
async fn admin_client(path: &Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).with_context(|| {
        format!("cannot read the kubeconfig {} (run this on a server, or pass --kubeconfig)", path.display())
    })?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("the kubeconfig {} is not usable", path.display()))?;
    // A refusal (503 while the servers left would have no quorum) is the answer, not worth retrying.
    config.default_retry = false;
    Ok(kube::Client::try_from(config)?)
}
