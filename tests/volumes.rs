//! Pod volumes on the real runtime (root, containerd): configMap (updated in place after a change, a
//! renamed item, a subPath file), secret (on a tmpfs), downwardAPI, projected, emptyDir shared by two
//! containers (and on a tmpfs with `medium: Memory`), hostPath, and a claim bound to a hostPath volume;
//! the service account token, CA and namespace every pod gets (the token a credential for the API
//! until the pod goes); a source deleted under a running pod leaves it running; a missing ConfigMap
//! holds a new pod in ContainerCreating with FailedMount; a deleted pod leaves nothing.

mod common;

use std::time::Duration;

use common::{eventually_within, jsonpath, kubectl, kubectl_with_token, kubectls, node};

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: vols
  labels: {app: vols, tier: back}
  annotations: {note: 'say "hi"'}
spec:
  containers:
  - name: app
    image: tug.local/busybox:1
    command: [sh, -c, 'echo shared-hello > /shared/greeting; sleep 3600']
    volumeMounts:
    - {name: cfg, mountPath: /etc/cfg}
    - {name: cfg, mountPath: /etc/color.conf, subPath: color}
    - {name: creds, mountPath: /etc/creds}
    - {name: info, mountPath: /etc/info}
    - {name: all, mountPath: /etc/all}
    - {name: shared, mountPath: /shared}
    - {name: scratch, mountPath: /scratch}
    - {name: host, mountPath: /host}
    - {name: data, mountPath: /data}
  - name: reader
    image: tug.local/busybox:1
    command: [sleep, '3600']
    volumeMounts:
    - {name: shared, mountPath: /from-app, readOnly: true}
  volumes:
  - name: cfg
    configMap: {name: settings, items: [{key: color, path: color}, {key: size, path: dims/size}]}
  - name: creds
    secret: {secretName: creds, defaultMode: 0400}
  - name: info
    downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}, {path: labels, fieldRef: {fieldPath: metadata.labels}}, {path: notes, fieldRef: {fieldPath: metadata.annotations}}]}
  - name: all
    projected: {sources: [{configMap: {name: settings}}, {secret: {name: creds}}, {downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace}}]}}]}
  - name: shared
    emptyDir: {}
  - name: scratch
    emptyDir: {medium: Memory, sizeLimit: 16Mi}
  - name: host
    hostPath: {path: HOST_DIR/made, type: DirectoryOrCreate}
  - name: data
    persistentVolumeClaim: {claimName: data}
"#;

const CLAIM: &str = r#"apiVersion: v1
kind: PersistentVolume
metadata: {name: local-data}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: HOST_DIR/pv}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
  volumeName: local-data
  storageClassName: ""
"#;

