//! Everyday kubectl verbs against a real `tug server`, with the newest kubectl and 1.29.

mod common;

use common::{eventually, jsonpath, kubectl, kubectls, TugServer};

fn version_tag(bin: &std::path::Path) -> String {
    bin.file_name().map(|n| n.to_string_lossy().replace("kubectl", "k").replace('.', "")).unwrap_or_default()
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: NAME
  labels: {app: NAME}
spec:
  replicas: 2
  selector:
    matchLabels: {app: NAME}
  template:
    metadata:
      labels: {app: NAME}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports: [{containerPort: 80}]
      - name: sidecar
        image: busybox:1.36
"#;

#[test]
fn api_resources_lists_every_group() {
    let server = TugServer::start();
    for bin in kubectls() {
        let out = kubectl(&bin, &server, &["api-resources"], None).ok().stdout;
        for needle in [
            "deployments",
            "deploy",
            "apps/v1",
            "cronjobs",
            "leases",
            "endpointslices",
            "horizontalpodautoscalers",
            "certificatesigningrequests",
        ] {
            assert!(out.contains(needle), "{needle} missing from api-resources:\n{out}");
        }
        let versions = kubectl(&bin, &server, &["api-versions"], None).ok().stdout;
        assert!(versions.contains("autoscaling/v2") && versions.contains("rbac.authorization.k8s.io/v1"));
    }
}

#[test]
fn apply_reapply_merges_containers_by_name_and_diff_shows_changes() {
    let server = TugServer::start();
    for bin in kubectls() {
        let name = format!("web-{}", version_tag(&bin));
        let manifest = DEPLOYMENT.replace("NAME", &name);
        let out = kubectl(&bin, &server, &["apply", "-f", "-"], Some(&manifest)).ok().stdout;
        assert!(out.contains("created"), "{out}");
        let again = kubectl(&bin, &server, &["apply", "-f", "-"], Some(&manifest)).ok().stdout;
        assert!(again.contains("unchanged"), "{again}");

        let changed = manifest.replace("nginx:1.25", "nginx:1.26");
        let diff = kubectl(&bin, &server, &["diff", "-f", "-"], Some(&changed));
        assert_eq!(diff.code, 1, "diff exits 1 when there are differences: {}", diff.stderr);
        assert!(
            diff.stdout.contains("-      - image: nginx:1.25") && diff.stdout.contains("+      - image: nginx:1.26"),
            "{}",
            diff.stdout
        );

        kubectl(&bin, &server, &["apply", "-f", "-"], Some(&changed)).ok();
        let images = kubectl(
            &bin,
            &server,
            &[
                "get",
                "deploy",
                &name,
                "-o",
                "jsonpath={.spec.template.spec.containers[*].image} {.metadata.generation}",
            ],
            None,
        )
        .ok()
        .stdout;
        assert_eq!(images, "nginx:1.26 busybox:1.36 2");
        // A container removed from the manifest is removed from the object (three-way merge).
        let one = changed.replace("      - name: sidecar\n        image: busybox:1.36\n", "");
        kubectl(&bin, &server, &["apply", "-f", "-"], Some(&one)).ok();
        let names = kubectl(
            &bin,
            &server,
            &["get", "deploy", &name, "-o", "jsonpath={.spec.template.spec.containers[*].name}"],
            None,
        )
        .ok()
        .stdout;
        assert_eq!(names, "web");
    }
}

#[test]
fn label_annotate_and_the_three_patch_types() {
    let server = TugServer::start();
    for bin in kubectls() {
        let name = format!("patch-{}", version_tag(&bin));
        let manifest = DEPLOYMENT.replace("NAME", &name);
        kubectl(&bin, &server, &["create", "-f", "-"], Some(&manifest)).ok();
        kubectl(&bin, &server, &["label", "deploy", &name, "tier=front"], None).ok();
        kubectl(&bin, &server, &["annotate", "deploy", &name, "note=hello"], None).ok();
        kubectl(&bin, &server, &["label", "deploy", &name, "tier-"], None).ok();
        kubectl(
            &bin,
            &server,
            &["patch", "deploy", &name, "--type=json", "-p", r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#],
            None,
        )
        .ok();
        kubectl(
            &bin,
            &server,
            &["patch", "deploy", &name, "--type=merge", "-p", r#"{"metadata":{"labels":{"merged":"yes"}}}"#],
            None,
        )
        .ok();
        kubectl(
            &bin,
            &server,
            &[
                "patch",
                "deploy",
                &name,
                "-p",
                r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.37"}]}}}}"#,
            ],
            None,
        )
        .ok();
        let out = kubectl(&bin, &server, &["get", "deploy", &name, "-o", "json"], None).ok().stdout;
        let obj: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(obj["metadata"]["labels"].get("tier"), None);
        assert_eq!(obj["metadata"]["labels"]["merged"], "yes");
        assert_eq!(obj["metadata"]["annotations"]["note"], "hello");
        assert_eq!(obj["spec"]["replicas"], 4);
        let containers = obj["spec"]["template"]["spec"]["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 2, "strategic merge keeps the other container");
        assert_eq!(containers[0]["image"], "nginx:1.25");
        assert_eq!(containers[1]["image"], "busybox:1.37");
        let bad = kubectl(
            &bin,
            &server,
            &["patch", "deploy", &name, "--type=json", "-p", r#"[{"op":"remove","path":"/spec/nope"}]"#],
            None,
        );
        assert_ne!(bad.code, 0);

        kubectl(&bin, &server, &["scale", "deploy", &name, "--replicas=7"], None).ok();
        let replicas = jsonpath(&bin, &server, &["deploy", &name], "{.spec.replicas}");
        assert_eq!(replicas, "7");
    }
}

#[test]
fn conflicts_duplicates_and_invalid_names_are_refused_as_upstream_does() {
    let server = TugServer::start();
    for bin in kubectls() {
        let name = format!("cm-{}", version_tag(&bin));
        let cm = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  a: '1'\n");
        kubectl(&bin, &server, &["create", "-f", "-"], Some(&cm)).ok();
        let twice = kubectl(&bin, &server, &["create", "-f", "-"], Some(&cm));
        assert_ne!(twice.code, 0);
        assert!(twice.stderr.contains(&format!("configmaps \"{name}\" already exists")), "{}", twice.stderr);

        let stale = kubectl(&bin, &server, &["get", "cm", &name, "-o", "yaml"], None).ok().stdout;
        kubectl(&bin, &server, &["label", "cm", &name, "bump=1"], None).ok();
        let replaced = kubectl(&bin, &server, &["replace", "-f", "-"], Some(&stale));
        assert_ne!(replaced.code, 0);
        assert!(
            replaced.stderr.contains(
                "the object has been modified; please apply your changes to the latest version and try again"
            ),
            "{}",
            replaced.stderr
        );

        let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n";
        let invalid = kubectl(&bin, &server, &["create", "-f", "-"], Some(bad));
        assert_ne!(invalid.code, 0);
        assert!(invalid.stderr.contains("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{}", invalid.stderr);

        let missing_ns = kubectl(&bin, &server, &["get", "cm", "-n", "nowhere", "x"], None);
        // kubectl 1.31+ looks the namespace up after a NotFound and names it instead.
        let named = missing_ns.stderr.contains("configmaps \"x\" not found")
            || missing_ns.stderr.contains("namespaces \"nowhere\" not found");
        assert!(named, "{}", missing_ns.stderr);
        let pod = |name: &str, cpu: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: nginx\n    resources:\n      requests:\n        cpu: {cpu}\n")
        };
        let quantity = kubectl(&bin, &server, &["create", "-f", "-"], Some(&pod("bad-cpu", "1x")));
        assert_ne!(quantity.code, 0);
        assert!(
            quantity.stderr.contains("spec.containers[0].resources.requests[cpu]: Invalid value"),
            "{}",
            quantity.stderr
        );
        let number = format!("cpu-{}", version_tag(&bin));
        kubectl(&bin, &server, &["create", "-f", "-"], Some(&pod(&number, "1"))).ok();
        let cpu = jsonpath(&bin, &server, &["pod", &number], "{.spec.containers[0].resources.requests.cpu}");
        assert_eq!(cpu, "1", "a number in YAML is kept as a quantity");
        let unknown_field = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: strict-check\ndatta: {}\n";
        let strict = kubectl(&bin, &server, &["create", "-f", "-"], Some(unknown_field));
        assert_ne!(strict.code, 0, "kubectl validates strictly by default");
        assert!(strict.stderr.contains("unknown field \"datta\""), "{}", strict.stderr);
    }
}

#[test]
fn get_output_formats_and_selectors() {
    let server = TugServer::start();
    let bin = &kubectls()[0];
    let manifest = DEPLOYMENT.replace("NAME", "fmt");
    kubectl(bin, &server, &["apply", "-f", "-"], Some(&manifest)).ok();
    for i in 0..3 {
        let cm =
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sel-{i}\n  labels: {{group: g{}}}\n", i % 2);
        kubectl(bin, &server, &["apply", "-f", "-"], Some(&cm)).ok();
    }
    let table = kubectl(bin, &server, &["get", "deploy"], None).ok().stdout;
    assert!(
        table.starts_with("NAME") && table.contains("READY") && table.contains("UP-TO-DATE") && table.contains("fmt"),
        "{table}"
    );
    let wide = kubectl(bin, &server, &["get", "deploy", "-o", "wide"], None).ok().stdout;
    assert!(
        wide.contains("CONTAINERS") && wide.contains("nginx:1.25,busybox:1.36") && wide.contains("app=fmt"),
        "{wide}"
    );
    let yaml = kubectl(bin, &server, &["get", "deploy", "fmt", "-o", "yaml"], None).ok().stdout;
    assert!(yaml.contains("kind: Deployment") && yaml.contains("resourceVersion:") && yaml.contains("uid:"), "{yaml}");
    let uid = jsonpath(bin, &server, &["deploy", "fmt"], "{.metadata.uid}");
    assert_eq!(uid.len(), 36, "uid is a UUID: {uid}");
    let by_label = kubectl(bin, &server, &["get", "cm", "-l", "group=g0", "-o", "name"], None).ok().stdout;
    assert_eq!(by_label.lines().collect::<Vec<_>>(), ["configmap/sel-0", "configmap/sel-2"]);
    let set_based =
        kubectl(bin, &server, &["get", "cm", "-l", "group in (g1),group notin (g0)", "-o", "name"], None).ok().stdout;
    assert_eq!(set_based.trim(), "configmap/sel-1");
    let by_field = kubectl(bin, &server, &["get", "cm", "--field-selector", "metadata.name=sel-1", "-o", "name"], None)
        .ok()
        .stdout;
    assert_eq!(by_field.trim(), "configmap/sel-1");
    let bad_field = kubectl(bin, &server, &["get", "cm", "--field-selector", "data.x=1"], None);
    assert!(bad_field.stderr.contains("field label not supported: data.x"), "{}", bad_field.stderr);
    let all = kubectl(bin, &server, &["get", "all", "-A"], None).ok().stdout;
    assert!(all.contains("service/kubernetes") && all.contains("deployment.apps/fmt"), "{all}");
    let ns = kubectl(bin, &server, &["get", "ns"], None).ok().stdout;
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(n), "{ns}");
    }
    let describe = kubectl(bin, &server, &["describe", "deploy", "fmt"], None).ok().stdout;
    assert!(describe.contains("Name:") && describe.contains("fmt") && describe.contains("Replicas:"), "{describe}");
    let describe_cm = kubectl(bin, &server, &["describe", "cm", "sel-0"], None).ok().stdout;
    assert!(describe_cm.contains("Labels:") && describe_cm.contains("group=g0"), "{describe_cm}");
}

#[test]
fn server_side_apply_tracks_owners_and_reports_conflicts() {
    let server = TugServer::start();
    for bin in kubectls() {
        let name = format!("ssa-{}", version_tag(&bin));
        let manifest = DEPLOYMENT.replace("NAME", &name);
        let first = kubectl(&bin, &server, &["apply", "--server-side", "-f", "-"], Some(&manifest)).ok().stdout;
        assert!(first.contains("serverside-applied"), "{first}");
        // The controllers write the Deployment's status after its creation; wait until they are done.
        let current_rv = || jsonpath(&bin, &server, &["deploy", &name], "{.metadata.resourceVersion}");
        let mut rv = current_rv();
        eventually("the Deployment's status settles", || {
            std::thread::sleep(std::time::Duration::from_millis(500));
            let now = current_rv();
            std::mem::replace(&mut rv, now.clone()) == now
        });
        kubectl(&bin, &server, &["apply", "--server-side", "-f", "-"], Some(&manifest)).ok();
        let rv_again = jsonpath(&bin, &server, &["deploy", &name], "{.metadata.resourceVersion}");
        assert_eq!(rv, rv_again, "re-applying the same configuration writes nothing");

        let other = manifest.replace("replicas: 2", "replicas: 5");
        let conflict =
            kubectl(&bin, &server, &["apply", "--server-side", "--field-manager=other", "-f", "-"], Some(&other));
        assert_ne!(conflict.code, 0);
        assert!(
            conflict.stderr.contains("conflict with \"kubectl\"") && conflict.stderr.contains(".spec.replicas"),
            "{}",
            conflict.stderr
        );
        kubectl(
            &bin,
            &server,
            &["apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-"],
            Some(&other),
        )
        .ok();
        let out =
            kubectl(&bin, &server, &["get", "deploy", &name, "-o", "json", "--show-managed-fields"], None).ok().stdout;
        let obj: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(obj["spec"]["replicas"], 5);
        let managers: Vec<&str> = obj["metadata"]["managedFields"]
            .as_array()
            .expect("managedFields")
            .iter()
            .filter_map(|e| e["manager"].as_str())
            .collect();
        assert!(managers.contains(&"kubectl") && managers.contains(&"other"), "{managers:?}");

        // A container kubectl stops applying stays while "other" still applies it, and goes when
        // nobody applies it any more.
        let sidecar = "      - name: sidecar\n        image: busybox:1.36\n";
        let fewer = manifest.replace(sidecar, "").replace("  replicas: 2\n", "");
        kubectl(&bin, &server, &["apply", "--server-side", "-f", "-"], Some(&fewer)).ok();
        let containers = |server: &TugServer| {
            let jsonpath = "jsonpath={.spec.template.spec.containers[*].name} {.spec.replicas}";
            kubectl(&bin, server, &["get", "deploy", &name, "-o", jsonpath], None).ok().stdout
        };
        assert_eq!(containers(&server), "web sidecar 5");
        let other_fewer = other.replace(sidecar, "");
        let args = ["apply", "--server-side", "--field-manager=other", "-f", "-"];
        kubectl(&bin, &server, &args, Some(&other_fewer)).ok();
        assert_eq!(containers(&server), "web 5");
    }
}

#[test]
fn explain_reads_the_openapi_schemas() {
    let server = TugServer::start();
    for bin in kubectls() {
        let out = kubectl(&bin, &server, &["explain", "deployment.spec.strategy"], None).ok().stdout;
        assert!(
            out.contains("KIND:")
                && out.contains("Deployment")
                && out.contains("rollingUpdate")
                && out.contains("type"),
            "{out}"
        );
        let limits = kubectl(&bin, &server, &["explain", "pod.spec.containers.resources.limits"], None).ok().stdout;
        assert!(limits.contains("Quantity"), "{limits}");
        let bogus = kubectl(&bin, &server, &["explain", "deploy.spec.bogus"], None);
        assert_ne!(bogus.code, 0);
        assert!(bogus.stderr.contains("bogus"), "{}", bogus.stderr);
    }
}

#[test]
fn typed_create_commands_work_including_protobuf_bodies() {
    // kubectl 1.32+ sends these bodies as application/vnd.kubernetes.protobuf; older ones as JSON.
    let server = TugServer::start();
    for bin in kubectls() {
        let tag = version_tag(&bin);
        kubectl(&bin, &server, &["create", "namespace", &format!("ns-{tag}")], None).ok();
        let ns = format!("ns-{tag}");
        kubectl(&bin, &server, &["-n", &ns, "create", "configmap", "cfg", "--from-literal=a=b"], None).ok();
        kubectl(&bin, &server, &["-n", &ns, "create", "secret", "generic", "sec", "--from-literal=p=q"], None).ok();
        kubectl(
            &bin,
            &server,
            &["-n", &ns, "create", "deployment", "web", "--image=nginx:1.25", "--replicas=3", "--port=80"],
            None,
        )
        .ok();
        kubectl(&bin, &server, &["-n", &ns, "create", "service", "nodeport", "web", "--tcp=80:8080"], None).ok();
        let data = jsonpath(&bin, &server, &["-n", &ns, "cm", "cfg"], "{.data.a}");
        assert_eq!(data, "b");
        let secret = jsonpath(&bin, &server, &["-n", &ns, "secret", "sec"], "{.data.p}");
        assert_eq!(secret, "cQ==", "secret data is base64 of the literal");
        let deploy = kubectl(
            &bin,
            &server,
            &[
                "-n",
                &ns,
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].ports[0].containerPort}",
            ],
            None,
        )
        .ok()
        .stdout;
        assert_eq!(deploy, "3 80");
        let port = jsonpath(&bin, &server, &["-n", &ns, "svc", "web"], "{.spec.ports[0].nodePort}");
        let port: u16 = port.parse().expect("an allocated node port");
        assert!((30000..=32767).contains(&port));
    }
}
