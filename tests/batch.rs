//! Jobs on simulated nodes, driven as a user would with real kubectl: completions with parallelism,
//! Indexed completion, the backoff limit, the active deadline, and deletion after a TTL.

mod common;

use common::{eventually, eventually_within, jsonpath, kubectl, kubectls, Simulator, TugServer};

use std::time::Duration;

fn job(name: &str, spec: &str, pod_annotations: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n{spec}  template:\n    metadata:\n      annotations: {{{pod_annotations}}}\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: busybox\n"
    )
}

fn condition(bin: &std::path::Path, server: &TugServer, name: &str, kind: &str) -> String {
    jsonpath(bin, server, &["job", name], &format!(r#"{{.status.conditions[?(@.type=="{kind}")].reason}}"#))
}

#[test]
fn jobs_complete_fail_and_expire_as_upstream_jobs_do() {
    let server = TugServer::start();
    let _nodes = Simulator::start(&server, &["--nodes", "3", "--run-time", "300ms"]);
    let bin = &kubectls()[0];

    let five = job("five", "  completions: 5\n  parallelism: 2\n", "");
    kubectl(bin, &server, &["apply", "-f", "-"], Some(&five)).ok();
    let waited = kubectl(bin, &server, &["wait", "--for=condition=complete", "job/five", "--timeout=60s"], None).ok();
    assert!(waited.stdout.contains("job.batch/five condition met"), "{}", waited.stdout);
    assert_eq!(jsonpath(bin, &server, &["job", "five"], "{.status.succeeded}"), "5");
    let table = kubectl(bin, &server, &["get", "job", "five"], None).ok().stdout;
    assert!(table.contains("5/5"), "{table}");
    eventually("the counted pods keep no tracking finalizer", || {
        jsonpath(bin, &server, &["pods", "-l", "job-name=five"], "{.items[*].metadata.finalizers}").is_empty()
    });

    let indexed = job("indexed", "  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n", "");
    kubectl(bin, &server, &["apply", "-f", "-"], Some(&indexed)).ok();
    kubectl(bin, &server, &["wait", "--for=condition=complete", "job/indexed", "--timeout=60s"], None).ok();
    assert_eq!(jsonpath(bin, &server, &["job", "indexed"], "{.status.completedIndexes}"), "0-2");
    let hostnames = jsonpath(bin, &server, &["pods", "-l", "job-name=indexed"], "{.items[*].spec.hostname}");
    let mut hostnames: Vec<&str> = hostnames.split_whitespace().collect();
    hostnames.sort();
    assert_eq!(hostnames, ["indexed-0", "indexed-1", "indexed-2"]);

    let failing = job("failing", "  backoffLimit: 1\n", "tug.dev/simulate-exit-code: \"1\"");
    kubectl(bin, &server, &["apply", "-f", "-"], Some(&failing)).ok();
    // Two failures with a 10 s backoff between them.
    eventually_within(Duration::from_secs(60), "the job fails past its backoff limit", || {
        condition(bin, &server, "failing", "Failed") == "BackoffLimitExceeded"
    });
    assert_eq!(jsonpath(bin, &server, &["job", "failing"], "{.status.failed}"), "2");
    let described = kubectl(bin, &server, &["describe", "job", "failing"], None).ok().stdout;
    assert!(described.contains("Job has reached the specified backoff limit"), "{described}");

    let slow = job("slow", "  activeDeadlineSeconds: 2\n", "tug.dev/simulate-run-seconds: \"600\"");
    kubectl(bin, &server, &["apply", "-f", "-"], Some(&slow)).ok();
    eventually("the long job passes its deadline", || condition(bin, &server, "slow", "Failed") == "DeadlineExceeded");
    eventually("its pod is deleted", || {
        jsonpath(bin, &server, &["pods", "-l", "job-name=slow"], "{.items[*].metadata.name}").is_empty()
    });

    let brief = job("brief", "  ttlSecondsAfterFinished: 1\n", "");
    kubectl(bin, &server, &["apply", "-f", "-"], Some(&brief)).ok();
    eventually("a finished job with a TTL is deleted with its pods", || {
        kubectl(bin, &server, &["get", "job", "brief"], None).code != 0
            && jsonpath(bin, &server, &["pods", "-l", "job-name=brief"], "{.items[*].metadata.name}").is_empty()
    });
}

#[test]
fn a_cronjob_creates_a_job_each_minute_and_bad_schedules_are_refused() {
    let server = TugServer::start();
    let _nodes = Simulator::start(&server, &["--nodes", "1", "--run-time", "300ms"]);
    let bin = &kubectls()[0];
    let refused =
        kubectl(bin, &server, &["create", "cronjob", "bad", "--image=busybox", "--schedule=61 * * * *"], None);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("spec.schedule: Invalid value: \"61 * * * *\""), "{}", refused.stderr);

    kubectl(bin, &server, &["create", "cronjob", "tick", "--image=busybox", "--schedule=*/1 * * * *"], None).ok();
    eventually_within(Duration::from_secs(75), "the next minute starts a job", || {
        !jsonpath(bin, &server, &["jobs"], "{.items[*].metadata.ownerReferences[0].name}").is_empty()
    });
    let job = jsonpath(bin, &server, &["jobs"], "{.items[0].metadata.name}");
    assert!(job.starts_with("tick-"), "{job}");
    kubectl(bin, &server, &["wait", "--for=condition=complete", &format!("job/{job}"), "--timeout=60s"], None).ok();
    eventually("the cronjob records its schedule and success", || {
        !jsonpath(bin, &server, &["cronjob", "tick"], "{.status.lastScheduleTime}").is_empty()
            && !jsonpath(bin, &server, &["cronjob", "tick"], "{.status.lastSuccessfulTime}").is_empty()
    });
    let events = kubectl(bin, &server, &["describe", "cronjob", "tick"], None).ok().stdout;
    assert!(events.contains(&format!("Created job {job}")), "{events}");
}
