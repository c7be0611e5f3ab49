//! Tests of the decoder: real kubectl 1.33 bodies against the JSON kubectl sends for the same
//! commands (tests/fixtures/protobuf/, see capture.py there), hand-built messages for the zero-value
//! rule and the special types, and malformed input, which must give errors, never panics.

use serde_json::{json, Value};

use super::{decode, ProtobufError};

/// (name, protobuf body from kubectl 1.33, JSON body of the same command from kubectl 1.29, which
/// is identical to kubectl 1.33's `--dry-run=client -o json`): every NAME.pb beside its NAME.json.
fn fixtures() -> Vec<(String, Vec<u8>, Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/protobuf");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .filter_map(|entry| {
            let path = entry.expect("entry").path();
            let name = path.file_name()?.to_str()?.strip_suffix(".pb")?.to_string();
            let json = std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("NAME.json");
            Some((name, std::fs::read(&path).expect("NAME.pb"), serde_json::from_str(&json).expect("JSON")))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 18, "fixtures missing from {}", dir.display());
    out
}

fn fixture(name: &str) -> Value {
    let (_, body, _) = fixtures().into_iter().find(|f| f.0 == name).expect("fixture");
    decode(&body).expect("fixture decodes")
}

/// Exact equality: the zero scalars Go's protobuf marshaller writes for non-pointer omitempty
/// fields (generateName "", hostPort 0, nodePort 0, status.phase "", ...) are dropped, pointer and
/// non-omitempty zeros kept, and nil non-omitempty pointers and slices come out null, so nothing
/// needs to be normalised before comparing.
#[test]
fn kubectl_bodies_decode_to_the_json_kubectl_sends() {
    for (name, body, expected) in fixtures() {
        let decoded = decode(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, expected, "{name}");
    }
}

#[test]
fn zeros_follow_go_json() {
    // Pointers set to zero survive.
    assert_eq!(fixture("deployment-zero-replicas")["spec"]["replicas"], json!(0));
    // Non-omitempty fields are written by Go's JSON even when zero.
    assert_eq!(fixture("priorityclass-zero")["value"], json!(0));
    // The wire carries `nodePort: 0` (non-pointer, omitempty); Go's JSON and the decoder omit it.
    let service = fixture("service-nodeport");
    assert_eq!(service["spec"]["ports"][0].get("nodePort"), None);
    assert_eq!(service["metadata"].get("generateName"), None);
    assert_eq!(service["metadata"]["creationTimestamp"], Value::Null);
    // Nil non-omitempty pointer and slice: null, as Go's JSON writes them.
    let token = fixture("token");
    assert_eq!(token["spec"], json!({"audiences": null, "expirationSeconds": 3600, "boundObjectRef": null}));
    assert_eq!(token["status"]["token"], json!(""));
}

#[test]
fn special_types_in_fixtures() {
    let configmap = fixture("configmap");
    assert_eq!(configmap["binaryData"]["blob.bin"], json!("AAEC//4gYmluYXJ5"));
    assert_eq!(configmap["data"]["greeting.txt"], json!("hello\nworld\n"));
    assert_eq!(fixture("pdb-percent")["spec"]["minAvailable"], json!("50%"));
    assert_eq!(fixture("pdb-int")["spec"]["maxUnavailable"], json!(1));
    assert_eq!(fixture("quota")["spec"]["hard"], json!({"cpu": "1", "memory": "1Gi", "pods": "2"}));
    assert_eq!(fixture("service-nodeport")["spec"]["ports"][0]["targetPort"], json!(8080));
}

// A minimal protobuf writer for hand-built bodies.
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

fn int(number: u32, v: i64) -> Vec<u8> {
    [varint(u64::from(number) << 3), varint(v as u64)].concat()
}

fn len(number: u32, bytes: &[u8]) -> Vec<u8> {
    [varint(u64::from(number) << 3 | 2), varint(bytes.len() as u64), bytes.to_vec()].concat()
}

