//! Service account tokens against a real `tug server` with real kubectl (the newest and 1.29):
//! `kubectl create token` (with audiences, durations and bound objects), tokens as bearer credentials
//! (`kubectl auth whoami`), TokenReview, and the pod side: every new pod runs as a ServiceAccount that
//! must exist and gets the `kube-api-access-*` volume unless it opts out. A token stops working when
//! the pod, secret or account it is bound to goes.

mod common;

use common::{jsonpath, kubectl, kubectl_with_token, kubectls, TugServer};

fn whoami(bin: &std::path::Path, server: &TugServer, token: &str) -> common::Run {
    kubectl_with_token(bin, server, token, &["auth", "whoami", "-o", "json"])
}

fn user_info(run: common::Run) -> serde_json::Value {
    let answer: serde_json::Value = serde_json::from_str(&run.ok().stdout).expect("whoami json");
    answer["status"]["userInfo"].clone()
}

fn refused(run: &common::Run) -> bool {
    run.code != 0 && run.stderr.contains("Unauthorized")
}

#[test]
fn kubectl_create_token_gives_a_credential_of_the_service_account() {
    let server = TugServer::start();
    for bin in kubectls() {
        let token = kubectl(&bin, &server, &["create", "token", "default"], None).ok().stdout.trim().to_string();
        let user = user_info(whoami(&bin, &server, &token));
        assert_eq!(user["username"], "system:serviceaccount:default:default", "{user}");
        let groups = user["groups"].to_string();
        assert!(groups.contains("\"system:serviceaccounts\"") && groups.contains("system:serviceaccounts:default"));
        assert_eq!(user["uid"], jsonpath(&bin, &server, &["serviceaccount", "default"], "{.metadata.uid}").as_str());
        let read = kubectl_with_token(&bin, &server, &token, &["get", "serviceaccount", "default", "-o", "name"]);
        assert_eq!(read.ok().stdout.trim(), "serviceaccount/default");

        let forged = format!("{}x", &token[..token.len() - 1]);
        assert!(refused(&whoami(&bin, &server, &forged)), "a token with a broken signature is refused");
        assert!(refused(&whoami(&bin, &server, "not-a-token")));

        let short = kubectl(&bin, &server, &["create", "token", "default", "--duration=5m"], None);
        assert_ne!(short.code, 0);
        assert!(short.stderr.contains("may not specify a duration less than 10 minutes"), "{}", short.stderr);
        let missing = kubectl(&bin, &server, &["create", "token", "nobody"], None);
        assert!(
            missing.code != 0 && missing.stderr.contains(r#"serviceaccounts "nobody" not found"#),
            "{}",
            missing.stderr
        );

        // A token for another audience is no credential for the API, though a TokenReview for that
        // audience accepts it.
        let vault = kubectl(&bin, &server, &["create", "token", "default", "--audience=vault"], None).ok().stdout;
        let vault = vault.trim();
        assert!(refused(&whoami(&bin, &server, vault)));
        let review = format!(
            "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec: {{token: '{vault}', audiences: [vault]}}\n"
        );
        let reviewed = kubectl(&bin, &server, &["create", "-f", "-", "-o", "json"], Some(&review)).ok().stdout;
        let reviewed: serde_json::Value = serde_json::from_str(&reviewed).expect("review json");
        assert_eq!(reviewed["status"]["authenticated"], true, "{reviewed}");
        assert_eq!(reviewed["status"]["user"]["username"], "system:serviceaccount:default:default");
        assert_eq!(reviewed["status"]["audiences"], serde_json::json!(["vault"]));
        let for_api = review.replace("audiences: [vault]", "audiences: []");
        let reviewed = kubectl(&bin, &server, &["create", "-f", "-", "-o", "json"], Some(&for_api)).ok().stdout;
        assert!(reviewed.contains(r#""authenticated": false"#), "{reviewed}");
    }
    let discovery = kubectl(&kubectls()[0], &server, &["api-resources", "--api-group=authentication.k8s.io"], None);
    let discovery = discovery.ok().stdout;
    assert!(discovery.contains("tokenreviews") && discovery.contains("selfsubjectreviews"), "{discovery}");
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  serviceAccountName: ACCOUNT
  containers: [{name: app, image: tug.local/busybox:1}]
";

fn pod(name: &str, account: &str) -> String {
    POD.replace("NAME", name).replace("ACCOUNT", account)
}

#[test]
fn pods_run_as_an_existing_account_with_its_token_mounted_unless_they_opt_out() {
    let server = TugServer::start();
    let bin = &kubectls()[0];
    let run = |args: &[&str], stdin: Option<&str>| kubectl(bin, &server, args, stdin);
    run(&["create", "serviceaccount", "builder"], None).ok();
    run(&["apply", "-f", "-"], Some(&pod("build", "builder"))).ok();
    let at = |path: &str| jsonpath(bin, &server, &["pod", "build"], path);
    assert_eq!(at("{.spec.serviceAccount}"), "builder");
    let volume = at("{.spec.volumes[0].name}");
    assert!(volume.starts_with("kube-api-access-"), "{volume}");
    let mount = at("{.spec.containers[0].volumeMounts[0]}");
    assert!(mount.contains("/var/run/secrets/kubernetes.io/serviceaccount") && mount.contains(&volume), "{mount}");
    let sources = at("{.spec.volumes[0].projected.sources}");
    assert!(sources.contains("kube-root-ca.crt") && sources.contains("3607"), "{sources}");

    let ghost = run(&["apply", "-f", "-"], Some(&pod("haunted", "ghost")));
    assert_ne!(ghost.code, 0);
    assert!(ghost.stderr.contains("error looking up service account default/ghost"), "{}", ghost.stderr);

    let quiet = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: quiet}\nautomountServiceAccountToken: false\n";
    run(&["apply", "-f", "-"], Some(quiet)).ok();
    run(&["apply", "-f", "-"], Some(&pod("silent", "quiet"))).ok();
    assert_eq!(jsonpath(bin, &server, &["pod", "silent"], "{.spec.volumes}"), "");
    let opted_in =
        pod("chatty", "quiet").replace("  containers:", "  automountServiceAccountToken: true\n  containers:");
    run(&["apply", "-f", "-"], Some(&opted_in)).ok();
    assert!(jsonpath(bin, &server, &["pod", "chatty"], "{.spec.volumes[0].name}").starts_with("kube-api-access-"));
}

#[test]
fn a_bound_token_ends_with_its_pod_secret_or_account() {
    let server = TugServer::start();
    let bin = &kubectls()[0];
    let run = |args: &[&str], stdin: Option<&str>| kubectl(bin, &server, args, stdin);
    let token = |args: &[&str]| {
        let all: Vec<&str> = ["create", "token", "builder"].into_iter().chain(args.iter().copied()).collect();
        run(&all, None).ok().stdout.trim().to_string()
    };
    run(&["create", "serviceaccount", "builder"], None).ok();
    run(&["apply", "-f", "-"], Some(&pod("build", "builder"))).ok();
    run(&["create", "secret", "generic", "ticket", "--from-literal=a=b"], None).ok();

    let of_pod = token(&["--bound-object-kind=Pod", "--bound-object-name=build"]);
    let user = user_info(whoami(bin, &server, &of_pod));
    assert_eq!(user["extra"]["authentication.kubernetes.io/pod-name"][0], "build", "{user}");
    let wrong_uid = run(
        &[
            "create",
            "token",
            "builder",
            "--bound-object-kind=Pod",
            "--bound-object-name=build",
            "--bound-object-uid=0000",
        ],
        None,
    );
    assert!(wrong_uid.code != 0 && wrong_uid.stderr.contains("does not match"), "{}", wrong_uid.stderr);
    let other_account =
        run(&["create", "token", "default", "--bound-object-kind=Pod", "--bound-object-name=build"], None);
    assert!(
        other_account.stderr.contains("pod running with different serviceaccount name"),
        "{}",
        other_account.stderr
    );
    let of_secret = token(&["--bound-object-kind=Secret", "--bound-object-name=ticket"]);
    let of_account = token(&[]);
    for t in [&of_pod, &of_secret, &of_account] {
        whoami(bin, &server, t).ok();
    }

    run(&["delete", "pod", "build", "--grace-period=0", "--force"], None).ok();
    assert!(refused(&whoami(bin, &server, &of_pod)), "the pod's token ends with the pod");
    whoami(bin, &server, &of_account).ok();
    run(&["delete", "secret", "ticket"], None).ok();
    assert!(refused(&whoami(bin, &server, &of_secret)), "the secret's token ends with the secret");
    // An account deleted and made again is another account: the old tokens do not carry over.
    run(&["delete", "serviceaccount", "builder"], None).ok();
    run(&["create", "serviceaccount", "builder"], None).ok();
    assert!(refused(&whoami(bin, &server, &of_account)));
    whoami(bin, &server, &token(&[])).ok();
}
