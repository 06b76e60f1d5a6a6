//! What is wrong with a sentinel-watched master's setup, from what its
//! reachable sentinels say of it (`SENTINEL MASTERS`, `REPLICAS`,
//! `SENTINELS`): each check names the rule of `sentinel.c` that makes it
//! matter. Pure: the same views give the same findings.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::config::Severity;
use crate::model::finding::{Check, Finding};
use crate::model::MasterView;
use crate::parse::sentinel::Flag;

/// Sentinel skips a replica whose link to the master has been down for
/// more than this many times `down-after-milliseconds` (`sentinelSelectSlave`:
/// `master->down_after_period * 10`, plus the time the master has been down).
const LINK_DOWN_FACTOR: u64 = 10;

/// What one reachable sentinel says of the master: its address and view.
pub type Seen<'a> = (&'a str, &'a MasterView);

/// The findings about master `shard` of `deployment`, from the views of its
/// reachable sentinels (none: nothing can be told). An entry down for
/// longer than `stale_after` is stale: a sentinel or replica gone for good,
/// which Sentinel keeps counting until `SENTINEL RESET`.
/// `misfollowing_for`: for how many seconds a replica has been seen
/// following another master than the sentinels' ([`misfollowing`]).
pub fn findings(
    deployment: &str,
    shard: &str,
    stale_after: Duration,
    seen: &[Seen],
    misfollowing_for: impl Fn(&str) -> f64,
) -> Vec<Finding> {
    if seen.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut add = |check, severity, node: Option<String>, why: String, action: String| {
        out.push(Finding {
            check,
            severity,
            deployment: deployment.to_string(),
            shard: Some(shard.to_string()),
            node,
            why,
            action,
        })
    };
    // The sentinels that exist: the most any sentinel knows, itself included.
    let known = seen
        .iter()
        .map(|(_, v)| v.master.num_other_sentinels + 1)
        .max()
        .unwrap_or(0);
    let quorum = seen.iter().map(|(_, v)| v.master.quorum).max().unwrap_or(0);
    let majority = known / 2 + 1;
    if quorum > known {
        add(
            Check::QuorumUnreachable,
            Severity::Critical,
            None,
            format!("quorum {quorum} but {known} sentinels exist: the master can never be agreed down, so it is never failed over"),
            format!("SENTINEL SET {shard} quorum {majority} on every sentinel, or add sentinels"),
        );
    } else if quorum < majority {
        add(
            Check::QuorumBelowMajority,
            Severity::Info,
            None,
            format!("quorum {quorum} of {known} sentinels: a minority agrees the master is down; a failover still needs {majority} votes"),
            format!("fine if intended; SENTINEL SET {shard} quorum {majority} makes detection need a majority"),
        );
    }
    if known >= 2 && known % 2 == 0 {
        add(
            Check::EvenSentinels,
            Severity::Warning,
            None,
            format!("{known} sentinels: a network split into two halves leaves neither a majority ({majority}), and no failover happens"),
            "run an odd number of sentinels, in as many failure domains".into(),
        );
    }
    shared_hosts(seen, &mut add);
    settings(shard, seen, &mut add);
    stale(shard, seen, stale_after, &mut add);
    promotable(seen, &mut add);
    stuck(seen, misfollowing_for, &mut add);
    out
}

/// Replicas whose own INFO (as the sentinels report it) names another
/// master than the one the sentinels hold, with that master; replicas a
/// sentinel sees down are not counted. Only the sentinels with the newest
/// configuration (highest config epoch) are asked: one that has not yet
/// learnt of a switch still holds the old master.
pub fn misfollowing<'a>(seen: &[Seen<'a>]) -> BTreeMap<&'a str, &'a str> {
    let mut out = BTreeMap::new();
    for (_, v) in newest(seen) {
        for r in &v.replicas {
            let down = r.flags.has(Flag::SDown) || r.flags.has(Flag::Disconnected);
            match r.follows.as_deref() {
                Some(f) if !down && f != v.master.addr => {
                    out.insert(r.addr.as_str(), f);
                }
                _ => {}
            }
        }
    }
    out
}

