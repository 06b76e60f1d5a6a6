//! The monitor fed recorded replies and events: discovery, views, failover
//! timelines and alerts, through the public API of [`Monitor`].

use super::Monitor;
use crate::config::Config;
use crate::model::Input;

fn test_monitor(config: &Config) -> Monitor {
    Monitor::new(config, Vec::new(), Vec::new())
}

mod cases {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::config::Config;
    use crate::model::snapshot::{Divergence, SlotsView, Snapshot};
    use crate::model::{
        ClusterReading, EventMessage, MasterView, NodeReading, Observation, PollError, Reading,
        SentinelReading, TargetId, TargetKind,
    };
    use crate::parse::cluster::{parse_nodes, ClusterInfo};
    use crate::parse::fixture;
    use crate::parse::info::{ReplicationInfo, SentinelInfo};
    use crate::parse::sentinel::tests::recorded_maps;
    use crate::parse::sentinel::{MasterEntry, ReplicaEntry, SentinelEntry};
    use std::time::Instant;

    fn config(kind: &str, seed: &str) -> Config {
        let key = if kind == "sentinel" {
            "sentinels"
        } else {
            "seeds"
        };
        crate::config::parse(
            &format!("deployments:\n  - name: d\n    kind: {kind}\n    {key}: [\"{seed}\"]\n"),
            "t",
        )
        .unwrap()
    }

    fn obs(
        role: TargetKind,
        addr: &str,
        seen: Instant,
        result: Result<Reading, PollError>,
    ) -> Input {
        Input::Poll(Observation {
            target: TargetId {
                deployment: "d".into(),
                kind: role,
                addr: addr.into(),
            },
            at: SystemTime::now(),
            seen,
            duration: Duration::from_millis(1),
            result,
        })
    }

    fn node(text: &str) -> Result<Reading, PollError> {
        Ok(Reading::Node(NodeReading {
            replication: ReplicationInfo::parse(text).unwrap(),
            cluster: None,
            changes: None,
            settings: None,
            slot_stats: None,
        }))
    }

    pub(super) fn recorded_sentinel() -> Reading {
        let master = MasterEntry::parse(&recorded_maps("sentinel masters")[0]).unwrap();
        let view = MasterView {
            replicas: recorded_maps("sentinel replicas")
                .iter()
                .map(|m| ReplicaEntry::parse(m).unwrap())
                .collect(),
            sentinels: recorded_maps("sentinel sentinels")
                .iter()
                .map(|m| SentinelEntry::parse(m).unwrap())
                .collect(),
            quorum_ok: true,
            master,
        };
        Reading::Sentinel(SentinelReading {
            info: SentinelInfo { tilt: false },
            masters: [("mymaster".to_string(), view)].into(),
        })
    }

    /// A monitor of one sentinel deployment that has seen the recorded
    /// SENTINEL replies from sentinel 27100.
    fn after_recorded_sentinel(at: Instant) -> Monitor {
        let mut m = test_monitor(&config("sentinel", "127.0.0.1:27100"));
        m.apply(obs(
            TargetKind::Sentinel,
            "127.0.0.1:27100",
            at,
            Ok(recorded_sentinel()),
        ));
        m
    }

    fn targets(s: &Snapshot) -> Vec<String> {
        s.targets()
            .map(|t| format!("{}:{}", t.kind.label(), t.addr))
            .collect()
    }

    #[test]
    fn one_sentinel_leads_to_every_sentinel_and_node() {
        let mut m = test_monitor(&config("sentinel", "127.0.0.1:27100"));
        assert_eq!(targets(&m.snapshot()), ["sentinel:127.0.0.1:27100"]);
        assert!(!m.snapshot().ready);
        m = after_recorded_sentinel(Instant::now());
        let s = m.snapshot();
        assert_eq!(
            targets(&s),
            [
                "node:127.0.0.1:7100",
                "node:127.0.0.1:7101",
                "node:127.0.0.1:7102",
                "sentinel:127.0.0.1:27100",
                "sentinel:127.0.0.1:27101",
                "sentinel:127.0.0.1:27102"
            ]
        );
        assert!(!s.ready, "discovered targets are not polled yet");
        let shard = &s.deployments[0].shards[0];
        let sv = shard.sentinel.as_ref().unwrap();
        assert_eq!(sv.master_addr.as_deref(), Some("127.0.0.1:7101"));
        assert!(sv.agreement && sv.quorum_ok);
        assert_eq!(
            (sv.quorum, sv.reachable, sv.config_epoch, sv.sdown, sv.odown),
            (2, 1, 1, 0, false)
        );
    }

