#!/usr/bin/env python3
"""Generates src/apiserver/protobuf/schema.json, the table the API server's protobuf request decoder
(src/apiserver/protobuf/) walks: for every protobuf message a request body can contain, its fields
(number, JSON name, wire type, flags), plus the map from (apiVersion, kind) to the top-level message.

Inputs (none is vendored; fetch them, then run the script from the repository root):

  1. --k8s-pb DIR: the source of the Rust crate k8s-pb 0.9.0 (prost code generated from upstream's
     generated.proto files of Kubernetes 1.35: it has core.v1.Lifecycle.stopSignal (1.33),
     Container.restartPolicyRules and resource.k8s.io/v1 (1.34), PodSpec.workloadRef and
     scheduling/v1alpha1 Workload (1.35)). `cargo fetch` in any project depending on
     k8s-pb = "=0.9.0" unpacks it to ~/.cargo/registry/src/*/k8s-pb-0.9.0, the default. It gives
     messages, field numbers, wire types, and the served kinds (its `impl Resource` blocks).
  2. --definitions FILE: `_definitions.json` of the Python package kubernetes-validate:
     `pip download kubernetes-validate==1.37.0 --no-deps && unzip kubernetes_validate-*.whl`, file
     kubernetes_validate/kubernetes-json-schema/v1.33.0-local/_definitions.json. prost snake-cased the
     field names (podIP -> pod_ip); each is matched back to the definition property with the same
     letters (case and punctuation ignored), which recovers acronyms, `$ref` and `x-kubernetes-*`.
     Its x-kubernetes-group-version-kind adds kinds such as DeleteOptions.
  3. --go-src DIR (recommended): upstream's Go API types at tag v0.35.0, the repositories
     kubernetes/api, kubernetes/apimachinery, kubernetes/apiextensions-apiserver and
     kubernetes/kube-aggregator unpacked as DIR/api, DIR/apimachinery, ... (e.g. a snapshot through
     the search tool's fetch, then `git archive v0.35.0 | tar -x -C DIR/api`). Only the Go structs
     tell which scalar fields are non-pointer `omitempty` ones: Go's protobuf marshaller always
     writes those, even when zero, while its JSON encoder leaves them out; the decoder drops such
     zeros (flag "o") and keeps every other value, so pointer fields set to zero (spec.replicas: 0)
     survive. They also tell which nil fields Go's JSON writes as null (flag "n"), name the fields
     added after 1.33 and confirm the others. Without --go-src no field gets "o" or "n" (every zero
     on the wire is kept), names fall back to same-named definitions and camelCase guesses, and the
     script says so.

Run:  python3 scripts/gen-protobuf-schema.py --definitions DIR/_definitions.json --go-src GO_DIR
It prints how each JSON name was found and every field it could not match or that disagrees.

Output (one message per line, sorted, so diffs stay readable):
  {"source": "...",
   "kinds": {"apps/v1/Deployment": "io.k8s.api.apps.v1.Deployment", ...},
   "messages": {
    "io.k8s.api.core.v1.ConfigMap": [[1, "metadata", "message:io.k8s...ObjectMeta", ""], ...],
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": "time", ...}}
  A field is [number, JSON name, type, flags]. Type: string, bytes, bool, int32, int64, double, ...,
  message:<name>, map:<key type>:<value type or message:<name>>. Flags: r = repeated; o = drop when
  zero (non-pointer omitempty scalar); n = null when absent (a pointer, slice or map without
  omitempty, which Go's JSON writes as null when nil and protobuf leaves out); i = inline (an
  embedded struct whose fields JSON flattens into the parent); u = the message is a Go named slice type and its JSON is this field's array alone.
  A message given as a string is special: time, microtime, duration, quantity, intorstring, rawjson
  (bytes field 1 holding JSON), or "or-array <props>", "or-bool <props>", "or-string-array <props>"
  for apiextensions' JSONSchemaPropsOr* unions. Only messages reachable from a kind are written.
"""
import argparse
import glob
import json
import os
import re
import sys