/// The views holding the newest configuration of the master.
fn newest<'s, 'a>(seen: &'s [Seen<'a>]) -> impl Iterator<Item = &'s Seen<'a>> {
    let epoch = seen.iter().map(|(_, v)| v.master.config_epoch).max();
    seen.iter()
        .filter(move |(_, v)| Some(v.master.config_epoch) == epoch)
}

/// Replicas still following another master past `failover-timeout`.
/// Sentinel moves every replica to a new master after a switch
/// (`+slave-reconf-sent`, `parallel-syncs` at a time, within
/// `failover-timeout`) and later fixes any that follow the wrong one
/// (`+fix-slave-config`); one still elsewhere past that is one it cannot
/// move (its `REPLICAOF` refused, or the sentinels cannot reach it).
fn stuck(seen: &[Seen], held: impl Fn(&str) -> f64, add: &mut Add) {
    let timeout_ms = seen
        .iter()
        .map(|(_, v)| v.master.failover_timeout_ms)
        .max()
        .unwrap_or(0);
    let Some((_, latest)) = newest(seen).next() else {
        return;
    };
    let master = &latest.master.addr;
    for (replica, follows) in misfollowing(seen) {
        let secs = held(replica);
        if secs * 1000.0 <= timeout_ms as f64 {
            continue;
        }
        add(
            Check::ReplicaFollowsOtherMaster,
            Severity::Warning,
            Some(replica.to_string()),
            format!("replica {replica} still follows {follows}, not the master {master}, {secs:.0} s on (failover-timeout {} s): Sentinel cannot move it, so it is not where a failover expects it", timeout_ms / 1000),
            format!("find why the sentinels cannot reconfigure it (their log; its ACL must allow REPLICAOF and CONFIG REWRITE for their user; their network to it), or REPLICAOF {} on it", master.replace(':', " ")),
        );
    }
}

/// A setting of a master, as one sentinel holds it.
type Setting = fn(&MasterView) -> Option<u64>;

type Add<'a> = dyn FnMut(Check, Severity, Option<String>, String, String) + 'a;

/// Sentinels on one host, by the addresses the sentinels know each other by.
fn shared_hosts(seen: &[Seen], add: &mut Add) {
    let mut by_host: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let addrs = seen.iter().flat_map(|(me, v)| {
        std::iter::once(*me).chain(v.sentinels.iter().map(|s| s.addr.as_str()))
    });
    for addr in addrs {
        by_host.entry(host(addr)).or_default().insert(addr);
    }
    for (host, addrs) in by_host.into_iter().filter(|(_, a)| a.len() > 1) {
        let list: Vec<&str> = addrs.into_iter().collect();
        add(
            Check::SentinelsShareHost,
            Severity::Warning,
            Some(host.to_string()),
            format!(
                "{} sentinels on host {host} ({}): losing it loses all of them",
                list.len(),
                list.join(", ")
            ),
            "spread the sentinels over hosts (and zones) that fail apart".into(),
        );
    }
}

/// Settings that should be the same on every sentinel of a master.
fn settings(shard: &str, seen: &[Seen], add: &mut Add) {
    let each: [(&str, Setting); 4] = [
        ("quorum", |v| Some(v.master.quorum.into())),
        ("down-after-milliseconds", |v| v.master.down_after_ms),
        ("failover-timeout", |v| Some(v.master.failover_timeout_ms)),
        ("parallel-syncs", |v| v.master.parallel_syncs.map(u64::from)),
    ];
    for (name, get) in each {
        let mut values: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
        for (addr, v) in seen {
            if let Some(value) = get(v) {
                values.entry(value).or_default().push(addr);
            }
        }
        if values.len() > 1 {
            let held: Vec<String> = values
                .iter()
                .map(|(value, who)| format!("{value} on {}", who.join(", ")))
                .collect();
            add(
                Check::SentinelSettingsDiffer,
                Severity::Warning,
                None,
                format!("the sentinels hold different {name}: {}; each detects and fails over by its own", held.join("; ")),
                format!("SENTINEL SET {shard} {name} <value> on every sentinel, and the same in their config files"),
            );
        }
    }
}