    #[test]
    fn sentinel_master_down_follows_events_between_polls() {
        let t0 = Instant::now();
        let mut m = after_recorded_sentinel(t0);
        let event = |m: &mut Monitor, port: u16, channel: &str, payload: &str| {
            m.apply(Input::Event(EventMessage {
                target: TargetId {
                    deployment: "d".into(),
                    kind: TargetKind::Sentinel,
                    addr: format!("127.0.0.1:{port}"),
                },
                at: SystemTime::now(),
                channel: channel.into(),
                payload: payload.into(),
            }));
        };
        let down = |m: &Monitor| {
            let sv = m.snapshot().deployments[0].shards[0]
                .sentinel
                .clone()
                .unwrap();
            (
                sv.sdown,
                sv.odown,
                m.snapshot().deployments[0].shards[0].failover_in_progress,
            )
        };
        assert_eq!(down(&m), (0, false, false));
        event(&mut m, 27101, "+sdown", "master mymaster 127.0.0.1 7101");
        event(&mut m, 27100, "+sdown", "master mymaster 127.0.0.1 7101");
        assert_eq!(down(&m), (2, false, true));
        event(
            &mut m,
            27100,
            "+odown",
            "master mymaster 127.0.0.1 7101 #quorum 2/2",
        );
        assert_eq!(down(&m), (2, true, true));
        // A poll of 27100 taken after it saw the master back resyncs its part.
        m.apply(obs(
            TargetKind::Sentinel,
            "127.0.0.1:27100",
            t0,
            Ok(recorded_sentinel()),
        ));
        assert_eq!(down(&m), (1, false, true));
        event(&mut m, 27101, "-sdown", "master mymaster 127.0.0.1 7101");
        assert_eq!(
            down(&m),
            (0, false, false),
            "back before any failover: aborted"
        );
        let s = m.snapshot();
        let t = &s.failovers.timelines[0];
        assert_eq!(t.abort_reason.as_deref(), Some("master-recovered"));
    }

    /// Whatever answers on a sentinel's address may say anything: events
    /// about masters the sentinels do not list, and messages on channels Sentinel never uses
    /// that name no master, open nothing, count nothing and are not
    /// listed; the listed master's events still are.
    #[test]
    fn forged_events_about_unknown_masters_are_ignored() {
        let mut m = after_recorded_sentinel(Instant::now());
        let event = |m: &mut Monitor, channel: &str, payload: &str| {
            m.apply(Input::Event(EventMessage {
                target: TargetId {
                    deployment: "d".into(),
                    kind: TargetKind::Sentinel,
                    addr: "127.0.0.1:27100".into(),
                },
                at: SystemTime::now(),
                channel: channel.into(),
                payload: payload.into(),
            }));
        };
        event(&mut m, "+sdown", "master ghost 127.0.0.1 9");
        event(&mut m, "+odown", "master ghost 127.0.0.1 9 #quorum 2/2");
        event(&mut m, "+switch-master", "ghost 127.0.0.1 9 127.0.0.1 10");
        event(&mut m, "\u{1}garbage", "\u{ff}\u{0} bytes");
        event(&mut m, "+switch-master", "not a switch");
        let s = m.snapshot();
        assert!(s.failovers.timelines.is_empty());
        assert!(s.failovers.events.is_empty());
        assert!(s.deployments[0].events_total.is_empty());

        event(&mut m, "+new-epoch", "5");
        event(&mut m, "+sdown", "master mymaster 127.0.0.1 7101");
        let s = m.snapshot();
        assert_eq!(s.failovers.events.len(), 2);
        assert_eq!(s.failovers.timelines.len(), 1);
        assert_eq!(s.failovers.timelines[0].shard, "mymaster");
    }

    #[test]
    fn replica_lag_in_bytes_and_seconds() {
        let t0 = Instant::now();
        let mut m = after_recorded_sentinel(t0);
        let master = fixture("sentinel-master-info-replication.txt");
        let replica = fixture("sentinel-replica-info-replication.txt");
        m.apply(obs(TargetKind::Node, "127.0.0.1:7101", t0, node(&master)));
        m.apply(obs(TargetKind::Node, "127.0.0.1:7102", t0, node(&replica)));
        let lag = |m: &Monitor, addr: &str| {
            let s = m.snapshot();
            let n = s.deployments[0].shards[0]
                .nodes
                .iter()
                .find(|n| n.addr == addr)
                .unwrap()
                .clone();
            n.replica.unwrap()
        };
        let r = lag(&m, "127.0.0.1:7102");
        assert_eq!(
            (r.lag_bytes, r.lag_seconds, r.ack_age_seconds),
            (Some(0), Some(0.0), Some(1))
        );
        assert!(r.link.unwrap().up);

        // Writes go on while the replica stops answering: lag grows, and its
        // age counts from the first poll that saw the master move past it.
        m.apply(obs(
            TargetKind::Node,
            "127.0.0.1:7102",
            t0,
            Err(PollError::Timeout),
        ));
        let moved = master.replace("master_repl_offset:51115", "master_repl_offset:61115");
        m.apply(obs(
            TargetKind::Node,
            "127.0.0.1:7101",
            t0 + Duration::from_secs(1),
            node(&moved),
        ));
        m.apply(obs(
            TargetKind::Node,
            "127.0.0.1:7101",
            t0 + Duration::from_secs(4),
            node(&moved),
        ));
        let r = lag(&m, "127.0.0.1:7102");
        assert_eq!(r.lag_bytes, Some(10000));
        assert_eq!(r.lag_seconds, Some(3.0));
        assert_eq!(
            r.link, None,
            "no link state from a replica that does not answer"
        );
        let s = m.snapshot();
        let shard = &s.deployments[0].shards[0];
        assert_eq!(
            (shard.masters, shard.replicas_healthy, shard.master_offset),
            (1, 0, Some(61115))
        );
        let n = shard
            .nodes
            .iter()
            .find(|n| n.addr == "127.0.0.1:7102")
            .unwrap();
        assert_eq!(n.role, None);
    }

