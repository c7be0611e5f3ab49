//! Printers for the smaller groups: coordination (leases), policy (poddisruptionbudgets), rbac
//! (role bindings), scheduling (priorityclasses), node (runtimeclasses), certificates
//! (certificatesigningrequests) and admissionregistration (webhook configurations).

use jiff::Timestamp;
use serde_json::Value;

use super::{age, at, col, human_secs, int_at, list_at, name, opt_bool, opt_int, scalar_text, str_at, wide, Column};
use super::{Printer, AGE, NAME};

const RB_ROLE: &str = "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.";
const CRB_ROLE: &str = "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.";
const PC_VALUE: &str = "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.";
const PC_DEFAULT: &str = "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority.";
const PC_PREEMPTION: &str = "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.";
const CSR_SIGNER: &str = "signerName indicates the requested signer, and is a qualified name.\n\nList/watch requests for CertificateSigningRequests can filter on this field using a \"spec.signerName=NAME\" fieldSelector.\n\nWell-known Kubernetes signers are:\n 1. \"kubernetes.io/kube-apiserver-client\": issues client certificates that can be used to authenticate to kube-apiserver.\n  Requests for this signer are never auto-approved by kube-controller-manager, can be issued by the \"csrsigning\" controller in kube-controller-manager.\n 2. \"kubernetes.io/kube-apiserver-client-kubelet\": issues client certificates that kubelets use to authenticate to kube-apiserver.\n  Requests for this signer can be auto-approved by the \"csrapproving\" controller in kube-controller-manager, and can be issued by the \"csrsigning\" controller in kube-controller-manager.\n 3. \"kubernetes.io/kubelet-serving\" issues serving certificates that kubelets use to serve TLS endpoints, which kube-apiserver can connect to securely.\n  Requests for this signer are never auto-approved by kube-controller-manager, and can be issued by the \"csrsigning\" controller in kube-controller-manager.\n\nMore details are available at https://k8s.io/docs/reference/access-authn-authz/certificate-signing-requests/#kubernetes-signers\n\nCustom signerNames can also be specified. The signer defines:\n 1. Trust distribution: how trust (CA bundles) are distributed.\n 2. Permitted subjects: and behavior when a disallowed subject is requested.\n 3. Required, permitted, or forbidden x509 extensions in the request (including whether subjectAltNames are allowed, which types, restrictions on allowed values) and behavior when a disallowed extension is requested.\n 4. Required, permitted, or forbidden key usages / extended key usages.\n 5. Expiration/certificate lifetime: whether it is fixed by the signer, configurable by the admin.\n 6. Whether or not requests for CA certificates are allowed.";
const CSR_REQUEST: &str = "request contains an x509 certificate signing request encoded in a \"CERTIFICATE REQUEST\" PEM block. When serialized as JSON or YAML, the data is additionally base64-encoded.";
const CSR_EXPIRATION: &str = "expirationSeconds is the requested duration of validity of the issued certificate. The certificate signer may issue a certificate with a different validity duration so a client must check the delta between the notBefore and and notAfter fields in the issued certificate to determine the actual duration.\n\nThe v1.22+ in-tree implementations of the well-known Kubernetes signers will honor this field as long as the requested duration is not greater than the maximum duration they will honor per the --cluster-signing-duration CLI flag to the Kubernetes controller manager.\n\nCertificate signers may not honor this field for various reasons:\n\n  1. Old signer that is unaware of the field (such as the in-tree\n     implementations prior to v1.22)\n  2. Signer whose configured maximum is shorter than the requested duration\n  3. Signer whose configured minimum is longer than the requested duration\n\nThe minimum valid value for expirationSeconds is 600, i.e. 10 minutes.";
const CSR_CONDITIONS: &str =
    "conditions applied to the request. Known conditions are \"Approved\", \"Denied\", and \"Failed\".";
const LEASE_HOLDER: &str = "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.";

pub(super) const LEASE: Printer = Printer {
    columns: &[NAME, col("Holder", "string", LEASE_HOLDER), AGE],
    cells: |l, now| vec![name(l), Value::from(str_at(l, "/spec/holderIdentity")), age(l, now)],
};

