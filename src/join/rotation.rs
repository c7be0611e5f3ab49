//! The server token's rotation (`tug token rotate`, as k3s's): the new token is written to the Secret
//! `tug-server-token` in kube-system, and every server follows it — it accepts the new token alone from
//! then on and rewrites its `<data-dir>/server/token`, also when it restarts with the old `--token`.
//! Agents and servers that join later need the new token (their `TUG_TOKEN` updated); nodes already
//! joined keep running on their certificates.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

use super::Token;

pub const SECRET_NAME: &str = "tug-server-token";
const NAMESPACE: &str = "kube-system";
const SECRET_TYPE: &str = "tug.dev/server-token";
/// How often a server looks for a rotation.
const FOLLOW_EVERY: Duration = Duration::from_secs(5);

/// The server token a server accepts now: none until the cluster's has been read once, so that a server
/// restarted with a token rotated away never accepts it.
#[derive(Debug)]
pub struct ServerToken {
    token: RwLock<Token>,
    settled: AtomicBool,
}

impl ServerToken {
    pub fn new(token: Token) -> Arc<ServerToken> {
        Arc::new(ServerToken { token: RwLock::new(token), settled: AtomicBool::new(false) })
    }

    /// The token to accept; None while the cluster's has not been read yet.
    pub fn current(&self) -> Option<Token> {
        self.settled.load(Ordering::Acquire).then(|| self.get())
    }

    fn get(&self) -> Token {
        self.token.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn set(&self, token: Token) {
        *self.token.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = token;
    }
}

/// Records `token` as the cluster's server token (the servers follow within seconds).
pub async fn rotate(client: &kube::Client, token: &Token) -> kube::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(SECRET_NAME.into()),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        type_: Some(SECRET_TYPE.into()),
        string_data: Some([("token".to_string(), token.to_string())].into()),
        ..Default::default()
    };
    secrets.patch(SECRET_NAME, &PatchParams::apply("tug").force(), &Patch::Apply(&secret)).await?;
    Ok(())
}

/// What a server needs to follow rotations.
pub struct Follower {
    pub client: kube::Client,
    pub token: Arc<ServerToken>,
    /// `<data-dir>/server`, where the token file is.
    pub server_dir: PathBuf,
    pub ca_pem: String,
}

impl Follower {
    /// Takes the rotated token, if there is one and it differs from the one in use.
    pub async fn adopt(&self) -> anyhow::Result<()> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), NAMESPACE);
        let Some(secret) = secrets.get_opt(SECRET_NAME).await? else {
            self.token.settled.store(true, Ordering::Release);
            return Ok(());
        };
        let text =
            secret.data.as_ref().and_then(|d| d.get("token")).map(|b| String::from_utf8_lossy(&b.0).into_owned());
        let rotated = match Token::parse(text.as_deref().unwrap_or_default()) {
            Ok(rotated) => rotated,
            Err(error) => {
                // Joins go on with the token in use rather than stop for ever.
                tracing::warn!(%error, "the Secret {NAMESPACE}/{SECRET_NAME} holds no usable token; ignoring it");
                self.token.settled.store(true, Ordering::Release);
                return Ok(());
            }
        };
        let rotated = Token::for_ca(&self.ca_pem, &rotated.secret);
        if rotated.secret != self.token.get().secret {
            write_token_file(&self.server_dir, &rotated)?;
            self.token.set(rotated);
            tracing::info!("the server token was rotated; following it (update TUG_TOKEN where it is set)");
        }
        self.token.settled.store(true, Ordering::Release);
        Ok(())
    }

    /// Adopts rotations until dropped.
    pub async fn follow(self) {
        loop {
            tokio::time::sleep(FOLLOW_EVERY).await;
            if let Err(error) = self.adopt().await {
                tracing::warn!(%error, "cannot read the cluster's server token");
            }
        }
    }
}

/// Writes `token` in full to `<server_dir>/token` (0600), for operators to hand to joining nodes.
pub fn write_token_file(server_dir: &Path, token: &Token) -> anyhow::Result<()> {
    let path = server_dir.join("token");
    let text = format!("{token}\n");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        crate::fsutil::write_atomic(&path, text.as_bytes(), 0o600)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