    #[test]
    fn sentinels_that_disagree() {
        let now = Instant::now();
        let mut m = after_recorded_sentinel(now);
        let Reading::Sentinel(mut other) = recorded_sentinel() else {
            unreachable!()
        };
        let v = other.masters.get_mut("mymaster").unwrap();
        v.master.addr = "127.0.0.1:7102".into();
        v.master.config_epoch = 2;
        v.master.flags = crate::parse::sentinel::Flags::parse("master,s_down,o_down");
        v.quorum_ok = false;
        m.apply(obs(
            TargetKind::Sentinel,
            "127.0.0.1:27101",
            now,
            Ok(Reading::Sentinel(other)),
        ));
        let s = m.snapshot();
        let sv = s.deployments[0].shards[0].sentinel.clone().unwrap();
        assert_eq!(
            sv.master_addr.as_deref(),
            Some("127.0.0.1:7102"),
            "the newer epoch wins"
        );
        assert!(!sv.agreement && !sv.quorum_ok);
        assert_eq!(
            (sv.reachable, sv.config_epoch, sv.sdown, sv.odown),
            (2, 2, 1, true)
        );
    }

    fn cluster_reading(nodes: &str, info: &str) -> Result<Reading, PollError> {
        Ok(Reading::Node(NodeReading {
            replication: ReplicationInfo::parse(&fixture("cluster-master-info-replication.txt"))
                .unwrap(),
            cluster: Some(ClusterReading::from_lines(
                ClusterInfo::parse(info).unwrap(),
                parse_nodes(nodes).unwrap(),
            )),
            changes: None,
            settings: None,
            slot_stats: None,
        }))
    }

    /// The recorded failover as a list of CLUSTER NODES views of node 7200.
    fn failover_views() -> Vec<(String, String)> {
        fixture("cluster-failover-sequence.txt")
            .split("### ")
            .skip(1)
            .map(|v| {
                let (nodes, info): (Vec<&str>, Vec<&str>) =
                    v.lines().skip(1).partition(|l| !l.starts_with("cluster_"));
                let info = format!("{}\ncluster_known_nodes:6\n", info.join("\n"));
                (nodes.join("\n"), info)
            })
            .collect()
    }

    /// The slot view of a cluster whose nodes' views are given, by node.
    fn slots_of(views: &[(&str, &str, &str)]) -> SlotsView {
        let mut m = test_monitor(&config("cluster", views[0].0));
        for (addr, nodes, info) in views {
            m.apply(obs(
                TargetKind::Node,
                addr,
                Instant::now(),
                cluster_reading(&fixture(nodes), &fixture(info)),
            ));
        }
        m.snapshot().deployments[0].slots().unwrap().clone()
    }

    #[test]
    fn slot_map_of_a_lost_shard_and_of_diverging_views() {
        let sv = slots_of(&[(
            "127.0.0.1:7200",
            "cluster-nodes-shard-down.txt",
            "cluster-info-shard-down.txt",
        )]);
        let ranges: Vec<(u16, u16, &str, Option<&str>)> = sv
            .ranges
            .iter()
            .map(|r| (r.start, r.end, r.state.as_str(), r.master.as_deref()))
            .collect();
        assert_eq!(
            ranges,
            [
                (0, 5460, "ok", Some("127.0.0.1:7200")),
                (5461, 10922, "ok", Some("127.0.0.1:7204")),
                (10923, 16383, "fail", Some("127.0.0.1:7202")),
            ]
        );
        assert_eq!(
            (sv.uncovered, sv.uncovered_ranges, sv.config_views),
            (5461, 1, 1)
        );
        assert_eq!(sv.shard_slots.iter().map(|(_, n)| n).sum::<u32>(), 16384);
        assert!(sv.divergences.is_empty() && sv.open.is_empty());

        // 7203 still holds the map from before the failover; 7200 and 7201 the new one.
        let ok = "cluster-info-ok.txt";
        let sv = slots_of(&[
            ("127.0.0.1:7200", "cluster-nodes-after-failover.txt", ok),
            ("127.0.0.1:7201", "cluster-nodes-after-failover.txt", ok),
            ("127.0.0.1:7203", "cluster-nodes-ok.txt", ok),
        ]);
        assert_eq!(sv.config_views, 2);
        assert_eq!(
            sv.divergences,
            [Divergence {
                node: "127.0.0.1:7203".into(),
                start: 5461,
                end: 10922,
                says: Some("127.0.0.1:7201".into()),
                majority: Some("127.0.0.1:7204".into()),
            }]
        );
    }