#[test]
fn volumes_show_their_sources_update_in_place_and_go_with_the_pod() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let server = node::ready_server();
    let bin = &kubectls()[0];
    let host_dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(host_dir.path().join("pv")).expect("pv dir");
    std::fs::write(host_dir.path().join("pv/stored"), "kept on the node\n").expect("pv file");
    let with_host = |text: &str| text.replace("HOST_DIR", &host_dir.path().to_string_lossy());
    let run = |args: &[&str], stdin: Option<&str>| kubectl(bin, &server, args, stdin);
    run(&["create", "configmap", "settings", "--from-literal=color=blue", "--from-literal=size=9"], None).ok();
    run(&["create", "secret", "generic", "creds", "--from-literal=password=s3cret"], None).ok();
    run(&["apply", "-f", "-"], Some(&with_host(CLAIM))).ok();
    run(&["apply", "-f", "-"], Some(&with_host(POD))).ok();
    eventually_within(Duration::from_secs(60), "the pod runs", || {
        jsonpath(bin, &server, &["pod", "vols"], "{.status.phase}") == "Running"
    });
    let exec = |container: &str, script: &str| {
        run(&["exec", "vols", "-c", container, "--", "sh", "-c", script], None).ok().stdout
    };
    assert_eq!(exec("app", "cat /etc/cfg/color /etc/cfg/dims/size; echo; cat /etc/color.conf"), "blue9\nblue");
    assert_eq!(exec("app", "cat /etc/creds/password; stat -L -c %a /etc/creds/password"), "s3cret400\n");
    assert!(exec("app", "grep ' /etc/creds ' /proc/mounts").contains("tmpfs"), "secrets stay off the disk");
    assert_eq!(exec("app", "cat /etc/info/name; echo; cat /etc/info/labels"), "vols\napp=\"vols\"\ntier=\"back\"");
    assert_eq!(exec("app", "tail -n 1 /etc/info/notes"), r#"note="say \"hi\"""#);
    assert_eq!(exec("app", "cat /etc/all/color /etc/all/password /etc/all/ns"), "blues3cretdefault");
    assert_eq!(exec("reader", "cat /from-app/greeting"), "shared-hello\n", "emptyDir is shared by the containers");
    assert!(exec("app", "grep ' /scratch ' /proc/mounts").contains("tmpfs"), "medium: Memory is a tmpfs");
    exec("app", "echo from-the-pod > /host/note");
    assert_eq!(std::fs::read_to_string(host_dir.path().join("made/note")).expect("hostPath file"), "from-the-pod\n");
    assert_eq!(exec("app", "cat /data/stored"), "kept on the node\n");
    // The service account token the pod was given is a credential for the API, bound to the pod.
    let account_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    let token = exec("reader", &format!("cat {account_dir}/token"));
    let whoami = || kubectl_with_token(bin, &server, &token, &["auth", "whoami", "-o", "json"]);
    let me = whoami().ok().stdout;
    assert!(me.contains("system:serviceaccount:default:default") && me.contains(r#""vols""#), "{me}");
    let ca = std::fs::read_to_string(server.data_dir().join("server/tls/server-ca.crt")).expect("CA");
    assert_eq!(exec("app", &format!("cat {account_dir}/ca.crt")).trim(), ca.trim());
    assert_eq!(exec("app", &format!("cat {account_dir}/namespace")), "default");
    let read_only = run(&["exec", "vols", "-c", "app", "--", "sh", "-c", "echo x > /etc/cfg/new"], None);
    assert_ne!(read_only.code, 0, "configMap volumes are read-only");

    // A changed ConfigMap shows in the pod (the subPath file keeps what it had, as upstream).
    run(&["patch", "configmap", "settings", "-p", r#"{"data":{"color":"green"}}"#], None).ok();
    eventually_within(Duration::from_secs(40), "the new value shows in the volume", || {
        exec("app", "cat /etc/cfg/color") == "green"
    });
    assert_eq!(exec("app", "cat /etc/all/color"), "green");
    assert_eq!(exec("app", "cat /etc/color.conf"), "blue");

    // A source deleted under a running pod is reported, and the pod keeps running on the files it has.
    run(&["delete", "configmap", "settings"], None).ok();
    eventually_within(Duration::from_secs(30), "the failed refresh is reported", || {
        let events = run(&["get", "events", "--field-selector", "involvedObject.name=vols"], None).stdout;
        events.contains("FailedMount")
    });
    assert_eq!(jsonpath(bin, &server, &["pod", "vols"], r#"{.status.conditions[?(@.type=="Ready")].status}"#), "True");
    assert_eq!(exec("app", "cat /etc/cfg/color"), "green");

    // A missing ConfigMap holds a new pod back with the reason.
    let broken = "apiVersion: v1\nkind: Pod\nmetadata: {name: broken}\nspec:\n  containers:\n  - {name: app, image: tug.local/busybox:1, command: [sleep, '60'], volumeMounts: [{name: cfg, mountPath: /cfg}]}\n  volumes:\n  - {name: cfg, configMap: {name: nowhere}}\n";
    run(&["apply", "-f", "-"], Some(broken)).ok();
    eventually_within(Duration::from_secs(30), "FailedMount is reported", || {
        let events = run(&["get", "events", "--field-selector", "involvedObject.name=broken"], None).stdout;
        events.contains("FailedMount") && events.contains(r#"configmap "nowhere" not found"#)
    });
    assert_eq!(
        jsonpath(bin, &server, &["pod", "broken"], "{.status.containerStatuses[0].state.waiting.reason}"),
        "ContainerCreating"
    );

    // Deleting the pod removes its volumes: no directory, nothing mounted.
    let uid = jsonpath(bin, &server, &["pod", "vols"], "{.metadata.uid}");
    run(&["delete", "pod", "vols", "broken", "--grace-period=1"], None).ok();
    let pod_dir = server.data_dir().join("agent/pods").join(&uid);
    eventually_within(Duration::from_secs(30), "the pod's directory is gone", || !pod_dir.exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(&uid), "mounts of the pod are left:\n{mounts}");
    assert!(host_dir.path().join("pv/stored").exists(), "the claim's data stays");
    eventually_within(Duration::from_secs(30), "the pod's token ends with the pod", || {
        whoami().stderr.contains("Unauthorized")
    });
}
