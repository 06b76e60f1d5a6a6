//! What is wrong with a deployment's setup from its data nodes' own
//! settings (`CONFIG GET`, read at a slow cadence), over the shards as the
//! polls derive them. Pure: the same shards and settings give the same
//! findings. A node whose settings were refused makes its checks unknown,
//! never absent.

use std::collections::BTreeMap;

use crate::config::Severity;
use crate::model::finding::{Check, Finding, Unknown};
use crate::model::settings::{Param, Settings, SettingsRead};
use crate::model::snapshot::ShardView;
use crate::parse::info::Role;

/// The checks this file makes on a deployment of that kind.
fn checks(cluster: bool) -> Vec<Check> {
    let mut all = vec![Check::WritesAtRiskUnbounded, Check::SameZone];
    if cluster {
        all.extend([
            Check::FullCoverageRequired,
            Check::ReplicaMigrationDisabled,
            Check::ReplicaTooStale,
        ]);
    }
    all
}

/// The findings from the settings, and the nodes where they cannot tell.
/// `settings`: a node's last settings read, if any finished.
pub fn findings<'a>(
    deployment: &str,
    cluster: bool,
    shards: &BTreeMap<String, ShardView>,
    settings: impl Fn(&str) -> Option<&'a SettingsRead>,
) -> (Vec<Finding>, Vec<Unknown>) {
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    let mut read: BTreeMap<&str, &Settings> = BTreeMap::new();
    for node in shards.values().flat_map(|s| &s.nodes) {
        match settings(&node.addr) {
            Some(SettingsRead::Read(s)) => {
                read.insert(&node.addr, s);
            }
            Some(SettingsRead::Refused(reason)) => unknown.push(Unknown {
                deployment: deployment.to_string(),
                node: node.addr.clone(),
                checks: checks(cluster),
                reason: reason.clone(),
            }),
            None => {}
        }
    }
    let mut add = |check, severity, shard: Option<&str>, node: Option<&str>, why, action| {
        out.push(Finding {
            check,
            severity,
            deployment: deployment.to_string(),
            shard: shard.map(str::to_string),
            node: node.map(str::to_string),
            why,
            action,
        })
    };
    for shard in shards.values() {
        let master = shard.master.as_deref();
        if let Some((m, s)) = master.and_then(|m| Some((m, *read.get(m)?))) {
            if s.number(Param::MinReplicasToWrite) == Some(0) {
                add(
                    Check::WritesAtRiskUnbounded,
                    Severity::Info,
                    Some(&shard.name),
                    Some(m),
                    "min-replicas-to-write 0: the master acknowledges writes no replica has, so a failover loses however many it took since its replicas last caught up".into(),
                    "CONFIG SET min-replicas-to-write 1 and min-replicas-max-lag 10 on the masters (and in their config): a master cut off from its replicas then refuses writes after 10 s, which bounds the loss".into(),
                );
            }
        }
        if let Some(zone) = same_zone(shard, &read) {
            add(
                Check::SameZone,
                Severity::Warning,
                Some(&shard.name),
                master,
                format!("the master and its {} replica(s) are all in availability zone {zone}: losing the zone loses the shard", shard.nodes.len() - 1),
                "move a replica to another zone".into(),
            );
        }
    }
    if cluster {
        full_coverage(shards, &read, &mut add);
        migration(shards, &read, &mut add);
        stale_replicas(shards, &read, &mut add);
    }
    (out, unknown)
}

type Add<'a> = dyn FnMut(Check, Severity, Option<&str>, Option<&str>, String, String) + 'a;

/// The one zone every node of the shard reports, when it has a master, a
/// replica, and every node's zone is known.
fn same_zone<'a>(shard: &ShardView, read: &BTreeMap<&str, &'a Settings>) -> Option<&'a str> {
    if shard.master.is_none() || shard.nodes.len() < 2 {
        return None;
    }
    let mut zones = shard
        .nodes
        .iter()
        .map(|n| read.get(n.addr.as_str())?.text(Param::AvailabilityZone));
    let first = zones.next()??;
    zones.all(|z| z == Some(first)).then_some(first)
}