    #[test]
    fn cluster_discovery_views_and_stable_shard_names() {
        let mut m = test_monitor(&config("cluster", "127.0.0.1:7200"));
        let now = Instant::now();
        let ok_info = fixture("cluster-info-ok.txt");
        m.apply(obs(
            TargetKind::Node,
            "127.0.0.1:7200",
            now,
            cluster_reading(&fixture("cluster-nodes-ok.txt"), &ok_info),
        ));
        let s = m.snapshot();
        assert_eq!(s.targets().count(), 6);
        let d = &s.deployments[0];
        let c = d.cluster.as_ref().unwrap();
        assert!(c.state_ok);
        assert_eq!(c.majority.as_ref().unwrap().slots_ok, 16384);
        assert_eq!(d.shards.len(), 3);
        let shard_of = |s: &Snapshot, addr: &str| {
            s.deployments[0]
                .shards
                .iter()
                .find(|sh| sh.nodes.iter().any(|n| n.addr == addr))
                .unwrap()
                .name
                .clone()
        };
        // 7201 and its replica 7204: named after the smaller id, 7204's.
        let before = shard_of(&s, "127.0.0.1:7201");
        assert_eq!(before, "28aac1ba7768");
        assert_eq!(shard_of(&s, "127.0.0.1:7204"), before);

        let mut saw_pfail = false;
        for (nodes, info) in failover_views() {
            m.apply(obs(
                TargetKind::Node,
                "127.0.0.1:7200",
                now,
                cluster_reading(&nodes, &info),
            ));
            let s = m.snapshot();
            let c = s.deployments[0].cluster.clone().unwrap();
            saw_pfail |= c
                .failing
                .iter()
                .any(|f| f.node == "127.0.0.1:7201" && f.pfail == 1);
            assert_eq!(
                shard_of(&s, "127.0.0.1:7201"),
                before,
                "shard name survives the failover"
            );
            assert_eq!(shard_of(&s, "127.0.0.1:7204"), before);
        }
        assert!(saw_pfail);
        // An agent started after the failover (restarted, or the other of
        // a pair) names the shard the same: same members, other roles.
        let (nodes, info) = failover_views().pop().unwrap();
        let mut fresh = test_monitor(&config("cluster", "127.0.0.1:7200"));
        fresh.apply(obs(
            TargetKind::Node,
            "127.0.0.1:7200",
            now,
            cluster_reading(&nodes, &info),
        ));
        assert_eq!(shard_of(&fresh.snapshot(), "127.0.0.1:7204"), before);
        assert_eq!(shard_of(&fresh.snapshot(), "127.0.0.1:7201"), before);
        let s = m.snapshot();
        let shard = s.deployments[0]
            .shards
            .iter()
            .find(|sh| sh.name == before)
            .unwrap();
        assert_eq!(
            shard.master.as_deref(),
            Some("127.0.0.1:7204"),
            "the promoted replica is the master"
        );

        // A shard down: fail flags and a majority view in state fail.
        let down_nodes = fixture("cluster-nodes-shard-down.txt");
        m.apply(obs(
            TargetKind::Node,
            "127.0.0.1:7200",
            now,
            cluster_reading(&down_nodes, &fixture("cluster-info-shard-down.txt")),
        ));
        let c = m.snapshot().deployments[0].cluster.clone().unwrap();
        assert!(!c.state_ok);
        assert_eq!(c.majority.as_ref().unwrap().slots_fail, 5461);
        assert!(c
            .failing
            .iter()
            .any(|f| f.node == "127.0.0.1:7202" && f.fail));
    }

    /// The recorded cluster with a shard down: its master and replica
    /// `fail`, so no replica could take over; every shard on 127.0.0.1. The
    /// failed master answering the agent is a finding while it answers.
    #[test]
    fn cluster_findings_follow_the_views_and_who_answers() {
        let mut m = test_monitor(&config("cluster", "127.0.0.1:7200"));
        let down = || {
            cluster_reading(
                &fixture("cluster-nodes-shard-down.txt"),
                &fixture("cluster-info-shard-down.txt"),
            )
        };
        m.apply(obs(
            TargetKind::Node,
            "127.0.0.1:7200",
            Instant::now(),
            down(),
        ));
        let found = |m: &mut Monitor| {
            let s = m.snapshot();
            s.deployments[0]
                .findings
                .iter()
                .map(|f| (f.check.as_str(), f.node.clone().unwrap_or_default()))
                .collect::<Vec<_>>()
        };
        let host = || ("shard_shares_host", "127.0.0.1".to_string());
        let lost = ("no_failover_candidate", "127.0.0.1:7202".to_string());
        // By shard name: 28aac1ba7768 (7201, 7204), 38153e929be7 (7200,
        // 7203), ca39fabf5516 (7202, 7205).
        assert_eq!(found(&mut m), [host(), host(), lost.clone(), host()]);
        let s = m.snapshot();
        let f = &s.deployments[0].findings[2];
        assert!(f.why.contains("127.0.0.1:7205: fail"), "{}", f.why);

        m.apply(obs(
            TargetKind::Node,
            "127.0.0.1:7202",
            Instant::now(),
            down(),
        ));
        let answering = ("answering_while_failed", "127.0.0.1:7202".to_string());
        assert_eq!(found(&mut m)[0], answering);
        m.apply(obs(
            TargetKind::Node,
            "127.0.0.1:7202",
            Instant::now(),
            Err(PollError::Timeout),
        ));
        assert!(!found(&mut m).contains(&answering));
    }

    /// Feeds `nodes` as the CLUSTER NODES view of the node at `addr`.
    fn cluster_view(m: &mut Monitor, addr: &str, nodes: &str) {
        let info = fixture("cluster-info-ok.txt");
        m.apply(obs(
            TargetKind::Node,
            addr,
            Instant::now(),
            cluster_reading(nodes, &info),
        ));
    }