PREFIX = {
    "api": "io.k8s.api",
    "apimachinery": "io.k8s.apimachinery",
    "apiextensions_apiserver": "io.k8s.apiextensions-apiserver",
    "kube_aggregator": "io.k8s.kube-aggregator",
    "metrics": "io.k8s.metrics",
}
GO_DIR = {"api": "api", "apimachinery": "apimachinery",
          "apiextensions_apiserver": "apiextensions-apiserver", "kube_aggregator": "kube-aggregator"}
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
EXT = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions."
SPECIAL = {
    META + "Time": "time",
    META + "MicroTime": "microtime",
    META + "Duration": "duration",
    META + "FieldsV1": "rawjson",
    "io.k8s.apimachinery.pkg.api.resource.Quantity": "quantity",
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": "intorstring",
    "io.k8s.apimachinery.pkg.runtime.RawExtension": "rawjson",
}
for v in ("v1", "v1beta1"):
    SPECIAL[EXT + v + ".JSON"] = "rawjson"
    for suffix, special in (("OrArray", "or-array"), ("OrBool", "or-bool"), ("OrStringArray", "or-string-array")):
        SPECIAL[EXT + v + ".JSONSchemaProps" + suffix] = special + " " + EXT + v + ".JSONSchemaProps"
SCALARS = {"string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
           "fixed32", "fixed64", "sfixed32", "sfixed64", "double", "float"}


def norm(name):
    """What survives prost's snake casing: the letters and digits, lower-cased."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def parse_prost(root):
    """Messages as {rust path: [field dict]} and kinds as [(rust path, apiVersion, kind)]."""
    messages, kinds = {}, []
    for path in sorted(glob.glob(os.path.join(root, "**", "mod.rs"), recursive=True)):
        module = os.path.relpath(path, root).split(os.sep)[:-1]
        lines = open(path, encoding="utf-8").read().split("\n")
        current, resource, i = None, None, 0
        while i < len(lines):
            line = lines[i]
            m = re.match(r"pub struct (\w+) \{(\})?", line)
            if m:
                current = "::".join(module + [m.group(1)])
                messages[current] = []
                if m.group(2):
                    current = None
            elif line == "}":
                current = None
            m = re.match(r"impl crate::Resource for (\w+) \{", line)
            if m:
                resource = ["::".join(module + [m.group(1)]), None, None]
            m = re.match(r'\s+const (API_VERSION|KIND): &\'static str = "([^"]*)";', line)
            if m and resource:
                resource[1 if m.group(1) == "API_VERSION" else 2] = m.group(2)
                if resource[1] and resource[2]:
                    kinds.append(tuple(resource))
                    resource = None
            m = re.match(r"\s+#\[prost\((.*)\)\]$", line)
            if m and current:
                decl, j = "", i + 1
                while True:
                    decl += lines[j].strip()
                    if decl.endswith(",") and decl.count("<") == decl.count(">"):
                        break
                    j += 1
                messages[current].append(parse_field(m.group(1), decl, module))
                i = j
            i += 1
    return messages, kinds


def resolve(rust_type, module):
    """The rust path of the message named in a field's Rust type, relative paths made absolute."""
    inner = rust_type
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"):
        inner = inner.replace(wrapper, "")
    inner = inner.rstrip(">").strip().rstrip(",").strip()
    parts, base = inner.split("::"), list(module)
    while parts and parts[0] == "super":
        parts.pop(0)
        base.pop()
    return "::".join(base + parts)


def parse_field(attr, decl, module):
    name, rust_type = re.match(r"pub (?:r#)?(\w+):\s*(.*),$", decl).groups()
    number = int(re.search(r'tag = "(\d+)"', attr).group(1))
    field = {"number": number, "rust": name, "repeated": ", repeated" in attr, "map": None}
    m = re.match(r'btree_map = "(\w+), (\w+)"', attr)
    if m:
        key, value = m.groups()
        if value == "message":
            value_type = re.search(r"BTreeMap<\s*[^,]+,\s*(.*)>$", rust_type).group(1)
            value = "message:" + resolve(value_type, module)
        field["map"], field["type"] = (key, value), None
    else:
        kind = attr.split(",")[0].split(" ")[0]
        field["type"] = "message:" + resolve(rust_type, module) if kind == "message" else kind
    return field


