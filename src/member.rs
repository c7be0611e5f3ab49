//! `tug member`: lists the cluster's servers and removes one, through the members endpoints of any
//! server (`replication::admin_routes`), with the admin kubeconfig.

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
    run(args).await.map_err(crate::admin::plain_error)
}

async fn run(args: MemberArgs) -> anyhow::Result<()> {
    let client = crate::admin::client(args.kubeconfig.as_deref()).await?;
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
