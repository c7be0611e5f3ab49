//! The fault tests' workload: concurrent clients, each bound to one server, reading and
//! compare-and-setting ConfigMaps `reg-<n>` (a register each) through the Kubernetes API, recording
//! every operation with its invocation and answer times for the linearizability checker. A
//! compare-and-set writes a value unique to it, with the resourceVersion read with the old value as
//! precondition. Outcomes: success; 409 (the register held another value); refused connection (not
//! sent, left out); anything else unknown.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;

use super::linearizability::{Action, Operation};

pub const KEYS: usize = 4;

/// Every recorded operation, and each acknowledged write's register, value and resourceVersion.
pub struct History {
    started: Instant,
    operations: Mutex<Vec<Operation>>,
    written: Mutex<Vec<Written>>,
}

/// An acknowledged write: register, value, resourceVersion.
pub type Written = (String, String, u64);

impl History {
    pub fn new() -> Arc<History> {
        Arc::new(History { started: Instant::now(), operations: Mutex::new(Vec::new()), written: Default::default() })
    }

    /// The acknowledged writes.
    pub fn written(&self) -> Vec<Written> {
        self.written.lock().unwrap().clone()
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn record(&self, key: &str, call: u64, ret: Option<u64>, action: Action) {
        let operation = Operation { key: key.into(), call, ret, action };
        self.operations.lock().unwrap().push(operation);
    }

    pub fn operations(&self) -> Vec<Operation> {
        self.operations.lock().unwrap().clone()
    }
}

/// A client of the server whose admin kubeconfig is `kubeconfig`, giving up on a request after 5 s,
/// never retrying by itself.
pub async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("config");
    config.connect_timeout = Some(Duration::from_secs(2));
    config.read_timeout = Some(Duration::from_secs(5));
    config.write_timeout = Some(Duration::from_secs(5));
    // kube-rs retries 503 and 504 by default, a write too: a retried write that had taken effect would
    // be recorded with the retry's answer (409), not as the unknown outcome it is.
    config.default_retry = false;
    kube::Client::try_from(config).expect("client")
}

/// Whether the request certainly never reached a server.
fn not_sent(error: &kube::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = error.source();
    }
    false
}

/// Reads register `key`: its value and resourceVersion; None when the read failed.
pub async fn read(api: &Api<ConfigMap>, history: &History, key: &str) -> Option<(Option<String>, Option<String>)> {
    let call = history.now();
    let answer = api.get_opt(key).await;
    let ret = history.now();
    let read = match answer {
        Ok(Some(cm)) => {
            let value = cm.data.as_ref().and_then(|data| data.get("v")).cloned();
            (Some(value.expect("a register has a value")), cm.metadata.resource_version)
        }
        Ok(None) => (None, None),
        Err(_) => return None,
    };
    history.record(key, call, Some(ret), Action::Read(read.0.clone()));
    Some(read)
}

/// Replaces `old` (read at `version`) with `new` in register `key`; whether the answer was definite.
async fn compare_and_set(
    api: &Api<ConfigMap>,
    history: &History,
    key: &str,
    (old, version): (Option<String>, Option<String>),
    new: String,
) -> bool {
    let cm = ConfigMap {
        metadata: ObjectMeta { name: Some(key.into()), resource_version: version, ..Default::default() },
        data: Some(BTreeMap::from([("v".to_string(), new.clone())])),
        ..Default::default()
    };
    let call = history.now();
    let answer = match old {
        None => api.create(&PostParams::default(), &cm).await,
        Some(_) => api.replace(key, &PostParams::default(), &cm).await,
    };
    let ret = history.now();
    match answer {
        Ok(written) => {
            let version = written.metadata.resource_version.and_then(|v| v.parse().ok());
            let version = version.expect("an acknowledged write has a resourceVersion");
            history.written.lock().unwrap().push((key.into(), new.clone(), version));
            history.record(key, call, Some(ret), Action::CasOk { old, new })
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            history.record(key, call, Some(ret), Action::CasFailed { old })
        }
        Err(error) if not_sent(&error) => return false,
        Err(_) => {
            history.record(key, call, None, Action::CasUnknown { old, new });
            return false;
        }
    }
    true
}

/// Client `id`: reads and compare-and-sets random registers through `client` until `stop`.
pub async fn run(id: usize, client: kube::Client, history: Arc<History>, stop: Arc<AtomicBool>) {
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut random = 0x9e37_79b9_7f4a_7c15_u64 ^ (id as u64 + 1);
    let mut sequence = 0;
    while !stop.load(Ordering::Relaxed) {
        // xorshift: a fixed, reproducible sequence per client.
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        let key = format!("reg-{}", random % KEYS as u64);
        let definite = match read(&api, &history, &key).await {
            Some(read) if !random.is_multiple_of(3) => {
                sequence += 1;
                compare_and_set(&api, &history, &key, read, format!("{id}-{sequence}")).await
            }
            Some(_) => true,
            None => false,
        };
        if !definite {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