pub(super) const POD_DISRUPTION_BUDGET: Printer = Printer {
    columns: &[
        NAME,
        col("Min Available", "string", "The minimum number of pods that must be available."),
        col("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
        col("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
        AGE,
    ],
    cells: |pdb, now| {
        let bound = |ptr: &str| Value::from(scalar_text(at(pdb, ptr)).unwrap_or_else(|| "N/A".to_string()));
        vec![
            name(pdb),
            bound("/spec/minAvailable"),
            bound("/spec/maxUnavailable"),
            Value::from(int_at(pdb, "/status/disruptionsAllowed")),
            age(pdb, now),
        ]
    },
};

pub(super) const ROLE_BINDING: Printer = Printer { columns: &binding_columns(RB_ROLE, false), cells: binding_cells };

pub(super) const CLUSTER_ROLE_BINDING: Printer =
    Printer { columns: &binding_columns(CRB_ROLE, true), cells: binding_cells };

pub(super) const PRIORITY_CLASS: Printer = Printer {
    columns: &[
        NAME,
        col("Value", "integer", PC_VALUE),
        col("Global-Default", "boolean", PC_DEFAULT),
        AGE,
        wide("PreemptionPolicy", "string", PC_PREEMPTION),
    ],
    cells: |pc, now| {
        vec![
            name(pc),
            Value::from(int_at(pc, "/value")),
            Value::from(opt_bool(pc, "/globalDefault").unwrap_or(false)),
            age(pc, now),
            Value::from(str_at(pc, "/preemptionPolicy")),
        ]
    },
};

pub(super) const RUNTIME_CLASS: Printer = Printer {
    // Upstream looks the description up under a key ObjectMeta lacks, so it is empty.
    columns: &[NAME, col("Handler", "string", ""), AGE],
    cells: |rc, now| vec![name(rc), Value::from(str_at(rc, "/handler")), age(rc, now)],
};

pub(super) const CSR: Printer = Printer {
    columns: &[
        NAME,
        AGE,
        col("SignerName", "string", CSR_SIGNER),
        col("Requestor", "string", CSR_REQUEST),
        col("RequestedDuration", "string", CSR_EXPIRATION),
        col("Condition", "string", CSR_CONDITIONS),
    ],
    cells: csr_cells,
};

pub(super) const WEBHOOK_CONFIGURATION: Printer = Printer {
    columns: &[
        NAME,
        col("Webhooks", "integer", "Webhooks indicates the number of webhooks registered in this configuration"),
        AGE,
    ],
    cells: |w, now| vec![name(w), Value::from(list_at(w, "/webhooks").len()), age(w, now)],
};

/// The columns of RoleBindings and ClusterRoleBindings, whose descriptions name the kind.
const fn binding_columns(role_desc: &'static str, cluster: bool) -> [Column; 6] {
    [
        NAME,
        col("Role", "string", role_desc),
        AGE,
        wide("Users", "string", if cluster { "Users in the clusterRoleBinding" } else { "Users in the roleBinding" }),
        wide(
            "Groups",
            "string",
            if cluster { "Groups in the clusterRoleBinding" } else { "Groups in the roleBinding" },
        ),
        wide(
            "ServiceAccounts",
            "string",
            if cluster { "ServiceAccounts in the clusterRoleBinding" } else { "ServiceAccounts in the roleBinding" },
        ),
    ]
}

fn binding_cells(b: &Value, now: Timestamp) -> Vec<Value> {
    let role = format!("{}/{}", str_at(b, "/roleRef/kind"), str_at(b, "/roleRef/name"));
    let (mut users, mut groups, mut service_accounts) = (Vec::new(), Vec::new(), Vec::new());
    for s in list_at(b, "/subjects") {
        match str_at(s, "/kind") {
            "User" => users.push(str_at(s, "/name").to_string()),
            "Group" => groups.push(str_at(s, "/name").to_string()),
            "ServiceAccount" => service_accounts.push(format!("{}/{}", str_at(s, "/namespace"), str_at(s, "/name"))),
            _ => {}
        }
    }
    vec![
        name(b),
        Value::from(role),
        age(b, now),
        Value::from(users.join(", ")),
        Value::from(groups.join(", ")),
        Value::from(service_accounts.join(", ")),
    ]
}

fn csr_cells(csr: &Value, now: Timestamp) -> Vec<Value> {
    let has = |kind: &str| list_at(csr, "/status/conditions").iter().any(|c| str_at(c, "/type") == kind);
    let mut condition = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        condition.push_str(",Failed");
    }
    if !str_at(csr, "/status/certificate").is_empty() {
        condition.push_str(",Issued");
    }
    let signer = match str_at(csr, "/spec/signerName") {
        "" => "<none>",
        s => s,
    };
    let duration = opt_int(csr, "/spec/expirationSeconds").map_or("<none>".to_string(), human_secs);
    vec![
        name(csr),
        age(csr, now),
        Value::from(signer),
        Value::from(str_at(csr, "/spec/username")),
        Value::from(duration),
        Value::from(condition),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn bindings_csr_and_pdb() {
        let rb = json!({"roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [
            {"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"}, {"kind": "User", "name": "bob"},
            {"kind": "ServiceAccount", "namespace": "ci", "name": "runner"}]});
        let r = binding_cells(&rb, now());
        assert_eq!(r[1], json!("ClusterRole/view"));
        assert_eq!(r[3..], [json!("alice, bob"), json!("devs"), json!("ci/runner")]);
        assert_eq!(CLUSTER_ROLE_BINDING.columns[3].description, "Users in the clusterRoleBinding");
        assert_eq!(ROLE_BINDING.columns[5].description, "ServiceAccounts in the roleBinding");

        let csr = json!({"spec": {"signerName": "kubernetes.io/kubelet-serving", "username": "system:node:n1",
            "expirationSeconds": 86400}, "status": {"conditions": [{"type": "Approved"}], "certificate": "LS0t"}});
        assert_eq!(
            csr_cells(&csr, now())[2..],
            [json!("kubernetes.io/kubelet-serving"), json!("system:node:n1"), json!("24h"), json!("Approved,Issued")]
        );
        assert_eq!(csr_cells(&json!({}), now())[2..], [json!("<none>"), json!(""), json!("<none>"), json!("Pending")]);

        let pdb = json!({"spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!((POD_DISRUPTION_BUDGET.cells)(&pdb, now())[1..4], [json!("50%"), json!("N/A"), json!(1)]);
    }
}