/// `cluster-require-full-coverage yes` on any node: a Redis default, said
/// as information with what it means for the coverage alert.
fn full_coverage(
    shards: &BTreeMap<String, ShardView>,
    read: &BTreeMap<&str, &Settings>,
    add: &mut Add,
) {
    let yes = read
        .values()
        .filter(|s| s.flag(Param::RequireFullCoverage) == Some(true))
        .count();
    if yes == 0 {
        return;
    }
    let nodes: usize = shards.values().map(|s| s.nodes.len()).sum();
    add(
        Check::FullCoverageRequired,
        Severity::Info,
        None,
        None,
        format!("{yes} of {nodes} nodes have cluster-require-full-coverage yes: when one shard loses all its nodes, they stop serving every key, not only that shard's slots"),
        "fine if a partial outage is worse than a total one for the applications; else CONFIG SET cluster-require-full-coverage no on every node (and in their config)".into(),
    );
}

/// A master left without a replica while replicas elsewhere could move to
/// it (`clusterHandleSlaveMigration`: a replica moves when its own master
/// keeps more than `cluster-migration-barrier` replicas) but every such
/// replica has `cluster-allow-replica-migration no`.
fn migration(
    shards: &BTreeMap<String, ShardView>,
    read: &BTreeMap<&str, &Settings>,
    add: &mut Add,
) {
    fn replicas(s: &ShardView) -> Vec<&str> {
        s.nodes
            .iter()
            .filter(|n| n.role == Some(Role::Replica))
            .map(|n| n.addr.as_str())
            .collect()
    }
    let mut could_move = Vec::new();
    let mut would_move = false;
    for shard in shards.values() {
        let rs = replicas(shard);
        for r in &rs {
            let Some(s) = read.get(r) else { continue };
            let barrier = s.number(Param::MigrationBarrier).unwrap_or(1);
            if (rs.len() as u64) <= barrier {
                continue;
            }
            match s.flag(Param::AllowReplicaMigration) {
                Some(false) => could_move.push(*r),
                _ => would_move = true,
            }
        }
    }
    if would_move || could_move.is_empty() {
        return;
    }
    for orphan in shards
        .values()
        .filter(|s| s.master.is_some() && replicas(s).is_empty())
    {
        add(
            Check::ReplicaMigrationDisabled,
            Severity::Warning,
            Some(&orphan.name),
            orphan.master.as_deref(),
            format!("no replica, and {} could move to it but have cluster-allow-replica-migration no: if this master fails its slots stay uncovered", could_move.join(", ")),
            "CONFIG SET cluster-allow-replica-migration yes on those replicas, or add a replica to this master".into(),
        );
    }
}

