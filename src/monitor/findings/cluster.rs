//! What is wrong with a cluster's setup, from the views the monitor
//! derives (`CLUSTER NODES` and `CLUSTER INFO` of every node, and whether
//! each answers): each check names the rule of Redis Cluster that makes it
//! matter. Pure: the same views give the same findings.

use crate::config::Severity;
use crate::model::finding::{Check, Finding};
use crate::model::snapshot::ClusterView;
use crate::monitor::derive::cluster::ShardSetup;

/// Slots are spread unevenly when the master serving the most holds more
/// than this many times the slots of the one serving the fewest: about as
/// many times its keys, memory and load, if keys hash evenly.
const IMBALANCE_INFO: f64 = 1.5;

/// From this ratio on, the imbalance is a warning: that master fills up
/// and saturates long before the others.
const IMBALANCE_WARNING: f64 = 3.0;

/// The findings about cluster `deployment`. `answers`: whether the agent's
/// last poll of a node (`host:port`) succeeded.
pub fn findings(
    deployment: &str,
    c: &ClusterView,
    setups: &[ShardSetup],
    answers: impl Fn(&str) -> bool,
) -> Vec<Finding> {
    let finding = |check, severity, shard: Option<&str>, node: Option<&str>, why, action| Finding {
        check,
        severity,
        deployment: deployment.to_string(),
        shard: shard.map(String::from),
        node: node.map(String::from),
        why,
        action,
    };
    let mut out = Vec::new();
    // Nodes that answer while the cluster has marked them `fail`. Clients
    // still connected to one (or configured with its address alone) are
    // served by a node the rest of the cluster routes away from: its writes
    // to slots it lost are refused or, for a stale master that has not
    // learnt of its replacement yet, lost.
    for f in c.failing.iter().filter(|f| f.fail && answers(&f.node)) {
        out.push(finding(
            Check::AnsweringWhileFailed,
            Severity::Warning,
            None,
            Some(&f.node),
            format!(
                "{} answers, but the cluster has marked it fail: clients still talking to it are served by a node the others route away from",
                f.node
            ),
            "find why the others cannot reach it (network, cluster bus port, announce address); CLUSTER NODES on it and on another node".into(),
        ));
    }
    // `shard_slots` is sorted by shard.
    let shard_slots = c.slots.as_ref().map_or(&[][..], |s| &s.shard_slots[..]);
    let slots_of = |shard: &str| {
        shard_slots
            .binary_search_by(|(n, _)| n.as_str().cmp(shard))
            .map_or(0, |i| shard_slots[i].1)
    };
    for s in setups {
        let slots = slots_of(&s.shard);
        if slots > 0 {
            if let Some((why, action)) = no_failover_candidate(s, slots) {
                out.push(finding(
                    Check::NoFailoverCandidate,
                    Severity::Warning,
                    Some(&s.shard),
                    s.master.as_deref(),
                    why,
                    action,
                ));
            }
        }
        if let Some(host) = &s.shared_host {
            out.push(finding(
                Check::ShardSharesHost,
                Severity::Warning,
                Some(&s.shard),
                Some(host),
                format!(
                    "the master and every replica of shard {} are on host {host}: losing it loses every copy of the shard's {slots} slots",
                    s.shard
                ),
                "move replicas to other hosts (and zones) than their master's".into(),
            ));
        }
    }
    if let Some((severity, why)) = c.slots.as_ref().and_then(|s| imbalance(&s.shard_slots)) {
        out.push(finding(
            Check::SlotsImbalanced,
            severity,
            None,
            None,
            why,
            "move slots to the masters with fewest: `redis-cli --cluster rebalance <host:port>` (valkey-cli alike), or CLUSTER SETSLOT ... MIGRATING/IMPORTING and MIGRATE".into(),
        ));
    }
    out
}

/// Why no replica of a master serving `slots` could take over, and what to
/// do; `None` when one could. Redis Cluster fails a master over only to
/// one of its own replicas, elected by the masters: without a replica that
/// can start an election (not `nofailover`) and reach them (not `fail`),
/// the master's slots go unserved until it comes back.
fn no_failover_candidate(s: &ShardSetup, slots: u32) -> Option<(String, String)> {
    if s.replicas.is_empty() {
        return Some((
            format!(
                "shard {} serves {slots} slots and has no replica: if its master fails, they are unserved until it is back (only a master's own replicas take over)",
                s.shard
            ),
            "add a replica: CLUSTER REPLICATE <master node id> on a new node".into(),
        ));
    }
    if s.replicas.iter().any(|r| !r.nofailover && !r.failed) {
        return None;
    }
    let each: Vec<String> = s
        .replicas
        .iter()
        .map(|r| {
            let reason = if r.failed {
                "fail"
            } else {
                "nofailover (cluster-replica-no-failover yes)"
            };
            format!("{}: {reason}", r.addr)
        })
        .collect();
    Some((
        format!(
            "shard {} serves {slots} slots and no replica could take over ({}): if its master fails, no replica starts an election and the slots are unserved until it is back",
            s.shard,
            each.join(", ")
        ),
        "CONFIG SET cluster-replica-no-failover no on a replica (and in its config file), or bring a failed replica back".into(),
    ))
}