    /// The only replica of 7200 flagged `fail?` by most answering views
    /// cannot win an election: 7200 has no replica that could take over.
    /// Flagged by fewer, it still could.
    #[test]
    fn a_replica_most_views_cannot_reach_is_no_failover_candidate() {
        let ok = fixture("cluster-nodes-ok.txt");
        let pfail = ok.replace(
            "127.0.0.1:7203@17203 slave ",
            "127.0.0.1:7203@17203 slave,fail? ",
        );
        let mut m = test_monitor(&config("cluster", "127.0.0.1:7200"));
        let candidates = |m: &mut Monitor| {
            let s = m.snapshot();
            s.deployments[0]
                .findings
                .iter()
                .filter(|f| f.check.as_str() == "no_failover_candidate")
                .map(|f| (f.node.clone(), f.why.clone()))
                .collect::<Vec<_>>()
        };
        cluster_view(&mut m, "127.0.0.1:7200", &pfail);
        cluster_view(&mut m, "127.0.0.1:7201", &pfail);
        cluster_view(&mut m, "127.0.0.1:7202", &ok);
        let found = candidates(&mut m);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0.as_deref(), Some("127.0.0.1:7200"));
        assert!(
            found[0].1.contains("(127.0.0.1:7203: fail)"),
            "{}",
            found[0].1
        );
        cluster_view(&mut m, "127.0.0.1:7201", &ok);
        assert_eq!(candidates(&mut m), []);
    }

    /// The healthy view, as node 7203 sees it (no `myself` elsewhere) and as
    /// the others see it once they forgot 7203.
    fn views_around_7203() -> (String, String) {
        let all = fixture("cluster-nodes-ok.txt");
        let forgotten = all
            .lines()
            .filter(|l| !l.contains(":7203@"))
            .map(|l| format!("{l}\n"))
            .collect();
        (all.replace("myself,", ""), forgotten)
    }

    #[test]
    fn a_node_nobody_lists_leaves_with_its_state() {
        let mut m = test_monitor(&config("cluster", "127.0.0.1:7200"));
        let (own, forgotten) = views_around_7203();
        cluster_view(&mut m, "127.0.0.1:7200", &fixture("cluster-nodes-ok.txt"));
        cluster_view(&mut m, "127.0.0.1:7203", &own);
        assert_eq!(m.snapshot().targets().count(), 6);
        // 7203 is forgotten by the others but still lists them itself.
        cluster_view(&mut m, "127.0.0.1:7200", &forgotten);
        let s = m.snapshot();
        assert_eq!(s.targets().count(), 5);
        assert!(!s.targets().any(|t| t.addr == "127.0.0.1:7203"));
        let shard_nodes = s.deployments[0].shards.iter().flat_map(|sh| &sh.nodes);
        assert!(!shard_nodes.clone().any(|n| n.addr == "127.0.0.1:7203"));
        // Its poller's last result arrives after it left: ignored.
        cluster_view(&mut m, "127.0.0.1:7203", &own);
        assert_eq!(m.snapshot().targets().count(), 5);
    }

    #[test]
    fn a_seed_that_left_the_cluster_is_polled_but_not_exported() {
        let mut m = test_monitor(&config("cluster", "127.0.0.1:7203"));
        let (own, forgotten) = views_around_7203();
        cluster_view(&mut m, "127.0.0.1:7203", &own);
        cluster_view(&mut m, "127.0.0.1:7200", &forgotten);
        let s = m.snapshot();
        let (seed, others): (Vec<_>, Vec<_>) = s.deployments[0]
            .targets
            .iter()
            .partition(|t| t.id.addr == "127.0.0.1:7203");
        assert!(
            !seed[0].exported,
            "polled, in case it rejoins, but not exported"
        );
        assert!(others.iter().all(|t| t.exported));
    }
}

mod events {
    use super::*;
    use crate::model::{EventMessage, TargetId, TargetKind};
    use crate::parse::event::tests::recorded;
    use std::time::UNIX_EPOCH;

    /// The monitor of deployment `d` (the recorded sentinels) after the
    /// recorded event stream of a failover.
    fn after_recorded_failover() -> Monitor {
        let config = crate::config::parse(
            "deployments:\n  - name: d\n    kind: sentinel\n    sentinels: [\"127.0.0.1:27100\", \"127.0.0.1:27101\", \"127.0.0.1:27102\"]\n",
            "t",
        )
        .unwrap();
        let mut m = test_monitor(&config);
        for (at, port, channel, payload) in recorded() {
            m.apply(Input::Event(EventMessage {
                target: TargetId {
                    deployment: "d".into(),
                    kind: TargetKind::Sentinel,
                    addr: format!("127.0.0.1:{port}"),
                },
                at: UNIX_EPOCH + std::time::Duration::from_secs_f64(at),
                channel,
                payload,
            }));
        }
        m
    }

    #[test]
    fn the_recorded_event_stream_makes_one_timeline_and_counts_each_event_once() {
        let mut m = after_recorded_failover();
        let s = m.snapshot();
        let timelines = &s.failovers.timelines;
        assert_eq!(timelines.len(), 1);
        assert_eq!(
            timelines[0].outcome,
            Some(crate::model::timeline::Outcome::Completed)
        );
        let d = &s.deployments[0];
        let count = |event: &str| {
            d.events_total
                .iter()
                .find(|(sh, e, _)| sh == "mymaster" && e == event)
                .map(|x| x.2)
        };
        // Three sentinels publish +switch-master: counted once.
        assert_eq!(count("+switch-master"), Some(1));
        // +sdown of the master from three sentinels, and of the old master
        // as a replica: two distinct events.
        assert_eq!(count("+sdown"), Some(2));
        assert_eq!(count("+odown"), Some(1));
        assert_eq!(s.failovers.events.len(), 50);
        assert_eq!(
            m.take_changed_timelines().last().unwrap().outcome,
            Some(crate::model::timeline::Outcome::Completed)
        );
    }

    /// A read of clients left behind goes onto the failover it names, ended
    /// or not, and is persisted; one naming another failover goes nowhere.
    #[test]
    fn clients_left_behind_go_onto_their_failover() {
        use crate::model::clients::{ClientsLeftBehind, Report};
        let mut m = after_recorded_failover();
        let id = m.snapshot().failovers.timelines[0].id.clone();
        m.take_changed_timelines();
        let report = |timeline: &str, count: usize| {
            let mut left = ClientsLeftBehind::unread("127.0.0.1:7100", 1.0, String::new());
            (left.count, left.error) = (count, None);
            Input::Clients(Report {
                deployment: "d".into(),
                shard: "mymaster".into(),
                timeline: timeline.into(),
                at: UNIX_EPOCH,
                left,
            })
        };
        m.apply(report("d:mymaster:1", 7));
        assert_eq!(
            m.snapshot().failovers.timelines[0].clients_left_behind,
            None
        );
        assert!(m.take_changed_timelines().is_empty());
        m.apply(report(&id, 2));
        let s = m.snapshot();
        let left = s.failovers.timelines[0].clients_left_behind.as_ref();
        assert_eq!(left.and_then(ClientsLeftBehind::counted), Some(2));
        let stored = m.take_changed_timelines();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].id, id);
    }
}

