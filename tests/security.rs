//! The agent against secured deployments: TLS-only servers (mutual TLS),
//! and ACL users with the `default` user off, as docs/security.md gives
//! them.

mod support;

use std::time::Duration;

use redis_ha_lab::{
    server_major_version, Acl, Cluster, ClusterOpts, Security, SentinelGroup, SentinelOpts,
    TlsFiles,
};
use serde_json::json;
use support::certs::Pki;
use support::{cluster_deployment, sentinel_deployment, temp_dir, Agent, Metrics};

const LONG: Duration = Duration::from_secs(60);

fn up_count(m: &Metrics) -> usize {
    m.find("redis_ha_target_up", &[])
        .filter(|s| s.value == 1.0)
        .count()
}

/// A sentinel group and a 3x1 cluster, both secured the same way.
fn secured_lab(security: Security) -> (SentinelGroup, Cluster) {
    let group = SentinelGroup::start(SentinelOpts {
        security: security.clone(),
        ..SentinelOpts::default()
    });
    let cluster = Cluster::start(ClusterOpts {
        security,
        ..ClusterOpts::default()
    });
    (group, cluster)
}

/// Waits until the agent polls all 12 targets of a [`secured_lab`] (3
/// sentinels, 3 data nodes, 6 cluster nodes), follows every sentinel's
/// events, and sees quorum, both replicas and every slot served.
fn watches_everything(agent: &Agent) {
    agent.wait_metrics("every target up", LONG, |m| {
        up_count(m) == 12
            && m.find("redis_ha_sentinel_subscription_up", &[])
                .filter(|s| s.value == 1.0)
                .count()
                == 3
            && m.value("redis_ha_sentinel_quorum_ok", &[("deployment", "s")]) == Some(1.0)
            && m.value("redis_ha_cluster_slot_coverage_ratio", &[]) == Some(1.0)
            && m.value(
                "redis_ha_shard_replicas_healthy",
                &[("deployment", "s"), ("shard", "mymaster")],
            ) == Some(2.0)
    });
}

/// Freezes the group's master until a replica takes over, and waits for
/// the agent's timeline of that failover, `switched` mark included.
fn fails_over(group: &SentinelGroup, agent: &Agent) {
    let old = group.master_port().unwrap();
    group.node(old).freeze();
    let new = group.wait_for_new_master(old, LONG);
    group.node(old).resume();
    agent.wait_until("the failover's timeline", LONG, |a| {
        a.failovers("s").iter().any(|f| {
            f["outcome"] == "completed"
                && f["new_master"].as_str() == Some(&format!("127.0.0.1:{new}"))
                && f["marks"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["name"] == "switched"))
        })
    });
}

