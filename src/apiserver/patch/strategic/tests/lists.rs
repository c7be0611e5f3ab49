//! Tests of list merging: merge keys, `$patch` items, `$setElementOrder`,
//! primitive lists and replace-strategy lists, with upstream's cases.

use serde_json::{json, Value};

use super::super::{strategic_merge, E};
use super::{apply, containers, names};

#[test]
fn containers_merge_by_name() {
    let out =
        apply(json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}})).unwrap();
    let c = containers(&out);
    assert_eq!(names(c), ["app", "sidecar"]);
    assert_eq!(c[0]["image"], "app:2");
    assert_eq!(c[0]["args"], json!(["--a", "--b"]));
    assert_eq!(c[1], json!({"name": "sidecar", "image": "side:1"}));
    assert_eq!(out["spec"]["replicas"], 1);
}

/// Upstream puts patch items not found on the server before the
/// server-only items (mergeSortedSlice), unless `$setElementOrder` says
/// otherwise; kubectl sends that list, so `kubectl apply` appends.
#[test]
fn new_container_is_added_and_cleaned() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "extra", "image": "x:1", "command": null, "env": [{"name": "Y", "value": "2", "$patch": "x"}]}
    ]}}}});
    let out = apply(patch).unwrap();
    assert_eq!(names(containers(&out)), ["extra", "app", "sidecar"]);
    assert_eq!(containers(&out)[0], json!({"name": "extra", "image": "x:1", "env": [{"name": "Y", "value": "2"}]}));
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}, {"name": "extra"}],
        "containers": [{"name": "extra", "image": "x:1"}]
    }}}});
    assert_eq!(names(containers(&apply(patch).unwrap())), ["app", "sidecar", "extra"]);
}

/// Cases of upstream's patch_test.go, mapped onto Pod containers (merge
/// key name) and metadata.finalizers (merging primitive list).
#[test]
fn upstream_cases() {
    let pod = |containers: Value, finalizers: Value| json!({"metadata": {"finalizers": finalizers}, "spec": {"containers": containers}});
    let c = |list: &[(&str, &str)]| -> Value {
        list.iter()
            .map(|(n, v)| if v.is_empty() { json!({"name": n}) } else { json!({"name": n, "value": v}) })
            .collect()
    };
    let cases = [
        // preserve the order from the patch in a merging list 2
        (
            pod(c(&[("1", ""), ("2", "b"), ("3", "")]), json!(["1", "2", "3"])),
            json!({"spec": {"containers": c(&[("3", "c"), ("1", "a")])}, "metadata": {"finalizers": ["3", "1"]}}),
            pod(c(&[("2", "b"), ("3", "c"), ("1", "a")]), json!(["2", "3", "1"])),
        ),
        // add field to map in merging list with conflict (three-way result)
        (
            pod(json!([{"name": "1", "other": "a"}, {"name": "3", "value": "2", "other": "b"}]), json!([])),
            json!({"spec": {"$setElementOrder/containers": [{"name": "1"}, {"name": "2"}], "containers": c(&[("1", "1"), ("2", "2")])}}),
            pod(
                json!([{"name": "1", "value": "1", "other": "a"}, {"name": "2", "value": "2"}, {"name": "3", "value": "2", "other": "b"}]),
                json!([]),
            ),
        ),
        // $setElementOrder contains items not present in the list
        (
            pod(c(&[("1", ""), ("3", "")]), json!(["1", "3"])),
            json!({"spec": {"$setElementOrder/containers": [{"name": "3"}, {"name": "2"}, {"name": "1"}], "containers": c(&[("3", "3"), ("1", "1")])},
                "metadata": {"$setElementOrder/finalizers": ["3", "2", "1"]}}),
            pod(c(&[("3", "3"), ("1", "1")]), json!(["3", "1"])),
        ),
        // delete all duplicate entries; add and delete items in lists of scalars
        (
            pod(c(&[("1", ""), ("1", ""), ("2", "a"), ("3", ""), ("3", "")]), json!(["1", "2", "3", "4"])),
            json!({"spec": {"containers": [{"name": "1", "$patch": "delete"}, {"name": "3", "$patch": "delete"}]},
                "metadata": {"$setElementOrder/finalizers": ["1", "2", "5"], "$deleteFromPrimitiveList/finalizers": ["3"], "finalizers": ["5"]}}),
            pod(c(&[("2", "a")]), json!(["1", "2", "5", "4"])),
        ),
        // delete all items from merging list
        (
            pod(c(&[("1", ""), ("2", "")]), json!([])),
            json!({"spec": {"containers": [{"$patch": "replace"}]}}),
            pod(json!([]), json!([])),
        ),
    ];
    for (i, (original, patch, want)) in cases.into_iter().enumerate() {
        assert_eq!(strategic_merge(&original, &patch, "", "v1", "Pod").unwrap(), want, "case {i}");
    }
}

#[test]
fn patch_order_wins_over_server_order() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "new"}, {"name": "app", "image": "app:3"}
    ]}}}});
    assert_eq!(names(containers(&apply(patch).unwrap())), ["new", "app", "sidecar"]);
}

#[test]
fn delete_directive_removes_container() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}});
    assert_eq!(names(containers(&apply(patch).unwrap())), ["app"]);
}

#[test]
fn set_element_order_reorders() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
        "containers": [{"name": "app", "image": "app:2"}]
    }}}});
    let out = apply(patch).unwrap();
    assert_eq!(names(containers(&out)), ["sidecar", "app"]);
    assert_eq!(containers(&out)[1]["image"], "app:2");
    // Order only, no list in the patch.
    let patch = json!({"metadata": {"$setElementOrder/finalizers": ["c", "a", "b"]}});
    assert_eq!(apply(patch).unwrap()["metadata"]["finalizers"], json!(["c", "a", "b"]));
    // The patch list must follow the order list.
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
        "containers": [{"name": "sidecar", "image": "s:2"}, {"name": "app", "image": "a:2"}]
    }}}});
    assert!(matches!(apply(patch), Err(E::SetElementOrderMismatch { .. })));
}

#[test]
fn primitive_lists_union_and_delete() {
    let out = apply(json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zz"]}})).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "c"]));
    let out = apply(json!({"metadata": {"finalizers": ["d", "a"]}})).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["d", "a", "b", "c"]));
    // Deleting from an absent list adds nothing.
    let out = apply(json!({"spec": {"$deleteFromPrimitiveList/nothing": ["x"]}})).unwrap();
    assert!(out["spec"].get("nothing").is_none());
    assert_eq!(apply(json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}})), Err(E::BadPrimitiveList));
}

#[test]
fn list_without_strategy_is_replaced() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "args": ["--c"]}]}}}});
    assert_eq!(containers(&apply(patch).unwrap())[0]["args"], json!(["--c"]));
}

#[test]
fn replace_directive_in_list() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "only", "image": "o:1"}, {"$patch": "replace"}
    ]}}}});
    assert_eq!(containers(&apply(patch).unwrap()), &json!([{"name": "only", "image": "o:1"}]));
}