mod alerts {
    use std::time::Duration;

    use super::cases::recorded_sentinel;
    use super::*;
    use crate::model::timeline::MarkName;
    use crate::model::{EventMessage, Observation, PollError, Reading, TargetId, TargetKind};
    use crate::parse::event::tests::recorded;
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    const SENTINELS: &str = "deployments:\n  - name: d\n    kind: sentinel\n    sentinels: [\"127.0.0.1:27100\", \"127.0.0.1:27101\", \"127.0.0.1:27102\"]\n";

    fn at(secs: f64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs_f64(secs)
    }

    /// Feeds recorded sentinel events (time, sentinel port, channel,
    /// payload) to the monitor of deployment `d`.
    fn replay(m: &mut Monitor, events: impl IntoIterator<Item = (f64, u16, String, String)>) {
        for (secs, port, channel, payload) in events {
            m.apply(Input::Event(EventMessage {
                target: TargetId {
                    deployment: "d".into(),
                    kind: TargetKind::Sentinel,
                    addr: format!("127.0.0.1:{port}"),
                },
                at: at(secs),
                channel,
                payload,
            }));
        }
    }

    fn poll(m: &mut Monitor, secs: f64, result: Result<Reading, PollError>) {
        m.apply(Input::Poll(Observation {
            target: TargetId {
                deployment: "d".into(),
                kind: TargetKind::Sentinel,
                addr: "127.0.0.1:27100".into(),
            },
            at: at(secs),
            seen: Instant::now(),
            duration: Duration::from_millis(1),
            result,
        }));
    }

    fn firing(m: &Monitor) -> Vec<String> {
        m.snapshot()
            .alerts
            .firing
            .iter()
            .map(|a| a.rule.to_string())
            .collect()
    }

    fn transitions(m: &mut Monitor) -> Vec<(String, bool)> {
        m.take_transitions()
            .into_iter()
            .map(|t| (t.alert.rule.to_string(), t.resolved_at.is_some()))
            .collect()
    }

    #[test]
    fn a_condition_fires_after_its_for_and_resolves_when_it_stops() {
        let config = crate::config::parse(
            &format!("alerts:\n  rules:\n    TargetDown: {{ for: 2s }}\n{SENTINELS}"),
            "t",
        )
        .unwrap();
        let mut m = test_monitor(&config);
        poll(&mut m, 100.0, Err(PollError::Timeout));
        assert!(firing(&m).is_empty(), "not before its `for`");
        poll(&mut m, 101.0, Err(PollError::Timeout));
        assert!(firing(&m).is_empty());
        assert!(transitions(&mut m).is_empty());
        poll(&mut m, 102.5, Err(PollError::Timeout));
        assert_eq!(firing(&m), ["TargetDown"]);
        assert_eq!(transitions(&mut m), [("TargetDown".into(), false)]);
        let alert = m.snapshot().alerts.firing[0].clone();
        assert_eq!(alert.since, 100.0, "firing since the condition began");
        assert_eq!(
            (alert.severity.as_str(), alert.labels["sentinel"].as_str()),
            ("warning", "127.0.0.1:27100")
        );
        assert_eq!(m.snapshot().alerts.rules.len(), 19);
        poll(&mut m, 102.8, Err(PollError::Timeout));
        assert!(
            transitions(&mut m).is_empty(),
            "one notification per transition"
        );
        poll(&mut m, 103.0, Ok(recorded_sentinel()));
        assert!(firing(&m).is_empty(), "resolved once it answers");
        assert_eq!(transitions(&mut m), [("TargetDown".into(), true)]);
        // Down again: the same alert (same fingerprint), a new `since`.
        poll(&mut m, 110.0, Err(PollError::Timeout));
        poll(&mut m, 113.0, Err(PollError::Timeout));
        let again = m.snapshot().alerts.firing[0].clone();
        assert_eq!((again.fingerprint, again.since), (alert.fingerprint, 110.0));
    }