/// Must show 1: a TLS-only sentinel group and cluster that require client
/// certificates. The agent polls every node and sentinel, follows the
/// sentinels' events over TLS (a failover gets its timeline); with a CA that
/// did not sign the servers' certificates it reports every target down,
/// says why, and keeps serving.
#[test]
fn tls_only_deployments_are_monitored_and_a_wrong_ca_is_reported() {
    let dir = temp_dir("tls");
    let pki = Pki::new(&dir.join("pki"), "redis-ha-test-ca");
    let (cert_file, key_file) = pki.issue("redis");
    let security = Security {
        tls: Some(TlsFiles {
            ca_file: pki.ca_file(),
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
            require_client_cert: true,
        }),
        acl: None,
    };
    let (group, cluster) = secured_lab(security);
    let (client_cert, client_key) = pki.issue("agent");
    let tls = |ca: &std::path::Path| {
        format!(
            "    tls: {{ ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\" }}\n",
            ca.display(),
            client_cert.display(),
            client_key.display()
        )
    };
    let deployments = |ca: &std::path::Path| {
        format!(
            "{}{}{}{}",
            sentinel_deployment("s", &[group.sentinels[0].addr()]),
            tls(ca),
            cluster_deployment("c", &[cluster.nodes[0].addr()]),
            tls(ca)
        )
    };
    let agent = Agent::start(&deployments(&pki.ca_file()));
    watches_everything(&agent);
    fails_over(&group, &agent);

    // Another CA: nothing verifies, and the agent says so.
    let other = Pki::new(&dir.join("other-pki"), "some-other-ca");
    let wrong = Agent::start(&deployments(&other.ca_file()));
    let m = wrong.wait_metrics("every seed down", LONG, |m| {
        m.value(
            "redis_ha_target_up",
            &[("sentinel", &group.sentinels[0].addr())],
        ) == Some(0.0)
            && m.value("redis_ha_target_up", &[("node", &cluster.nodes[0].addr())]) == Some(0.0)
    });
    assert_eq!(up_count(&m), 0);
    let log = wrong.log();
    assert!(
        log.contains("UnknownIssuer") || log.contains("invalid peer certificate"),
        "the log says why: {log}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(wrong.get("/-/healthy").0, 200, "still serving");
    assert_eq!(wrong.get("/metrics").0, 200);
}

/// docs/security.md's addition to the data-node lines on Valkey 8+ and
/// Redis 8.2+.
const SLOT_STATS_RULES: &str = " +cluster|slot-stats +dbsize";

/// The `user` lines of docs/security.md, with `password` in place of
/// `CHANGE-ME`: (data nodes, sentinels) for monitoring only, then the same
/// with the canary's rules.
fn documented_users(password: &str) -> [(String, String); 2] {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/security.md")).unwrap();
    let blocks: Vec<String> = doc
        .split("```acl\n")
        .skip(1)
        .map(|b| {
            b.split("```")
                .next()
                .unwrap()
                .trim()
                .replace("CHANGE-ME", password)
        })
        .collect();
    assert_eq!(blocks.len(), 4, "docs/security.md has four acl blocks");
    // What the data-node lines gain on servers with CLUSTER SLOT-STATS.
    assert!(doc.contains(&format!("add `{SLOT_STATS_RULES}` to the")));
    let node = |line: &String| match server_major_version() {
        Some(v) if v >= 8 => format!("{line}{SLOT_STATS_RULES}"),
        _ => line.clone(),
    };
    [
        (node(&blocks[0]), blocks[1].clone()),
        (node(&blocks[2]), blocks[3].clone()),
    ]
}

/// A sentinel group and a cluster with these users and `default` off.
fn lab_with_users((node_user, sentinel_user): (String, String)) -> (SentinelGroup, Cluster) {
    secured_lab(Security {
        tls: None,
        acl: Some(Acl {
            node_users: vec![node_user],
            sentinel_users: vec![sentinel_user],
        }),
    })
}

/// The deployments of a [`secured_lab`] logging in as the documented user,
/// its password in `RHE_ACL_PW`; `extra` added to each.
fn acl_deployments(group: &SentinelGroup, cluster: &Cluster, extra: &str) -> String {
    let auth = "    auth: { username: redis-ha-exporter, password_env: RHE_ACL_PW }\n";
    format!(
        "{}{auth}    sentinel_auth: {{ username: redis-ha-exporter, password_env: RHE_ACL_PW }}\n{extra}{}{auth}{extra}",
        sentinel_deployment("s", &[group.sentinels[0].addr()]),
        cluster_deployment("c", &[cluster.nodes[0].addr()]),
    )
}

/// No server of the lab logged a denied command or a failed login.
fn acl_logs_empty(group: &SentinelGroup, cluster: &Cluster) {
    for node in group
        .nodes
        .iter()
        .chain(&group.sentinels)
        .chain(&cluster.nodes)
    {
        let log = acl_log(node);
        assert!(log.is_empty(), "ACL LOG of {}: {log:?}", node.addr());
    }
}

/// Every page the agent serves: /metrics, and every API route (failovers
/// by id, clusters by name).
fn served(agent: &Agent) -> String {
    let mut pages = vec![
        "/".to_string(),
        "/metrics".into(),
        "/api/v1/topology".into(),
        "/api/v1/failovers".into(),
        "/api/v1/events".into(),
        "/api/v1/alerts".into(),
        "/api/v1/clusters/c/slots".into(),
        "/api/v1/clusters/c/keyslot?key=user:1".into(),
        "/api/v1/clusters/nope/slots".into(),
        "/api/v1/failovers/nope".into(),
    ];
    for f in agent.failovers("s") {
        pages.push(format!("/api/v1/failovers/{}", f["id"].as_str().unwrap()));
    }
    pages.iter().map(|p| agent.get(p).1).collect()
}

/// What a server answers a PING without credentials.
fn anonymous_ping(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    conn.write_all(b"PING\r\n").unwrap();
    let mut answer = [0; 256];
    let n = conn.read(&mut answer).unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

/// Every entry of a server's `ACL LOG` (as the lab's admin user).
fn acl_log(node: &redis_ha_lab::Node) -> Vec<String> {
    match node.cmd(&["ACL", "LOG"]).unwrap() {
        redis_ha_lab::Reply::Array(entries) => entries.iter().map(|e| format!("{e:?}")).collect(),
        other => panic!("ACL LOG: {other:?}"),
    }
}

/// Must show 2: the users of docs/security.md on every node and sentinel,
/// `default` off. Polls, events and a failover's timeline work; no server
/// logged a denied command or a failed login. Must show 4: with the
/// password (and then a wrong one) set, nothing the agent serves, logs or
/// prints holds it.
#[test]
fn the_documented_acl_users_are_enough() {
    const PASSWORD: &str = "acl-Pa55-word";
    let [users, _] = documented_users(PASSWORD);
    let (group, cluster) = lab_with_users(users);
    // The default user is off: a client without credentials gets nowhere.
    for addr in [group.sentinels[0].addr(), cluster.nodes[0].addr()] {
        assert!(anonymous_ping(&addr).starts_with("-NOAUTH"), "{addr}");
    }
    let deployments = acl_deployments(&group, &cluster, "");
    let agent = Agent::start_full(
        &deployments,
        "timelines:\n  clients_after: 1s\n",
        &[("RHE_ACL_PW", PASSWORD)],
    );
    watches_everything(&agent);
    // The settings the findings need are read: one master of the group and
    // three of the cluster, each with Redis's min-replicas-to-write 0.
    agent.wait_until("every master's settings read", LONG, |a| {
        settings_findings(a) == 4
    });
    assert_eq!(agent.json("/api/v1/findings")["unknown"], json!([]));
    fails_over(&group, &agent);
    // The clients left behind on the old master: CLIENT SETNAME, CLIENT LIST.
    agent.wait_until("the old master's clients read", LONG, |a| {
        a.failovers("s")
            .iter()
            .any(|f| !f["clients_left_behind"].is_null())
    });
    let read = agent.failovers("s")[0]["clients_left_behind"].clone();
    assert!(read["error"].is_null(), "{read}");
    // A few more polls of every target after the failover.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!agent.log().contains("NOPERM"), "{}", agent.log());
    acl_logs_empty(&group, &cluster);

    // Must show 4: with a password set (and a wrong one), nothing the
    // agents serve or print holds it.
    let wrong = Agent::start_with_env(
        &deployments,
        &[
            ("RHE_ACL_PW", "wrong-Pa55-also-secret"),
            ("REDIS_HA_LOG", "trace"),
        ],
    );
    wrong.wait_metrics("the seeds refused", LONG, |m| {
        m.value(
            "redis_ha_target_up",
            &[("sentinel", &group.sentinels[0].addr())],
        ) == Some(0.0)
    });
    assert!(wrong.log().contains("WRONGPASS"), "the log says why");
    let mut seen = String::new();
    for a in [&agent, &wrong] {
        seen += &served(a);
        seen += &a.printed();
        let check = std::process::Command::new(env!("CARGO_BIN_EXE_redis-ha-exporter"))
            .args(["check-config", "--config"])
            .arg(a.config_path())
            .env("RHE_ACL_PW", PASSWORD)
            .output()
            .unwrap();
        seen += &String::from_utf8_lossy(&check.stdout);
        seen += &String::from_utf8_lossy(&check.stderr);
    }
    assert!(
        seen.contains("redis_ha_target_up"),
        "collected what was served"
    );
    for secret in [PASSWORD, "wrong-Pa55-also-secret"] {
        assert!(!seen.contains(secret), "{secret} leaked");
    }
}

/// The findings that read the masters' settings (`CONFIG GET`).
fn settings_findings(agent: &Agent) -> usize {
    agent.json("/api/v1/findings")["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "writes_at_risk_unbounded")
        .count()
}

/// The documented lines without `+config|get`: every data node's settings
/// checks say they cannot tell, with the server's refusal, in the API and
/// the metrics; none is reported as fine or found; everything else works.
#[test]
fn without_config_get_the_settings_checks_cannot_tell() {
    const PASSWORD: &str = "acl-Pa55-word";
    let [(node_user, sentinel_user), _] = documented_users(PASSWORD);
    assert!(node_user.contains(" +config|get"));
    let refused = node_user
        .replace(" +config|get", "")
        .replace(SLOT_STATS_RULES, "");
    let (group, cluster) = lab_with_users((refused, sentinel_user));
    let deployments = acl_deployments(&group, &cluster, "");
    let agent = Agent::start_with_env(&deployments, &[("RHE_ACL_PW", PASSWORD)]);
    watches_everything(&agent);
    let nodes: Vec<String> = group
        .nodes
        .iter()
        .chain(&cluster.nodes)
        .map(|n| n.addr())
        .collect();
    // On servers with CLUSTER SLOT-STATS, the cluster's masters are unknown
    // for hot_slots too.
    let slot_stats = server_major_version().is_some_and(|v| v >= 8);
    let expected = nodes.len() + if slot_stats { 3 } else { 0 };
    agent.wait_until("every data node unknown", LONG, |a| {
        a.json("/api/v1/findings")["unknown"]
            .as_array()
            .is_some_and(|u| u.len() == expected)
    });
    let found = agent.json("/api/v1/findings");
    let mut settings_unknown = 0;
    for u in found["unknown"].as_array().unwrap() {
        assert!(nodes.iter().any(|n| u["node"] == n.as_str()), "{u}");
        assert!(u["reason"].as_str().unwrap().starts_with("NOPERM"), "{u}");
        let checks = u["checks"].as_array().unwrap();
        if checks.contains(&json!("writes_at_risk_unbounded")) {
            settings_unknown += 1;
        } else {
            assert_eq!(checks, &[json!("hot_slots")], "{u}");
        }
    }
    assert_eq!(settings_unknown, nodes.len());
    assert_eq!(settings_findings(&agent), 0, "nothing claimed either way");
    let m = agent.metrics();
    for n in &nodes {
        assert_eq!(
            m.value(
                "redis_ha_finding_unknown",
                &[("node", n), ("check", "writes_at_risk_unbounded")]
            ),
            Some(1.0),
            "{n}"
        );
    }
    // The refusals are the only ones the servers logged: the reads of the
    // slow cadence, nothing else.
    for node in group.nodes.iter().chain(&cluster.nodes) {
        for entry in acl_log(node) {
            assert!(
                // `config|get` on 7.0+, `config` on 6.2.
                ["Str(\"config", "cluster|slot-stats", "dbsize"]
                    .iter()
                    .any(|c| entry.contains(c)),
                "{}: {entry}",
                node.addr()
            );
        }
    }
    for node in &group.sentinels {
        assert_eq!(acl_log(node), Vec::<String>::new(), "{}", node.addr());
    }
}

/// A replica the agent can no longer log in to while the sentinels still
/// reach it (its user for the agent deleted) is named by
/// `unreachable_from_agent` past down-after plus 5 s, and cleared once the
/// user is back.
#[test]
fn an_address_the_sentinels_reach_and_the_agent_does_not_is_named() {
    const PASSWORD: &str = "acl-Pa55-word";
    let [users, _] = documented_users(PASSWORD);
    let node_user = users.0.clone();
    let (group, cluster) = lab_with_users(users);
    let deployments = acl_deployments(&group, &cluster, "");
    let agent = Agent::start_with_env(&deployments, &[("RHE_ACL_PW", PASSWORD)]);
    watches_everything(&agent);
    let master = group.master_port().unwrap();
    let replica = group.nodes.iter().find(|n| n.port() != master).unwrap();
    let named = |a: &Agent| a.named("unreachable_from_agent");
    assert_eq!(named(&agent), Vec::<String>::new());
    replica
        .cmd(&["ACL", "DELUSER", "redis-ha-exporter"])
        .unwrap();
    agent.wait_until("the replica named", LONG, |a| named(a) == [replica.addr()]);
    let mut setuser = vec!["ACL", "SETUSER"];
    setuser.extend(node_user.split_whitespace().skip(1));
    replica.cmd(&setuser).unwrap();
    agent.wait_until("the replica no longer named", LONG, |a| named(a).is_empty());
}

/// The canary's lines of docs/security.md are enough for it: with the
/// canary on, every shard's probe writes, a sentinel failover gets the
/// canary's figures, and no server logged a denied command.
#[test]
fn the_documented_canary_acl_users_are_enough() {
    let [_, users] = documented_users("canary-Pa55-word");
    let (group, cluster) = lab_with_users(users);
    let agent = Agent::start_with_env(
        &acl_deployments(&group, &cluster, support::CANARY),
        &[("RHE_ACL_PW", "canary-Pa55-word")],
    );
    watches_everything(&agent);
    agent.wait_metrics("every shard's canary writing", LONG, |m| {
        m.find("redis_ha_canary_up", &[])
            .filter(|s| s.value == 1.0)
            .count()
            == 4
    });
    fails_over(&group, &agent);
    agent.wait_until("the canary's figures on the failover", LONG, |a| {
        a.failovers("s").iter().any(|f| !f["canary"].is_null())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(!agent.log().contains("NOPERM"), "{}", agent.log());
    acl_logs_empty(&group, &cluster);
}