fn msg(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn body(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = msg(&[len(1, api_version.as_bytes()), len(2, kind.as_bytes())]);
    [b"k8s\x00".to_vec(), len(1, &type_meta), len(2, raw), len(3, b""), len(4, b"")].concat()
}

#[test]
fn pod_zero_values_inline_and_packed_fields() {
    let port = msg(&[len(1, b""), int(2, 0), int(3, 0), len(4, b""), len(5, b"")]);
    let probe = len(1, &len(2, &msg(&[len(1, b"/healthz"), len(2, &msg(&[int(1, 1), len(3, b"http")]))])));
    let container = msg(&[len(1, b"c"), len(2, b""), len(6, &port), len(10, &probe)]);
    let volume = msg(&[len(1, b"v"), len(2, &len(19, &msg(&[len(1, &len(1, b"cm")), int(3, 0o644)])))]);
    let security = msg(&[int(2, 0), len(4, &msg(&[varint(1), varint(2)])), int(4, 3)]);
    let spec = msg(&[len(1, &volume), len(2, &container), int(4, 0), len(14, &security), int(30, 0)]);
    let pod = msg(&[len(1, &len(2, b"p-")), len(2, &spec), len(3, &len(1, b""))]);
    let expected = json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"generateName": "p-"},
        "spec": {
            "volumes": [{"name": "v", "configMap": {"name": "cm", "defaultMode": 420}}],
            "containers": [{
                "name": "c",
                "ports": [{"containerPort": 0}],
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
            }],
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsUser": 0, "supplementalGroups": [1, 2, 3]},
            "enableServiceLinks": false,
        },
        "status": {},
    });
    assert_eq!(decode(&body("v1", "Pod", &pod)).expect("pod"), expected);
}

#[test]
fn eviction_keeps_a_zero_grace_period() {
    let options = msg(&[int(1, 0), len(5, b"All")]);
    let eviction = msg(&[len(1, &msg(&[len(1, b"victim"), len(3, b"default")])), len(2, &options)]);
    let decoded = decode(&body("policy/v1", "Eviction", &eviction)).expect("eviction");
    assert_eq!(decoded["deleteOptions"], json!({"gracePeriodSeconds": 0, "dryRun": ["All"]}));
    assert_eq!(decoded["metadata"], json!({"name": "victim", "namespace": "default"}));
}