    /// The first `+switch-master` from any sentinel raises FailoverSwitched
    /// at once, naming the new master and the epoch, linked to the
    /// failover's page; the leader's `+failover-end` later raises
    /// FailoverCompleted. Each resolves by itself after its `hold`.
    #[test]
    fn the_switch_and_the_end_are_event_alerts_that_resolve_themselves() {
        let config = crate::config::parse(
            &format!("alerts:\n  external_url: \"http://mon.example:9478/\"\n  rules:\n    FailoverCompleted: {{ hold: 60s, annotations: {{ runbook_url: \"https://runbooks/failover\" }} }}\n    FailoverStarted: {{ enabled: false }}\n{SENTINELS}"),
            "t",
        )
        .unwrap();
        let mut m = test_monitor(&config);
        let events = recorded();
        let end = events.last().unwrap().0;
        let switch = events
            .iter()
            .position(|e| e.2 == "+switch-master")
            .expect("the capture has a switch");
        let switched_at = events[switch].0;
        assert!(switched_at < end, "the switch comes before the end");
        replay(&mut m, events[..switch].to_vec());
        assert!(firing(&m).is_empty(), "nothing before the switch");
        transitions(&mut m);
        replay(&mut m, [events[switch].clone()]);
        assert_eq!(firing(&m), ["FailoverSwitched"]);
        assert_eq!(transitions(&mut m), [("FailoverSwitched".into(), false)]);
        let s = m.snapshot();
        let a = &s.alerts.firing[0];
        assert_eq!(a.severity.as_str(), "critical", "the page");
        assert_eq!(a.since, switched_at);
        assert_eq!(
            (
                a.annotations["old_master"].as_str(),
                a.annotations["new_master"].as_str()
            ),
            ("127.0.0.1:7100", "127.0.0.1:7101")
        );
        assert_eq!(a.annotations["epoch"], "1");
        assert!(
            a.annotations["summary"]
                .starts_with("mymaster switched to 127.0.0.1:7101 (was 127.0.0.1:7100) at epoch 1"),
            "{:?}",
            a.annotations
        );
        let id = &a.labels["failover"];
        assert_eq!(
            a.annotations["failover_url"],
            format!("http://mon.example:9478/ui/failovers/{id}")
        );
        replay(&mut m, events[switch + 1..].to_vec());
        assert_eq!(
            transitions(&mut m),
            [("FailoverCompleted".into(), false)],
            "the other sentinels' switches are the same failover"
        );
        let s = m.snapshot();
        let a = s
            .alerts
            .firing
            .iter()
            .find(|a| a.rule == crate::config::RuleName::FailoverCompleted)
            .expect("fired at the end");
        assert_eq!(a.labels["failover"], *id, "the same failover");
        assert_eq!(a.labels["shard"], "mymaster");
        assert!(
            a.annotations["summary"].contains("127.0.0.1:7100 -> 127.0.0.1:7101"),
            "{:?}",
            a.annotations
        );
        assert_eq!(a.annotations["runbook_url"], "https://runbooks/failover");
        assert!(a.annotations.contains_key("phase_total_seconds"));
        assert!(
            !s.alerts
                .rules
                .iter()
                .any(|(n, _)| *n == crate::config::RuleName::FailoverStarted),
            "disabled"
        );
        poll(&mut m, end + 30.0, Ok(recorded_sentinel()));
        assert!(
            firing(&m).contains(&"FailoverCompleted".to_string()),
            "held for 60 s"
        );
        poll(&mut m, end + 61.0, Ok(recorded_sentinel()));
        assert!(
            !firing(&m).contains(&"FailoverCompleted".to_string()),
            "then resolved by itself"
        );
        poll(&mut m, switched_at + 301.0, Ok(recorded_sentinel()));
        assert!(
            !firing(&m).contains(&"FailoverSwitched".to_string()),
            "the switch after its default 5 min"
        );
    }

    fn canary(m: &mut Monitor, secs: f64, kind: crate::model::canary::ReportKind) {
        m.apply(Input::Canary(crate::model::canary::Report {
            deployment: "d".into(),
            shard: "mymaster".into(),
            at: at(secs),
            kind,
        }));
    }

    fn ack(seq: u64, at: f64, node: &str) -> crate::model::canary::Ack {
        crate::model::canary::Ack {
            seq,
            at,
            node: node.into(),
        }
    }

    /// The canary's episode lands on the failover it overlaps, with the
    /// lost writes the old master acknowledged after the switch counted as
    /// stale reads; FailoverCompleted waits for it and carries its figures.
    #[test]
    fn a_canary_episode_goes_onto_its_failover_and_into_the_alert() {
        let config = crate::config::parse(SENTINELS, "t").unwrap();
        let mut m = test_monitor(&config);
        let events = recorded();
        let first = events[0].0;
        // The recorded replies are from after the failover: as before it.
        let mut before = recorded_sentinel();
        if let Reading::Sentinel(r) = &mut before {
            for view in r.masters.values_mut() {
                view.master.addr = "127.0.0.1:7100".into();
            }
        }
        poll(&mut m, first - 1.0, Ok(before));
        canary(
            &mut m,
            first - 0.5,
            crate::model::canary::ReportKind::Status(crate::model::canary::Status {
                up: true,
                latencies: vec![0.0003, 0.002],
                ..Default::default()
            }),
        );
        let end = events
            .iter()
            .position(|(_, _, channel, _)| channel == "+failover-end")
            .unwrap();
        replay(&mut m, events.into_iter().take(end + 1));
        let s = m.snapshot();
        let t = s.failovers.timelines[0].clone();
        assert!(!t.is_open() && t.canary.is_none());
        assert!(
            !firing(&m).contains(&"FailoverCompleted".to_string()),
            "waits for the canary"
        );
        let switched = t.at(MarkName::Switched).unwrap();
        let old = "127.0.0.1:7100";
        let episode = crate::model::canary::Episode {
            from: ack(12, switched + 0.01, old),
            to: ack(14, switched + 0.3, "127.0.0.1:7101"),
            read_back: None,
            lost: vec![ack(11, switched - 1.0, old), ack(12, switched + 0.01, old)],
            lost_total: 2,
        };
        canary(
            &mut m,
            switched + 0.3,
            crate::model::canary::ReportKind::Episode(Box::new(episode)),
        );
        let s = m.snapshot();
        let impact = s.failovers.timelines[0]
            .canary
            .clone()
            .expect("on the timeline");
        assert_eq!((impact.lost_writes, impact.stale_reads), (2, 1));
        assert_eq!(impact.lost_seqs, [[11, 12]]);
        let alert = s
            .alerts
            .firing
            .iter()
            .find(|a| a.rule == crate::config::RuleName::FailoverCompleted)
            .expect("fires once the canary reported");
        assert_eq!(alert.annotations["canary_lost_writes"], "2");
        assert_eq!(alert.annotations["canary_stale_reads"], "1");
        assert_eq!(
            alert.annotations["canary_write_unavailable_seconds"],
            "0.290"
        );
        assert!(alert.annotations["summary"].contains("2 acknowledged writes lost"));
        let c = &s.deployments[0].canaries[0];
        assert_eq!(
            (c.lost_writes, c.latency.count, c.unavailable.count),
            (2, 2, 1)
        );
        assert!(
            m.take_changed_timelines()
                .iter()
                .any(|t| t.canary.is_some()),
            "persisted"
        );
    }