/// How unevenly the masters serving slots share them, when it is a finding.
fn imbalance(shard_slots: &[(String, u32)]) -> Option<(Severity, String)> {
    let serving = shard_slots.iter().filter(|(_, n)| *n > 0);
    let most = serving.clone().max_by_key(|(_, n)| *n)?;
    let fewest = serving.min_by_key(|(_, n)| *n)?;
    let ratio = f64::from(most.1) / f64::from(fewest.1);
    let severity = if ratio > IMBALANCE_WARNING {
        Severity::Warning
    } else if ratio > IMBALANCE_INFO {
        Severity::Info
    } else {
        return None;
    };
    Some((
        severity,
        format!(
            "shard {} serves {} slots, shard {} {} ({ratio:.1}x): keys hash evenly over slots, so its master holds about {ratio:.1}x the keys and load",
            most.0, most.1, fewest.0, fewest.1
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::snapshot::{FailingView, SlotsView};
    use crate::monitor::derive::cluster::ReplicaSetup;

    fn cluster(failing: Vec<FailingView>, shard_slots: &[(&str, u32)]) -> ClusterView {
        ClusterView {
            state_ok: true,
            majority: None,
            current_epoch: 1,
            failing,
            slots: Some(SlotsView {
                shard_slots: shard_slots
                    .iter()
                    .map(|(s, n)| (s.to_string(), *n))
                    .collect(),
                ..SlotsView::default()
            }),
        }
    }

    fn replica(addr: &str, nofailover: bool, failed: bool) -> ReplicaSetup {
        ReplicaSetup {
            addr: addr.into(),
            nofailover,
            failed,
        }
    }

    fn setup(shard: &str, replicas: Vec<ReplicaSetup>, shared_host: Option<&str>) -> ShardSetup {
        ShardSetup {
            shard: shard.into(),
            master: Some(format!("{shard}:1")),
            replicas,
            shared_host: shared_host.map(String::from),
        }
    }

    fn checks(f: &[Finding]) -> Vec<(&str, Option<&str>, Severity)> {
        f.iter()
            .map(|f| (f.check.as_str(), f.shard.as_deref(), f.severity))
            .collect()
    }

    #[test]
    fn a_failed_node_that_answers_is_a_finding_one_that_does_not_is_not() {
        let failing = |node: &str, pfail, fail| FailingView {
            node: node.into(),
            pfail,
            fail,
        };
        let c = cluster(
            vec![
                failing("a:1", 0, true),
                failing("b:1", 0, true),
                failing("c:1", 2, false),
            ],
            &[],
        );
        let f = findings("c", &c, &[], |n| n != "b:1");
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].check.as_str(), "answering_while_failed");
        assert_eq!(f[0].node.as_deref(), Some("a:1"));
        assert_eq!(findings("c", &cluster(Vec::new(), &[]), &[], |_| true), []);
    }

    #[test]
    fn a_master_serving_slots_needs_a_replica_that_could_take_over() {
        let c = cluster(Vec::new(), &[("a", 5461), ("b", 5461), ("c", 5462)]);
        let setups = [
            setup("a", Vec::new(), None),
            setup(
                "b",
                vec![replica("b:2", true, false), replica("b:3", false, true)],
                None,
            ),
            setup(
                "c",
                vec![replica("c:2", true, false), replica("c:3", false, false)],
                None,
            ),
            // Serves no slots: nothing to take over.
            setup("d", Vec::new(), None),
        ];
        let f = findings("x", &c, &setups, |_| true);
        assert_eq!(
            checks(&f),
            [
                ("no_failover_candidate", Some("a"), Severity::Warning),
                ("no_failover_candidate", Some("b"), Severity::Warning)
            ]
        );
        assert!(f[0].why.contains("no replica"), "{}", f[0].why);
        assert_eq!(f[1].node.as_deref(), Some("b:1"));
        assert!(
            f[1].why
                .contains("b:2: nofailover (cluster-replica-no-failover yes), b:3: fail"),
            "{}",
            f[1].why
        );
    }

    #[test]
    fn a_shard_on_one_host_is_named_with_its_host() {
        let c = cluster(Vec::new(), &[("a", 8192), ("b", 8192)]);
        let setups = [
            setup("a", vec![replica("a:2", false, false)], Some("10.0.0.1")),
            setup("b", vec![replica("b:2", false, false)], None),
        ];
        let f = findings("x", &c, &setups, |_| true);
        assert_eq!(
            checks(&f),
            [("shard_shares_host", Some("a"), Severity::Warning)]
        );
        assert_eq!(f[0].node.as_deref(), Some("10.0.0.1"));
        assert!(f[0].why.contains("8192 slots"), "{}", f[0].why);
    }

    #[test]
    fn slots_spread_unevenly_are_info_then_a_warning() {
        let imbalanced = |slots: &[(&str, u32)]| {
            let f = findings("x", &cluster(Vec::new(), slots), &[], |_| true);
            f.into_iter().map(|f| (f.severity, f.why)).next()
        };
        // The lab's even split, and 1.5x exactly: fine.
        assert_eq!(imbalanced(&[("a", 5461), ("b", 5461), ("c", 5462)]), None);
        assert_eq!(imbalanced(&[("a", 6000), ("b", 4000)]), None);
        assert_eq!(imbalanced(&[("a", 16384)]), None);
        let (severity, why) = imbalanced(&[("a", 9000), ("b", 4000), ("c", 3384)]).unwrap();
        assert_eq!(severity, Severity::Info);
        assert!(
            why.starts_with("shard a serves 9000 slots, shard c 3384 (2.7x)"),
            "{why}"
        );
        let (severity, _) = imbalanced(&[("a", 13000), ("b", 3384)]).unwrap();
        assert_eq!(severity, Severity::Warning);
    }
}
