//! `tug token`: bootstrap tokens for joining agents (`join::bootstrap`), created, listed and deleted
//! through the API with the admin kubeconfig, and the server token's rotation (`join::rotation`). A
//! created token is printed in full, with the hash of the CA the server serves at /cacerts, so that the
//! agent can check the server it joins.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};

use crate::cli::{TokenAction, TokenArgs};
use crate::join::bootstrap::{self, BootstrapToken, Expiry};

/// Runs `tug token`; a refusal is the server's message alone.
pub async fn run_command(args: TokenArgs) -> anyhow::Result<()> {
    run(args).await.map_err(crate::admin::plain_error)
}

async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let client = crate::admin::client(args.kubeconfig.as_deref()).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), bootstrap::NAMESPACE);
    match args.action {
        TokenAction::Create { ttl, description, token } => {
            let token = token.unwrap_or_else(BootstrapToken::generate);
            let ttl = jiff::SignedDuration::try_from(ttl)?;
            let expiration = match ttl.is_zero() {
                true => None,
                false => {
                    Some(jiff::Timestamp::now().checked_add(ttl).map_err(|_| anyhow::anyhow!("--ttl is too long"))?)
                }
            };
            secrets.create(&PostParams::default(), &token.to_secret(expiration, &description)).await?;
            println!("{}", crate::join::Token::for_bootstrap(&cacerts(&client).await?, &token));
        }
        TokenAction::List => {
            let listed = secrets.list(&bootstrap::of_type()).await?.items;
            println!("{:<8} {:<10} {:<22} {:<42} DESCRIPTION", "TOKEN", "TTL", "EXPIRES", "USAGES");
            for secret in &listed {
                println!("{}", list_line(secret, jiff::Timestamp::now()));
            }
        }
        TokenAction::Rotate { new_token } => {
            let secret = new_token.unwrap_or_else(crate::join::token::random_secret);
            let token = crate::join::Token::for_ca(&cacerts(&client).await?, &secret);
            crate::join::rotation::rotate(&client, &token).await?;
            println!("{token}");
            eprintln!("every server takes the new token within seconds; update TUG_TOKEN (or --token) on servers and agents before they next join");
        }
        TokenAction::Delete { ids } => {
            for id in ids {
                // An id, `<id>.<secret>`, or the whole `K10<hash>::<id>.<secret>` that `create` printed.
                let id = id.rsplit("::").next().unwrap_or_default().split('.').next().unwrap_or_default().to_string();
                secrets.delete(&bootstrap::secret_name(&id), &DeleteParams::default()).await?;
                println!("bootstrap token {id:?} deleted");
            }
        }
    }
    Ok(())
}

/// The CA the server serves at /cacerts, whose hash full tokens carry (what joining nodes check).
async fn cacerts(client: &kube::Client) -> anyhow::Result<String> {
    Ok(client.request_text(http::Request::get(crate::join::CACERTS_PATH).body(Vec::new())?).await?)
}

/// A token's line in `tug token list`, as of `now`.
fn list_line(secret: &Secret, now: jiff::Timestamp) -> String {
    let field = |key| bootstrap::field(secret, key).unwrap_or_default();
    let (ttl, expires) = match bootstrap::expiration(secret) {
        Expiry::Never => ("<forever>".to_string(), "<never>".to_string()),
        Expiry::At(at) if at <= now => ("<expired>".to_string(), at.to_string()),
        Expiry::At(at) => {
            let left = std::time::Duration::from_secs(at.duration_since(now).as_secs().max(0) as u64);
            (
                humantime::format_duration(left).to_string().split(' ').next().unwrap_or_default().to_string(),
                at.to_string(),
            )
        }
        Expiry::Unreadable => ("<invalid>".to_string(), field("expiration").to_string()),
    };
    let usages: Vec<&str> = ["authentication", "signing"]
        .into_iter()
        .filter(|usage| bootstrap::field(secret, &format!("usage-bootstrap-{usage}")) == Some("true"))
        .collect();
    format!("{:<8} {:<10} {:<22} {:<42} {}", field("token-id"), ttl, expires, usages.join(","), field("description"))
}
