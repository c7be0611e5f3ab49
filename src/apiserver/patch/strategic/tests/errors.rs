//! Tests of refused patches (unsupported kinds, malformed directives and
//! lists, depth) and of robustness against random patches.

use serde_json::{json, Value};

use super::super::{strategic_merge, E};
use super::{apply, deployment};

#[test]
fn unknown_kind_is_unsupported() {
    let err = strategic_merge(&json!({}), &json!({}), "example.com", "v1", "Widget").unwrap_err();
    assert!(matches!(err, E::UnsupportedKind { .. }));
    assert!(err.to_string().contains("example.com/v1"));
}

#[test]
fn malformed_patches_are_errors() {
    let d = deployment();
    assert!(matches!(strategic_merge(&d, &json!([1]), "apps", "v1", "Deployment"), Err(E::NotAnObject { .. })));
    assert!(matches!(strategic_merge(&d, &json!("x"), "apps", "v1", "Deployment"), Err(E::NotAnObject { .. })));
    assert!(matches!(
        strategic_merge(&json!(null), &json!({}), "apps", "v1", "Deployment"),
        Err(E::NotAnObject { .. })
    ));
    let bad_type = apply(json!({"metadata": {"labels": {"$patch": "bogus"}}})).unwrap_err();
    assert_eq!(bad_type.to_string(), r#"unknown patch type: bogus in map: {"$patch":"bogus"}"#);
    assert!(matches!(apply(json!({"metadata": {"$patch": "merge"}})), Err(E::BadPatchType { .. })));
    let list = |item: Value| json!({"spec": {"template": {"spec": {"containers": [item]}}}});
    assert_eq!(apply(list(json!({"name": "app", "$patch": "merge"}))), Err(E::MergeListDirective));
    assert!(matches!(apply(list(json!({"name": "app", "$patch": 3}))), Err(E::BadPatchType { .. })));
    assert!(matches!(apply(list(json!({"image": "x"}))), Err(E::NoMergeKey { .. })));
    assert!(matches!(apply(list(json!({"$patch": "delete"}))), Err(E::NoMergeKey { .. })));
    assert!(matches!(apply(list(json!("app"))), Err(E::MixedElementTypes { .. })));
    assert!(matches!(apply(list(json!([1]))), Err(E::MixedElementTypes { .. })));
    assert!(matches!(apply(json!({"spec": {"$foo": 1}})), Err(E::UnknownDirective { .. })));
    assert!(matches!(apply(json!({"spec": {"$setElementOrder": []}})), Err(E::BadSetElementOrder)));
    assert!(matches!(apply(json!({"spec": {"$setElementOrder/x": 1}})), Err(E::BadArgType { .. })));
    let err = apply(
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app"}], "$setElementOrder/containers": [{"image": "x"}]}}}}),
    );
    assert!(matches!(err, Err(E::NoMergeKey { .. })));
    let lol =
        strategic_merge(&json!({"m": [[1]]}), &json!({"metadata": {"finalizers": [[1]]}}), "apps", "v1", "Deployment");
    assert!(lol.is_ok(), "new lists are taken whole");
    let lol = strategic_merge(
        &json!({"metadata": {"finalizers": [["a"]]}}),
        &json!({"metadata": {"finalizers": [["b"]]}}),
        "apps",
        "v1",
        "Deployment",
    );
    assert_eq!(lol, Err(E::ListOfLists));
    let mut deep = json!(1);
    for _ in 0..400 {
        deep = json!({"a": deep});
    }
    assert_eq!(apply(json!({"metadata": {"annotations": deep}})), Err(E::TooDeep));
}

/// Deterministic pseudo-random patches against the Deployment: never a panic.
#[test]
fn random_patches_never_panic() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let keys = [
        "spec",
        "template",
        "containers",
        "name",
        "app",
        "image",
        "metadata",
        "finalizers",
        "labels",
        "strategy",
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$deleteFromPrimitiveList/finalizers",
        "volumes",
        "args",
        "env",
        "replace",
        "delete",
        "merge",
        "type",
    ];
    fn gen(next: &mut dyn FnMut(u64) -> u64, keys: &[&str], depth: u32) -> Value {
        match if depth > 5 { next(4) } else { next(7) } {
            0 => Value::Null,
            1 => json!(next(3)),
            2 => json!(keys[next(keys.len() as u64) as usize]),
            3 => json!(next(2) == 0),
            4 | 5 => (0..next(4)).map(|_| gen(next, keys, depth + 1)).collect(),
            _ => Value::Object(
                (0..next(4))
                    .map(|_| (keys[next(keys.len() as u64) as usize].to_owned(), gen(next, keys, depth + 1)))
                    .collect(),
            ),
        }
    }
    for _ in 0..5_000 {
        let patch = json!({"spec": gen(&mut next, &keys, 0), "metadata": gen(&mut next, &keys, 0)});
        let _ = apply(patch.clone());
        let _ = strategic_merge(&patch, &deployment(), "apps", "v1", "Deployment");
    }
}