    /// What was firing when the agent stopped stays firing without a new
    /// notification while the condition holds; once every target has
    /// answered, what no longer holds resolves.
    #[test]
    fn restored_alerts_are_not_notified_twice_and_resolve_once_ready() {
        let config = crate::config::parse(
            &format!("alerts:\n  rules:\n    TargetDown: {{ for: 2s }}\n{SENTINELS}"),
            "t",
        )
        .unwrap();
        let mut before = test_monitor(&config);
        poll(&mut before, 100.0, Err(PollError::Timeout));
        poll(&mut before, 103.0, Err(PollError::Timeout));
        let was_firing = before.take_transitions();
        assert_eq!(was_firing.len(), 1);

        let mut still = Monitor::new(&config, Vec::new(), was_firing.clone());
        poll(&mut still, 200.0, Err(PollError::Timeout));
        assert_eq!(firing(&still), ["TargetDown"], "no new `for` wait");
        assert!(transitions(&mut still).is_empty(), "not notified again");
        assert_eq!(still.snapshot().alerts.firing[0].since, 100.0);

        let mut healed = Monitor::new(&config, Vec::new(), was_firing);
        poll(&mut healed, 200.0, Ok(recorded_sentinel()));
        assert_eq!(
            firing(&healed),
            ["TargetDown"],
            "kept until every target has answered"
        );
        // Every other target answers too (or fails: a poll all the same).
        let others: Vec<TargetId> = healed
            .snapshot()
            .targets()
            .filter(|t| t.addr != "127.0.0.1:27100")
            .cloned()
            .collect();
        for target in others {
            healed.apply(Input::Poll(Observation {
                target,
                at: at(200.5),
                seen: Instant::now(),
                duration: Duration::from_millis(1),
                result: Err(PollError::Timeout),
            }));
        }
        assert!(healed.snapshot().ready);
        assert!(firing(&healed).is_empty());
        assert_eq!(transitions(&mut healed), [("TargetDown".into(), true)]);
    }

    /// A suspicion whose `-sdown` never reached the agent is dropped by
    /// the polls 30 s after none shows the master down, and snapshots stop
    /// showing it at once: a drop made no change the snapshot's failovers
    /// were rebuilt for, so a chaos run saw the suspicion listed as in
    /// progress for good once the lab was quiet (no event came to rebuild
    /// them).
    #[test]
    fn a_suspicion_the_polls_drop_leaves_the_snapshot() {
        let mut m = test_monitor(&crate::config::parse(SENTINELS, "t").unwrap());
        poll(&mut m, 1000.0, Ok(recorded_sentinel()));
        let sdown = "master mymaster 127.0.0.1 7101".to_string();
        replay(&mut m, [(1001.0, 27100, "+sdown".to_string(), sdown)]);
        assert_eq!(m.snapshot().failovers.timelines.len(), 1);
        // The sentinel's polls show the master up again; no -sdown came.
        poll(&mut m, 1002.0, Ok(recorded_sentinel()));
        assert_eq!(m.snapshot().failovers.timelines.len(), 1, "kept 30 s");
        poll(&mut m, 1040.0, Ok(recorded_sentinel()));
        assert!(
            m.snapshot().failovers.timelines.is_empty(),
            "dropped: {:?}",
            m.snapshot().failovers.timelines
        );
    }

    /// A `SENTINEL FAILOVER` sent to a sentinel in TILT starts only when
    /// the TILT ends: the monitor follows TILT from the sentinel's polls and
    /// events, and times the failover out only once the TILT is over.
    #[test]
    fn a_failover_started_in_tilt_waits_for_the_tilt() {
        let mut m = test_monitor(&crate::config::parse(SENTINELS, "t").unwrap());
        let mut tilted = recorded_sentinel();
        if let Reading::Sentinel(r) = &mut tilted {
            r.info.tilt = true;
        }
        poll(&mut m, 1000.0, Ok(tilted.clone()));
        let master = "master mymaster 127.0.0.1 7101".to_string();
        replay(
            &mut m,
            [(1001.0, 27100, "+try-failover".to_string(), master)],
        );
        let outcome = |m: &Monitor| m.snapshot().failovers.timelines[0].outcome;
        // Past twice the failover timeout (20 s), still in TILT.
        poll(&mut m, 1025.0, Ok(tilted));
        assert_eq!(outcome(&m), None);
        replay(
            &mut m,
            [(
                1028.0,
                27100,
                "-tilt".to_string(),
                "#tilt mode exited".to_string(),
            )],
        );
        poll(&mut m, 1029.0, Ok(recorded_sentinel()));
        assert_eq!(outcome(&m), Some(crate::model::timeline::Outcome::TimedOut));
    }
}