/// Cluster replicas whose link to their master has been down for longer
/// than their `cluster-replica-validity-factor` allows: such a replica
/// never starts a failover (`clusterHandleSlaveFailover`: data older than
/// `repl-ping-replica-period` + `cluster-node-timeout` x factor, counted
/// after the first node timeout). If its master fails, it is no candidate.
fn stale_replicas(
    shards: &BTreeMap<String, ShardView>,
    read: &BTreeMap<&str, &Settings>,
    add: &mut Add,
) {
    for shard in shards.values() {
        for node in &shard.nodes {
            let Some(link) = node.replica.as_ref().and_then(|r| r.link.as_ref()) else {
                continue;
            };
            let Some(s) = read.get(node.addr.as_str()) else {
                continue;
            };
            let (Some(timeout_ms), Some(factor), Some(ping)) = (
                s.number(Param::NodeTimeout),
                s.number(Param::ReplicaValidityFactor),
                s.number(Param::ReplPingReplicaPeriod),
            ) else {
                continue;
            };
            let limit = timeout_ms as f64 / 1000.0 * (factor + 1) as f64 + ping as f64;
            if link.up || factor == 0 || (link.down_seconds as f64) <= limit {
                continue;
            }
            add(
                Check::ReplicaTooStale,
                Severity::Warning,
                Some(&shard.name),
                Some(&node.addr),
                format!("replica {}'s link to its master has been down {} s, beyond the {limit:.0} s cluster-replica-validity-factor {factor} allows: it will not take over if its master fails", node.addr, link.down_seconds),
                "bring its replication link back (the replica's log says why it is down); cluster-replica-validity-factor 0 lets a stale replica take over, at the cost of the writes it lacks".into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::snapshot::{LinkView, NodeView, ReplicaView};

    /// A shard `name` of master `m` and replicas `rs`.
    fn shard(name: &str, m: &str, rs: &[&str]) -> (String, ShardView) {
        let node = |addr: &str, role| NodeView {
            addr: addr.into(),
            role: Some(role),
            replica: None,
        };
        let mut nodes = vec![node(m, Role::Master)];
        nodes.extend(rs.iter().map(|r| node(r, Role::Replica)));
        let view = ShardView {
            name: name.into(),
            master: Some(m.into()),
            master_offset: None,
            masters: 1,
            replicas_healthy: rs.len() as u32,
            nodes,
            sentinel: None,
            failover_in_progress: false,
            two_masters: None,
        };
        (name.into(), view)
    }

    fn read(pairs: &[(Param, &str)]) -> SettingsRead {
        let mut s = Settings::default();
        for (p, v) in pairs {
            s.set(*p, v.to_string());
        }
        SettingsRead::Read(s)
    }

    fn names(f: &[Finding]) -> Vec<(&str, Option<&str>)> {
        f.iter()
            .map(|f| (f.check.as_str(), f.node.as_deref()))
            .collect()
    }

    /// Redis's defaults on every node of a three-shard cluster: the two
    /// defaults that carry a risk are said as information, nothing more.
    #[test]
    fn defaults_are_information() {
        let shards = BTreeMap::from([shard("a", "m1", &["r1"]), shard("b", "m2", &["r2"])]);
        let defaults = read(&[
            (Param::MinReplicasToWrite, "0"),
            (Param::MinReplicasMaxLag, "10"),
            (Param::RequireFullCoverage, "yes"),
            (Param::AllowReplicaMigration, "yes"),
            (Param::MigrationBarrier, "1"),
            (Param::AvailabilityZone, ""),
        ]);
        let (f, unknown) = findings("d", true, &shards, |_| Some(&defaults));
        assert!(unknown.is_empty());
        assert_eq!(
            names(&f),
            [
                ("writes_at_risk_unbounded", Some("m1")),
                ("writes_at_risk_unbounded", Some("m2")),
                ("full_coverage_required", None),
            ]
        );
        assert!(f.iter().all(|f| f.severity == Severity::Info));
        assert!(f[2].why.starts_with("4 of 4 nodes"));
        // A sentinel deployment is not asked the cluster settings.
        let (f, _) = findings("d", false, &shards, |_| Some(&defaults));
        assert_eq!(names(&f).len(), 2);
        // Bounded writes and partial coverage: nothing to say.
        let set = read(&[
            (Param::MinReplicasToWrite, "1"),
            (Param::RequireFullCoverage, "no"),
        ]);
        assert_eq!(findings("d", true, &shards, |_| Some(&set)).0, []);
    }

    #[test]
    fn one_zone_for_a_whole_shard() {
        let shards = BTreeMap::from([shard("a", "m1", &["r1", "r2"])]);
        let zone = |z: &str| read(&[(Param::AvailabilityZone, z)]);
        let (az1, az2, none) = (zone("az1"), zone("az2"), zone(""));
        let (f, _) = findings("d", false, &shards, |_| Some(&az1));
        assert_eq!(names(&f), [("same_zone", Some("m1"))]);
        assert_eq!(f[0].severity, Severity::Warning);
        assert!(f[0]
            .why
            .contains("2 replica(s) are all in availability zone az1"));
        // One replica elsewhere, or a zone not known: nothing.
        let one_apart = |a: &str| Some(if a == "r2" { &az2 } else { &az1 });
        assert_eq!(findings("d", false, &shards, one_apart).0, []);
        let unknown = |a: &str| Some(if a == "r2" { &none } else { &az1 });
        assert_eq!(findings("d", false, &shards, unknown).0, []);
        // A master alone is not a zone risk (the replica checks say it).
        let alone = BTreeMap::from([shard("a", "m1", &[])]);
        assert_eq!(findings("d", false, &alone, |_| Some(&az1)).0, []);
    }

    /// An orphaned master, and a shard with two replicas (barrier 1): one
    /// could move, unless migration is off on both.
    #[test]
    fn migration_off_where_it_would_help() {
        let shards = BTreeMap::from([shard("a", "m1", &["r1", "r2"]), shard("b", "m2", &[])]);
        let off = read(&[(Param::AllowReplicaMigration, "no")]);
        let on = read(&[(Param::AllowReplicaMigration, "yes")]);
        let (f, _) = findings("d", true, &shards, |_| Some(&off));
        assert_eq!(names(&f), [("replica_migration_disabled", Some("m2"))]);
        assert!(f[0].why.contains("r1, r2 could move"));
        // One replica allowed to move: it will.
        let one_on = |a: &str| Some(if a == "r1" { &on } else { &off });
        assert_eq!(findings("d", true, &shards, one_on).0, []);
        // A barrier of 2: neither may leave, so migration would not help.
        let barrier = read(&[
            (Param::AllowReplicaMigration, "no"),
            (Param::MigrationBarrier, "2"),
        ]);
        assert_eq!(findings("d", true, &shards, |_| Some(&barrier)).0, []);
        // No orphan: nothing to move to.
        let full = BTreeMap::from([shard("a", "m1", &["r1", "r2"]), shard("b", "m2", &["r3"])]);
        assert_eq!(findings("d", true, &full, |_| Some(&off)).0, []);
    }

    #[test]
    fn refused_settings_are_unknown_not_fine() {
        let shards = BTreeMap::from([shard("a", "m1", &["r1"])]);
        let denied = SettingsRead::Refused("NOPERM no config|get".into());
        let (f, unknown) = findings("d", true, &shards, |_| Some(&denied));
        assert_eq!(f, []);
        assert_eq!(
            unknown.iter().map(|u| u.node.as_str()).collect::<Vec<_>>(),
            ["m1", "r1"]
        );
        assert_eq!(unknown[0].checks.len(), 5);
        assert_eq!(unknown[0].reason, "NOPERM no config|get");
        // Not read yet: neither found nor unknown.
        let (f, unknown) = findings("d", true, &shards, |_| None);
        assert!(f.is_empty() && unknown.is_empty());
    }

    /// A replica whose link has been down past node timeout x (factor + 1)
    /// plus the ping period (here 15 x 11 + 10 = 175 s) is named; a factor
    /// of 0, a link up, or less time: nothing.
    #[test]
    fn a_replica_too_stale_to_take_over() {
        let (name, mut view) = shard("a", "m1", &["r1"]);
        let link = |up: bool, down_seconds: u64| {
            Some(ReplicaView {
                link: Some(LinkView {
                    up,
                    down_seconds,
                    sync_in_progress: false,
                }),
                ..ReplicaView::default()
            })
        };
        let settings = |factor: &str| {
            read(&[
                (Param::NodeTimeout, "15000"),
                (Param::ReplicaValidityFactor, factor),
                (Param::ReplPingReplicaPeriod, "10"),
            ])
        };
        let (ten, zero) = (settings("10"), settings("0"));
        let mut stale = |up, secs, s: &SettingsRead| {
            view.nodes[1].replica = link(up, secs);
            let shards = BTreeMap::from([(name.clone(), view.clone())]);
            findings("d", true, &shards, |_| Some(s)).0
        };
        assert_eq!(stale(false, 175, &ten), []);
        let f = stale(false, 176, &ten);
        assert_eq!(names(&f), [("replica_too_stale", Some("r1"))]);
        assert!(
            f[0].why.contains("down 176 s, beyond the 175 s"),
            "{}",
            f[0].why
        );
        assert_eq!(stale(false, 10_000, &zero), []);
        assert_eq!(stale(true, 10_000, &ten), []);
    }
}