def parse_go(go_root):
    """Go structs as {(package dir, lower-cased struct name): (Go name, {number: go field})} and the
    set of (package dir, lower-cased name) of named slice types."""
    structs, slices = {}, set()
    for path in glob.glob(os.path.join(go_root, "**", "*.go"), recursive=True):
        if path.endswith("_test.go"):
            continue
        package = os.path.dirname(os.path.relpath(path, go_root))
        current = None
        for line in open(path, encoding="utf-8"):
            m = re.match(r"type (\w+) struct \{", line)
            if m:
                current = {}
                structs[(package, m.group(1).lower())] = (m.group(1), current)
                continue
            m = re.match(r"type (\w+) \[\]\w+\s*$", line)
            if m:
                slices.add((package, m.group(1).lower()))
            if line.startswith("}"):
                current = None
            if current is None:
                continue
            m = re.match(r"\s+(?:(\w+)\s+)?([^\s`]+)\s+`([^`]*)`", line)
            if not m:
                continue
            tags = m.group(3)
            proto = re.search(r'protobuf:"\w+,(\d+),', tags)
            if not proto:
                continue
            json_tag = re.search(r'json:"([^"]*)"', tags)
            parts = json_tag.group(1).split(",") if json_tag else [None]
            current[int(proto.group(1))] = {
                "json": parts[0] if parts[0] not in (None, "-") else None,
                "omitempty": "omitempty" in parts[1:],
                "inline": "inline" in parts[1:],
                "pointer": m.group(2).startswith("*"),
            }
    return structs, slices


