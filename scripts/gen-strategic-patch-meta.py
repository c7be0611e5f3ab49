#!/usr/bin/env python3
"""Generate src/apiserver/patch/strategic_meta.json, the patch metadata table
used by tug's strategic merge patch (src/apiserver/patch/strategic/).

Input
-----
The Kubernetes v1.33.0 OpenAPI definitions as shipped by the PyPI package
`kubernetes-validate` (Apache-2.0; built from the upstream swagger spec of the
release, definitions keep the `x-kubernetes-*` extensions). The file used is

    kubernetes_validate/kubernetes-json-schema/v1.33.0-local/_definitions.json

inside the wheel (kubernetes-validate 1.37.0 was used; any release that ships
the v1.33.0-local directory carries the same file). The upstream
`api/openapi-spec/swagger.json` of the v1.33.0 tag works as well: pass it
instead and its `definitions` object is read.

How to run
----------
    d=$(mktemp -d)
    pip download --no-deps -d "$d" kubernetes-validate==1.37.0
    unzip -q "$d"/kubernetes_validate-*.whl -d "$d"
    python3 scripts/gen-strategic-patch-meta.py \
        "$d"/kubernetes_validate/kubernetes-json-schema/v1.33.0-local/_definitions.json \
        > src/apiserver/patch/strategic_meta.json

Output format (read by src/apiserver/patch/strategic_meta.rs)
-------------------------------------------------------------
    {"source": "...", "kubernetes": "v1.33.0",
     "roots": {"<group>/<version>/<Kind>": "<definition>", ...},   # group "" = core
     "defs":  {"<definition>": {"<field>": {...}, ...}, ...}}

A field entry has these optional members:
    "t": child definition (of the value, of each list item, or of each map
         value); "*" means free-form JSON (no schema below this point)
    "c": "list" or "map" (absent: a single value)
    "s": x-kubernetes-patch-strategy, e.g. "merge", "merge,retainKeys"
    "k": x-kubernetes-patch-merge-key
Only what the merge needs is kept: a field is listed when it carries a patch
strategy or merge key, when its name starts with "$" (a real field such as
JSONSchemaProps.$ref, not a directive), when it is a map (its keys are data),
when it is free-form, or when its child definition is listed. A definition
with no listed field is left out; the merge treats it as a plain struct.
"""

import json
import sys

REF_PREFIXES = ("#/definitions/", "#/$defs/", "/api/_definitions.json#/$defs/")


def ref_name(ref):
    for prefix in REF_PREFIXES:
        if ref.startswith(prefix):
            return ref[len(prefix):]
    raise SystemExit(f"unexpected $ref {ref!r}")


def schema_ref(schema):
    """The definition a (sub)schema points at, if any."""
    if not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        return ref_name(schema["$ref"])
    for comb in ("allOf", "oneOf", "anyOf"):
        refs = [s["$ref"] for s in schema.get(comb, []) if isinstance(s, dict) and "$ref" in s]
        if len(refs) == 1:
            return ref_name(refs[0])
    return None


def types_of(schema):
    t = schema.get("type")
    if t is None:
        return set()
    return set(t) if isinstance(t, list) else {t}


def target_of(schema, defs):
    """Child target of a value schema: a definition name, "*" or None."""
    name = schema_ref(schema)
    if name is not None:
        d = defs.get(name, {})
        if "properties" in d:
            return name
        # No properties: free-form when it may hold an object (RawExtension,
        # FieldsV1, apiextensions JSON, ...); scalars (Time, Quantity,
        # IntOrString) need nothing.
        if "object" in types_of(d) or ("type" not in d and "oneOf" not in d):
            return "*"
        return None
    if "object" in types_of(schema) and "properties" not in schema and "additionalProperties" not in schema:
        return "*"
    return None


def field_entry(prop, defs):
    entry = {}
    if "array" in types_of(prop) or "items" in prop:
        entry["c"] = "list"
        items = prop.get("items", {})
        target = target_of(items, defs) if "array" not in types_of(items) else None
    elif "additionalProperties" in prop:
        entry["c"] = "map"
        value = prop["additionalProperties"]
        if isinstance(value, dict) and ("array" in types_of(value) or "items" in value):
            value = value.get("items", {})
        target = target_of(value, defs) if isinstance(value, dict) else "*"
    else:
        target = target_of(prop, defs)
    if target is not None:
        entry["t"] = target
    if "x-kubernetes-patch-strategy" in prop:
        entry["s"] = prop["x-kubernetes-patch-strategy"]
    if "x-kubernetes-patch-merge-key" in prop:
        entry["k"] = prop["x-kubernetes-patch-merge-key"]
    return entry


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        doc = json.load(f)
    defs = doc.get("$defs") or doc.get("definitions")
    if not isinstance(defs, dict):
        raise SystemExit("no definitions found in input")

    roots = {}
    for name, d in defs.items():
        gvks = d.get("x-kubernetes-group-version-kind") or []
        meta_ref = schema_ref(d.get("properties", {}).get("metadata", {}))
        # Shared meta types (DeleteOptions, WatchEvent, ...) and *List kinds are
        # not objects anyone patches.
        if name.startswith("io.k8s.apimachinery.pkg.apis.meta.v1.") or meta_ref != "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta":
            continue
        for gvk in gvks:
            key = f"{gvk['group']}/{gvk['version']}/{gvk['kind']}"
            if key in roots and roots[key] != name:
                raise SystemExit(f"{key} maps to {roots[key]} and {name}")
            roots[key] = name

    # Full field entries of every struct definition.
    full = {
        name: {fname: field_entry(prop, defs) for fname, prop in d.get("properties", {}).items()}
        for name, d in defs.items()
        if "properties" in d
    }

    # Keep a field if it matters on its own, or if its child definition is kept.
    def matters_alone(fname, entry):
        return fname.startswith("$") or "s" in entry or "k" in entry or entry.get("c") == "map" or entry.get("t") == "*"

    kept = set()
    changed = True
    while changed:
        changed = False
        for name, fields in full.items():
            if name in kept:
                continue
            if any(matters_alone(f, e) or e.get("t") in kept for f, e in fields.items()):
                kept.add(name)
                changed = True

    pruned = {}
    for name in full:
        if name not in kept and name not in roots.values():
            continue
        fields = {}
        for fname, entry in sorted(full[name].items()):
            if matters_alone(fname, entry) or entry.get("t") in kept:
                if entry.get("t") not in kept and entry.get("t") != "*":
                    entry.pop("t", None)
                fields[fname] = entry
        pruned[name] = fields

    # Only what a root kind can reach.
    reachable = set()
    stack = list(roots.values())
    while stack:
        name = stack.pop()
        if name in reachable or name not in pruned:
            continue
        reachable.add(name)
        stack.extend(e["t"] for e in pruned[name].values() if e.get("t", "*") != "*")
    out_defs = {name: pruned[name] for name in sorted(reachable)}

    source = (
        "kubernetes-validate (PyPI) kubernetes-json-schema/v1.33.0-local/_definitions.json; "
        "generated by scripts/gen-strategic-patch-meta.py"
    )

    # One root / definition a line, so that diffs stay readable.
    def entries(obj):
        return ",\n".join(f"{json.dumps(k)}:{json.dumps(v, separators=(',', ':'))}" for k, v in obj.items())

    out = sys.stdout
    out.write(f'{{"source":{json.dumps(source)},\n"kubernetes":"v1.33.0",\n')
    out.write('"roots":{\n' + entries(dict(sorted(roots.items()))) + "},\n")
    out.write('"defs":{\n' + entries(out_defs) + "}}\n")


if __name__ == "__main__":
    main()
