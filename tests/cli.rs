//! The command line: configuration errors, check-config, and secrets.

mod support;

use std::process::Command;
use std::time::Duration;

use redis_ha_lab::{Cluster, ClusterOpts};
use support::{cluster_deployment, temp_dir, Agent};

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_redis-ha-exporter"))
}

/// Runs the agent on `yaml`, both as `check-config` and as a normal start:
/// each must exit non-zero at once, with a message containing every `needle`.
fn refused(name: &str, yaml: &str, needles: &[&str]) {
    let dir = temp_dir("cli");
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    for args in [vec!["check-config", "--config"], vec!["--config"]] {
        let out = agent().args(&args).arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name} with {args:?}: {stderr}");
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{name} with {args:?}: {needle:?} not in {stderr:?}"
            );
        }
    }
}

const HEAD: &str = "deployments:\n  - name: s\n    kind: sentinel\n";

/// Must show 6: every kind of bad config exits non-zero and names the problem.
#[test]
fn bad_configs_are_refused_with_a_message_naming_the_problem() {
    refused(
        "unknown-key",
        &format!("{HEAD}    sentinels: [\"127.0.0.1:1\"]\n    quorum: 2\n"),
        &["deployments[0]", "unknown field `quorum`", "line 5"],
    );
    refused(
        "wrong-type",
        "poll_interval: 1s\ndeployments:\n  - name: s\n    kind: sentinel\n    sentinels: 26379\n",
        &["deployments[0].sentinels", "expected a sequence", "line 5"],
    );
    refused(
        "missing-name",
        "deployments:\n  - kind: cluster\n    seeds: [\"127.0.0.1:1\"]\n",
        &["deployments[0]", "missing field `name`", "line 2"],
    );
    refused(
        "bad-duration",
        &format!("timeout: soon\n{HEAD}    sentinels: [\"127.0.0.1:1\"]\n"),
        &["timeout", "invalid duration \"soon\"", "500ms", "line 1"],
    );
    refused(
        "missing-password-file",
        &format!("{HEAD}    sentinels: [\"127.0.0.1:1\"]\n    auth: {{ password_file: /nonexistent/redis-pw }}\n"),
        &["deployments[0].auth", "cannot read password file /nonexistent/redis-pw", "line 5"],
    );
    refused(
        "password-in-yaml",
        &format!("{HEAD}    sentinels: [\"127.0.0.1:1\"]\n    auth: {{ password: hunter2 }}\n"),
        &["`password` is not accepted", "password_file"],
    );
    refused("not-yaml", "deployments: [\n", &["line"]);
    // And a file that does not exist at all.
    let out = agent()
        .args(["--config", "/nonexistent/agent.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot read config file /nonexistent/agent.yaml"));
    let out = agent().output().unwrap();
    assert_eq!(out.status.code(), Some(2), "nothing to watch is an error");
}

#[test]
fn the_shipped_example_configs_pass_check_config() {
    let dir = temp_dir("example");
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.yaml"))
            .unwrap();
    let pw = dir.join("pw");
    std::fs::write(&pw, "x\n").unwrap();
    let hook = dir.join("webhook");
    std::fs::write(&hook, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
    let path = dir.join("example.yaml");
    std::fs::write(
        &path,
        example
            .replace("/run/secrets/redis", pw.to_str().unwrap())
            .replace("/run/secrets/webhook", hook.to_str().unwrap()),
    )
    .unwrap();
    let out = agent()
        .args(["check-config", "--config"])
        .arg(&path)
        .env("SENTINEL_PASSWORD", "a")
        .env("REDIS_PASSWORD", "b")
        .env(
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T/B/x",
        )
        .env("PAGERDUTY_ROUTING_KEY", "k")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (2 deployments)"));
    let minimal = concat!(env!("CARGO_MANIFEST_DIR"), "/config/minimal.yaml");
    assert!(agent()
        .args(["check-config", "--config", minimal])
        .status()
        .unwrap()
        .success());
}

/// A password-protected cluster: the agent authenticates with the password
/// from the environment, and neither its log nor /metrics ever shows it;
/// with a wrong password the nodes are down and the password still never shows.
#[test]
fn passwords_work_and_never_leak() {
    const SECRET: &str = "s3cret-Pa55word-do-not-leak";
    let cluster = Cluster::start(ClusterOpts {
        masters: 3,
        replicas_per_master: 0,
        ..ClusterOpts::default()
    });
    for n in &cluster.nodes {
        n.cmd(&["CONFIG", "SET", "requirepass", SECRET]).unwrap();
    }
    let seeds = [cluster.nodes[0].addr()];
    let deployment = format!(
        "{}    auth: {{ password_env: RHE_TEST_PW }}\n",
        cluster_deployment("c", &seeds)
    );
    let good = Agent::start_with_env(&deployment, &[("RHE_TEST_PW", SECRET)]);
    let m = good.wait_metrics(
        "three nodes up with the password",
        Duration::from_secs(30),
        |m| {
            m.find("redis_ha_target_up", &[])
                .filter(|s| s.value == 1.0)
                .count()
                == 3
        },
    );
    assert!(!m.text.contains(SECRET));
    assert!(!good.log().contains(SECRET));

    let wrong = Agent::start_with_env(
        &deployment,
        // Everything logged, the Redis client's own trace included.
        &[
            ("RHE_TEST_PW", "wrong-Pa55word-also-secret"),
            ("REDIS_HA_LOG", "trace"),
        ],
    );
    let m = wrong.wait_metrics(
        "the seed down with a wrong password",
        Duration::from_secs(30),
        |m| m.value("redis_ha_target_up", &[("node", &seeds[0])]) == Some(0.0),
    );
    assert!(!m.text.contains("wrong-Pa55word"));
    let log = wrong.log();
    assert!(
        log.contains("WRONGPASS"),
        "the log says why the node is down"
    );
    assert!(
        !log.contains("wrong-Pa55word"),
        "the password is in the log"
    );
    assert!(!log.contains(SECRET));
}

/// `slots` against an address where nothing listens: exit 2, and says why.
#[test]
fn slots_check_with_no_cluster_fails_clearly() {
    let out = agent()
        .args(["slots", "--cluster", "127.0.0.1:1", "--wait", "2s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no node of the cluster at 127.0.0.1:1 answered within 2s"),
        "{stderr}"
    );
    let out = agent().args(["slots"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "--cluster is required");
}