def main():
    default_pb = sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/k8s-pb-0.9.0")))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k8s-pb", default=default_pb[-1] if default_pb else None)
    parser.add_argument("--definitions", required=True)
    parser.add_argument("--go-src")
    parser.add_argument("--out", default="src/apiserver/protobuf/schema.json")
    args = parser.parse_args()
    root = args.k8s_pb if os.path.basename(args.k8s_pb) == "src" else os.path.join(args.k8s_pb, "src")
    prost, resources = parse_prost(root)
    definitions = json.load(open(args.definitions, encoding="utf-8"))["$defs"]
    defs_lower = {name.lower(): name for name in definitions}
    structs, slices = parse_go(args.go_src) if args.go_src else ({}, set())
    if not args.go_src:
        print("warning: no --go-src: every zero value on the wire will be kept", file=sys.stderr)

    def go_package(rust):
        parts = rust.split("::")
        top = GO_DIR.get(parts[0])
        return "/".join([top] + parts[1:-1]) if top else None

    def go_struct(rust):
        return structs.get((go_package(rust), rust.split("::")[-1].lower()))

    def message_name(rust):
        parts = rust.split("::")
        guess = PREFIX[parts[0]] + "." + ".".join(parts[1:])
        if guess.lower() in defs_lower:
            return defs_lower[guess.lower()]
        go = go_struct(rust)
        return guess.rsplit(".", 1)[0] + "." + go[0] if go else guess

    names = {rust: message_name(rust) for rust in prost}
    # Property names by normalised spelling: per definition, per simple message name, and global.
    by_simple, pool = {}, {}
    for name, definition in definitions.items():
        for prop in definition.get("properties", {}):
            by_simple.setdefault(name.rsplit(".", 1)[-1], {})[norm(prop)] = prop
            pool.setdefault(norm(prop), set()).add(prop)

    stats, reports = [], []

    def json_name(rust, field, go_field):
        props = {norm(p): p for p in definitions.get(names[rust], {}).get("properties", {})}
        simple = by_simple.get(names[rust].rsplit(".", 1)[-1], {})
        key = norm(field["rust"])
        candidates = [("definition", props.get(key)), ("go", go_field and go_field["json"]),
                      ("same-named definition", simple.get(key)),
                      ("property pool", next(iter(pool[key])) if len(pool.get(key, ())) == 1 else None)]
        source, found = next(((s, n) for s, n in candidates if n), (None, None))
        if go_field and go_field["json"] and found != go_field["json"]:
            reports.append((names[rust], "%s: %s says %r, Go says %r" % (field["rust"], source, found, go_field["json"])))
            source, found = "go", go_field["json"]
        stats.append((names[rust], source))
        return found

    def flattened(rust, props, depth=0):
        """The JSON names an embedded message contributes to its parent if it is inlined: its
        fields' names, and those of its own message fields that are not properties (inlined too)."""
        names_ = set()
        for f in prost[rust]:
            key = norm(f["rust"])
            if key not in props and f["type"] and f["type"].startswith("message:") and depth < 3:
                names_ |= flattened(f["type"][8:], props, depth + 1)
            else:
                names_.add(key)
        return names_

    def inlined(name, field):
        """Without Go types: a message field that is no property of the definition while all the
        fields it would contribute are."""
        props = {norm(p) for p in definitions.get(name, {}).get("properties", {})}
        if field["repeated"] or not (field["type"] or "").startswith("message:") or norm(field["rust"]) in props:
            return False
        sub = flattened(field["type"][8:], props)
        return bool(sub) and sub <= props

    messages = {}
    for rust, fields in prost.items():
        name = names[rust]
        if name in SPECIAL:
            messages[name] = SPECIAL[name]
            continue
        go = go_struct(rust)
        unwrap = (go_package(rust), rust.split("::")[-1].lower()) in slices or (
            not go and name not in definitions and len(fields) == 1 and fields[0]["rust"] == "items"
            and fields[0]["repeated"] and fields[0]["type"] in SCALARS)
        out = []
        for field in sorted(fields, key=lambda f: f["number"]):
            go_field = go[1].get(field["number"]) if go else None
            if args.go_src and not go_field:
                reports.append((name, "%s: no Go field with this protobuf number" % field["rust"]))
            if field["map"]:
                key, value = field["map"]
                type_ = "map:%s:%s" % (key, "message:" + names[value[8:]] if value.startswith("message:") else value)
            elif field["type"].startswith("message:"):
                type_ = "message:" + names[field["type"][8:]]
            else:
                type_ = field["type"]
            flags = "r" if field["repeated"] else ""
            if unwrap and field["rust"] == "items":
                flags += "u"
                jname = "items"
            elif go_field and go_field["inline"] and not go_field["json"]:
                flags += "i"
                jname = field["rust"]
            elif not go_field and inlined(name, field):
                flags += "i"
                jname = field["rust"]
                stats.append((name, "inline by definition"))
            else:
                jname = json_name(rust, field, go_field)
                if jname is None:
                    jname = re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), field["rust"])
                    reports.append((name, "%s: unmatched, guessed %r" % (field["rust"], jname)))
            scalar = type_ in SCALARS
            if go_field and scalar and not field["repeated"] and go_field["omitempty"] and not go_field["pointer"]:
                flags += "o"
            nilable = field["repeated"] or field["map"] or go_field and go_field["pointer"] or type_ == "bytes"
            if go_field and go_field["json"] and not go_field["omitempty"] and nilable and "u" not in flags:
                flags += "n"
            out.append([field["number"], jname, type_, flags])
        messages[name] = out

    kinds = {}
    for rust, api_version, kind in resources:
        kinds["%s/%s" % (api_version, kind)] = names[rust]
    for name, definition in definitions.items():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            if gvk["kind"].endswith("List") or gvk["kind"] == "WatchEvent" or name not in messages:
                continue
            api_version = "%s/%s" % (gvk["group"], gvk["version"]) if gvk["group"] else gvk["version"]
            kinds.setdefault("%s/%s" % (api_version, gvk["kind"]), name)

    reachable, todo = set(), list(kinds.values())
    while todo:
        name = todo.pop()
        if name in reachable:
            continue
        reachable.add(name)
        entry = messages[name]
        if isinstance(entry, str):
            todo += [part for part in entry.split(" ")[1:]]
            continue
        for field in entry:
            todo += [t for t in re.findall(r"message:([^:]+)$", field[2])]
    source = ("k8s-pb 0.9.0 (Kubernetes 1.35 protos); JSON names from kubernetes-validate 1.37.0 "
              "v1.33.0-local definitions" + (" and the Go types at v0.35.0" if args.go_src else ""))
    with open(args.out, "w", encoding="utf-8") as out:
        out.write('{"source": %s,\n"kinds": {\n' % json.dumps(source))
        out.write(",\n".join("%s: %s" % (json.dumps(k), json.dumps(v)) for k, v in sorted(kinds.items())))
        out.write('\n},\n"messages": {\n')
        out.write(",\n".join("%s: %s" % (json.dumps(n), json.dumps(messages[n], separators=(",", ":")))
                             for n in sorted(reachable)))
        out.write("\n}}\n")
    print("%d kinds, %d of %d messages written to %s" % (len(kinds), len(reachable), len(messages), args.out))
    counts = {}
    for name, source in stats:
        if name in reachable:
            counts[source] = counts.get(source, 0) + 1
    print("JSON names by source: %s" % ", ".join("%s %d" % kv for kv in sorted(counts.items(), key=str)))
    for name, report in sorted(reports):
        if name in reachable:
            print("  %s.%s" % (name, report))


if __name__ == "__main__":
    main()