/// Sentinels and replicas a sentinel has seen down for longer than
/// `after`: Sentinel never forgets an instance by itself.
fn stale(shard: &str, seen: &[Seen], after: Duration, add: &mut Add) {
    let limit = Some(u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
    let mut sentinels: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut replicas: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (me, v) in seen {
        for s in v.sentinels.iter().filter(|s| s.s_down_ms > limit) {
            sentinels.entry(&s.addr).or_default().push(me);
        }
        for r in v.replicas.iter().filter(|r| r.s_down_ms > limit) {
            replicas.entry(&r.addr).or_default().push(me);
        }
    }
    let after = humantime::format_duration(after);
    for (check, what, entries) in [
        (Check::StaleSentinel, "sentinel", sentinels),
        (Check::StaleReplica, "replica", replicas),
    ] {
        for (addr, holders) in entries {
            add(
                check,
                Severity::Warning,
                Some(addr.to_string()),
                format!("{what} {addr} has been down for over {after} and {} still count it: it inflates the sentinels' and replicas' numbers Sentinel decides with", holders.join(", ")),
                format!("if it is gone for good: SENTINEL RESET {shard} on {}, one at a time, waiting 30 s between", holders.join(", ")),
            );
        }
    }
}

/// Whether some replica could be promoted, as `sentinelSelectSlave` picks:
/// not down or disconnected, priority not 0, its link to the master not
/// down for more than [`LINK_DOWN_FACTOR`] x `down-after-milliseconds`.
/// A replica counts when some sentinel would take it.
fn promotable(seen: &[Seen], add: &mut Add) {
    let mut reasons: BTreeMap<&str, &str> = BTreeMap::new();
    let mut any = false;
    for (_, v) in seen {
        let limit = v.master.down_after_ms.map(|d| d * LINK_DOWN_FACTOR);
        for r in &v.replicas {
            let why = if r.flags.has(Flag::SDown) || r.flags.has(Flag::Disconnected) {
                Some("down")
            } else if r.priority == Some(0) {
                Some("replica-priority 0")
            } else if r.link_down_ms.zip(limit).is_some_and(|(d, l)| d > l) {
                Some("its link to the master down too long")
            } else {
                None
            };
            match why {
                Some(why) => {
                    reasons.entry(&r.addr).or_insert(why);
                }
                None => any = true,
            }
        }
    }
    if any {
        return;
    }
    let why = if reasons.is_empty() {
        "the master has no replica: if it fails, nothing takes over".to_string()
    } else {
        let each: Vec<String> = reasons.iter().map(|(a, w)| format!("{a}: {w}")).collect();
        format!("no replica Sentinel would promote ({}): if the master fails, the failover aborts (-failover-abort-no-good-slave)", each.join("; "))
    };
    add(
        Check::NoPromotableReplica,
        Severity::Critical,
        None,
        why,
        "bring a replica up with a link to the master and replica-priority above 0".into(),
    );
}

/// The host part of `host:port` (IPv6 `[a::b]:port` included).
fn host(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::parse::sentinel::{Flags, MasterEntry, ReplicaEntry, SentinelEntry};

    /// The findings with the default `stale_after`, no replica following
    /// another master for long.
    fn found(seen: &[Seen]) -> Vec<Finding> {
        findings("d", "m", STALE, seen, |_| 0.0)
    }

    /// The default `findings.stale_after`.
    const STALE: Duration = Duration::from_secs(30 * 60);
    const STALE_MS: u64 = 30 * 60 * 1000;

    /// A sentinel's view: quorum, sentinels it knows, replicas as
    /// (address, flags, priority).
    pub(in crate::monitor::findings) fn view(
        quorum: u32,
        others: &[&str],
        replicas: &[(&str, &str, u32)],
    ) -> MasterView {
        MasterView {
            master: MasterEntry {
                name: "m".into(),
                addr: "10.0.0.1:6379".into(),
                flags: Flags::parse("master"),
                config_epoch: 1,
                quorum,
                num_replicas: replicas.len() as u32,
                num_other_sentinels: others.len() as u32,
                failover_timeout_ms: 180_000,
                down_after_ms: Some(30_000),
                parallel_syncs: Some(1),
            },
            replicas: replicas
                .iter()
                .map(|(addr, flags, priority)| ReplicaEntry {
                    addr: addr.to_string(),
                    flags: Flags::parse(flags),
                    priority: Some(*priority),
                    link_down_ms: Some(0),
                    s_down_ms: None,
                    follows: None,
                })
                .collect(),
            sentinels: others
                .iter()
                .map(|addr| SentinelEntry {
                    addr: addr.to_string(),
                    run_id: String::new(),
                    flags: Flags::parse("sentinel"),
                    s_down_ms: None,
                })
                .collect(),
            quorum_ok: true,
        }
    }

    const S: [&str; 3] = ["10.0.1.1:26379", "10.0.1.2:26379", "10.0.1.3:26379"];
    const R: [(&str, &str, u32); 2] = [
        ("10.0.0.2:6379", "slave", 100),
        ("10.0.0.3:6379", "slave", 100),
    ];

    fn others(me: usize) -> Vec<&'static str> {
        S.iter()
            .enumerate()
            .filter(|(i, _)| *i != me)
            .map(|(_, s)| *s)
            .collect()
    }

    fn checks(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(|f| f.check.as_str()).collect()
    }

    #[test]
    fn a_healthy_group_has_no_finding() {
        let views: Vec<MasterView> = (0..3).map(|i| view(2, &others(i), &R)).collect();
        let seen: Vec<Seen> = S.iter().copied().zip(&views).collect();
        assert_eq!(found(&seen), []);
        assert_eq!(found(&[]), [], "nothing seen, nothing told");
    }

    #[test]
    fn quorum_above_the_sentinels_is_critical_below_a_majority_information() {
        let v = view(4, &others(0), &R);
        let f = found(&[(S[0], &v)]);
        assert_eq!(checks(&f), ["quorum_unreachable"]);
        assert_eq!(f[0].severity, Severity::Critical);
        assert!(
            f[0].why.starts_with("quorum 4 but 3 sentinels exist"),
            "{}",
            f[0].why
        );
        assert_eq!(
            f[0].action,
            "SENTINEL SET m quorum 2 on every sentinel, or add sentinels"
        );
        let five = ["a:1", "b:1", "c:1", "d:1"];
        let low = view(2, &five, &R);
        let f = found(&[("e:1", &low)]);
        assert_eq!(checks(&f), ["quorum_below_majority"]);
        assert_eq!(f[0].severity, Severity::Info);
    }

    #[test]
    fn an_even_number_of_sentinels_and_sentinels_sharing_a_host() {
        let v = view(
            2,
            &["10.0.1.2:26379", "10.0.1.1:26380", "10.0.1.3:26379"],
            &R,
        );
        let f = found(&[(S[0], &v)]);
        assert_eq!(
            checks(&f),
            [
                "quorum_below_majority",
                "even_sentinels",
                "sentinels_share_host"
            ]
        );
        let host = &f[2];
        assert_eq!(host.node.as_deref(), Some("10.0.1.1"));
        assert!(
            host.why.contains("10.0.1.1:26379, 10.0.1.1:26380"),
            "{}",
            host.why
        );
    }

    #[test]
    fn settings_that_differ_name_who_holds_which() {
        let a = view(2, &others(0), &R);
        let mut b = view(2, &others(1), &R);
        b.master.down_after_ms = Some(5000);
        let f = found(&[(S[0], &a), (S[1], &b)]);
        assert_eq!(checks(&f), ["sentinel_settings_differ"]);
        assert!(
            f[0].why.contains(
                "down-after-milliseconds: 5000 on 10.0.1.2:26379; 30000 on 10.0.1.1:26379"
            ),
            "{}",
            f[0].why
        );
    }

    #[test]
    fn entries_down_for_long_are_stale_with_the_sentinels_to_reset() {
        let mut a = view(2, &others(0), &R);
        a.sentinels[1].s_down_ms = Some(STALE_MS + 1);
        a.replicas[0].s_down_ms = Some(STALE_MS - 1);
        let f = found(&[(S[0], &a)]);
        assert_eq!(checks(&f), ["stale_sentinel"]);
        assert_eq!(f[0].node.as_deref(), Some(S[2]));
        assert!(f[0]
            .action
            .starts_with("if it is gone for good: SENTINEL RESET m on 10.0.1.1:26379"));
        a.replicas[0].s_down_ms = Some(STALE_MS + 1);
        assert_eq!(
            checks(&found(&[(S[0], &a)])),
            ["stale_sentinel", "stale_replica"]
        );
    }

    #[test]
    fn no_replica_to_promote_says_why_each_is_out() {
        let out = [
            ("10.0.0.2:6379", "slave", 0),
            ("10.0.0.3:6379", "slave,s_down", 100),
        ];
        let v = view(2, &others(0), &out);
        let f = found(&[(S[0], &v)]);
        assert_eq!(checks(&f), ["no_promotable_replica"]);
        assert!(
            f[0].why
                .contains("10.0.0.2:6379: replica-priority 0; 10.0.0.3:6379: down"),
            "{}",
            f[0].why
        );
        let mut lagging = view(2, &others(0), &R);
        for r in &mut lagging.replicas {
            r.link_down_ms = Some(300_001);
        }
        let f = found(&[(S[0], &lagging)]);
        assert!(
            f[0].why.contains("its link to the master down too long"),
            "{}",
            f[0].why
        );
        // One sentinel that would take a replica is enough.
        let fine = view(2, &others(1), &R);
        assert_eq!(found(&[(S[0], &v), (S[1], &fine)]), []);
        let none = view(2, &others(0), &[]);
        assert!(found(&[(S[0], &none)])[0]
            .why
            .starts_with("the master has no replica"));
    }

    /// A replica following the old master is named once it has done so
    /// for longer than failover-timeout (180 s here), not before; one that
    /// names no master, or is down, is not.
    #[test]
    fn a_replica_left_on_another_master_past_failover_timeout() {
        let mut v = view(2, &others(0), &R);
        v.replicas[0].follows = Some("10.0.0.9:6379".into());
        v.replicas[1].follows = Some("10.0.0.1:6379".into());
        let seen = [(S[0], &v)];
        assert_eq!(
            misfollowing(&seen).into_iter().collect::<Vec<_>>(),
            [(R[0].0, "10.0.0.9:6379")]
        );
        let stuck = |secs: f64| findings("d", "m", STALE, &seen, |_| secs);
        assert_eq!(stuck(180.0), []);
        let f = stuck(181.0);
        assert_eq!(checks(&f), ["replica_follows_other_master"]);
        assert_eq!(f[0].node.as_deref(), Some(R[0].0));
        assert!(
            f[0].why
                .contains("still follows 10.0.0.9:6379, not the master 10.0.0.1:6379, 181 s on"),
            "{}",
            f[0].why
        );
        assert!(f[0].action.ends_with("REPLICAOF 10.0.0.1 6379 on it"));
        // A sentinel that has not learnt of the switch (an older epoch, the
        // old master) is not asked.
        let mut behind = v.clone();
        behind.master.config_epoch = 0;
        behind.master.addr = "10.0.0.9:6379".into();
        let both = [(S[1], &behind), (S[0], &v)];
        assert_eq!(
            findings("d", "m", STALE, &both, |_| 181.0),
            f,
            "the newest configuration only"
        );
        v.replicas[0].flags = Flags::parse("slave,s_down");
        assert!(misfollowing(&[(S[0], &v)]).is_empty(), "down: not counted");
    }
}