#[test]
fn times_raw_json_and_unknown_fields() {
    let created = msg(&[int(1, 1_700_000_000), int(2, 5)]);
    let managed = msg(&[len(1, b"kubectl"), len(4, &int(1, 0)), len(7, &len(1, br#"{"f:data":{}}"#))]);
    let meta = msg(&[len(1, b"r"), len(8, &created), len(9, &int(1, -62_135_596_800)), len(17, &managed)]);
    let unknown =
        msg(&[int(99, 7), len(98, b"x"), vec![0xa5, 0x06, 1, 2, 3, 4], vec![0xa1, 0x06, 0, 0, 0, 0, 0, 0, 0, 0]]);
    let revision = msg(&[len(1, &meta), len(2, &len(1, br#"{"spec":{"a":[1,"b"]}}"#)), int(3, 2), unknown]);
    let decoded = decode(&body("apps/v1", "ControllerRevision", &revision)).expect("revision");
    assert_eq!(
        decoded,
        json!({
            "kind": "ControllerRevision", "apiVersion": "apps/v1",
            "metadata": {
                "name": "r",
                "creationTimestamp": "2023-11-14T22:13:20Z",
                "deletionTimestamp": null,
                "managedFields": [{"manager": "kubectl", "time": "1970-01-01T00:00:00Z", "fieldsV1": {"f:data": {}}}],
            },
            "data": {"spec": {"a": [1, "b"]}},
            "revision": 2,
        })
    );
    let event = msg(&[len(1, &len(1, b"e")), len(2, &msg(&[int(1, 1_700_000_000), int(2, 123_456_789)]))]);
    let decoded = decode(&body("events.k8s.io/v1", "Event", &event)).expect("event");
    assert_eq!(decoded["eventTime"], json!("2023-11-14T22:13:20.123456Z"));
    // A RawExtension may itself hold a protobuf body.
    let inner = body("v1", "ConfigMap", &len(1, &len(1, b"inner")));
    let revision = msg(&[len(1, &len(1, b"r")), len(2, &len(1, &inner))]);
    let decoded = decode(&body("apps/v1", "ControllerRevision", &revision)).expect("nested");
    assert_eq!(decoded["data"], json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "inner"}}));
}

#[test]
fn maps_list_wrappers_and_schema_unions() {
    let extra = msg(&[len(1, b"scopes"), len(2, &msg(&[len(1, b"a"), len(1, b"b")]))]);
    let spec = msg(&[len(3, b"alice"), len(5, &extra), len(5, &len(1, b"empty"))]);
    let review = msg(&[len(1, b""), len(2, &spec)]);
    let decoded = decode(&body("authorization.k8s.io/v1", "SubjectAccessReview", &review)).expect("review");
    assert_eq!(decoded["spec"], json!({"user": "alice", "extra": {"scopes": ["a", "b"], "empty": []}}));

    let string_props = len(5, b"string");
    let props = msg(&[
        len(5, b"object"),
        len(24, &len(2, &string_props)),
        len(30, &int(1, 0)),
        len(32, &msg(&[len(1, b"a"), len(2, &len(2, b"b"))])),
        len(28, &len(28, &string_props)),
    ]);
    let version = msg(&[len(1, b"v1"), int(2, 1), int(3, 1), len(4, &len(1, &props))]);
    let spec = msg(&[len(1, b"example.com"), len(4, b"Namespaced"), len(7, &version)]);
    let crd = msg(&[len(1, &len(1, b"things.example.com")), len(2, &spec)]);
    let decoded = decode(&body("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd)).expect("crd");
    assert_eq!(
        decoded["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        json!({
            "type": "object",
            "items": [{"type": "string"}],
            "additionalProperties": false,
            "dependencies": {"a": ["b"]},
            "not": {"not": {"type": "string"}},
        })
    );
}

fn err(body: &[u8]) -> ProtobufError {
    match decode(body) {
        Ok(value) => panic!("expected an error, got {value}"),
        Err(e) => e,
    }
}

#[test]
fn malformed_bodies_are_errors() {
    let configmap = |raw: &[u8]| body("v1", "ConfigMap", raw);
    assert!(matches!(err(b""), ProtobufError::Empty));
    assert!(matches!(err(b"k8s\x00"), ProtobufError::Empty));
    assert!(matches!(err(b"{\"kind\":\"ConfigMap\"}"), ProtobufError::MissingPrefix));
    assert!(matches!(err(&body("v1", "", b"")), ProtobufError::MissingKind));
    assert!(matches!(err(&body("", "ConfigMap", b"")), ProtobufError::MissingVersion));
    assert!(matches!(err(&body("v1", "Nope", b"")), ProtobufError::UnknownKind { .. }));
    let cases: Vec<Vec<u8>> = vec![
        [b"k8s\x00".to_vec(), vec![0x0a]].concat(),             // truncated length
        [b"k8s\x00".to_vec(), vec![0x0a, 0x05, 0x0a]].concat(), // length past the end
        [b"k8s\x00".to_vec(), vec![0x08, 0x80, 0x80]].concat(), // truncated varint
        [b"k8s\x00".to_vec(), vec![0x0b, 0x0c]].concat(),       // group wire type
        [b"k8s\x00".to_vec(), vec![0x12; 3]].concat(),          // raw length past the end
        configmap(&int(1, 5)),                                  // metadata as a varint
        configmap(&len(4, b"x")),                               // bool as bytes
        configmap(&len(2, &[0x0a, 0x09])),                      // map entry key too long
        configmap(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // huge length
        configmap(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // 11-byte varint
        body("v1", "Service", &len(2, &len(1, &len(4, &int(1, 7))))), // IntOrString type 7
        body("apps/v1", "ControllerRevision", &len(2, &len(1, b"{not json"))),
        body("v1", "ResourceQuota", &len(2, &len(1, &msg(&[len(1, b"cpu"), len(2, &len(1, b""))])))),
        body("v1", "Pod", &len(1, &len(8, &int(1, i64::MAX)))), // time out of range
    ];
    for (i, case) in cases.iter().enumerate() {
        assert!(matches!(err(case), ProtobufError::Malformed { .. }), "case {i}");
    }
    let nan = msg(&[vec![0x49], f64::NAN.to_bits().to_le_bytes().to_vec()]);
    let version = msg(&[len(1, b"v1"), len(4, &len(1, &nan))]);
    let crd = body("apiextensions.k8s.io/v1", "CustomResourceDefinition", &len(2, &len(7, &version)));
    let message = err(&crd).to_string();
    assert!(message.contains("spec.versions.schema.openAPIV3Schema.maximum"), "{message}");
}

#[test]
fn deep_nesting_is_refused() {
    let mut props = len(5, b"string");
    for _ in 0..200 {
        props = len(28, &props);
    }
    let version = msg(&[len(1, b"v1"), len(4, &len(1, &props))]);
    let crd = body("apiextensions.k8s.io/v1", "CustomResourceDefinition", &len(2, &len(7, &version)));
    assert!(err(&crd).to_string().contains("nested deeper"));
    let mut nested = body("v1", "ConfigMap", b"");
    for _ in 0..200 {
        nested = body("apps/v1", "ControllerRevision", &len(2, &len(1, &nested)));
    }
    assert!(err(&nested).to_string().contains("nested deeper"));
}

#[test]
fn damaged_fixtures_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for (_, body, _) in fixtures() {
        for end in 0..body.len() {
            let _ = decode(&body[..end]);
        }
        for _ in 0..300 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut damaged = body.to_vec();
            let at = (seed as usize) % damaged.len();
            damaged[at] = (seed >> 32) as u8;
            let _ = decode(&damaged);
        }
    }
}
