//! Addresses the sentinels reach and the agent does not. The sentinels
//! hand out the addresses instances announce (`replica-announce-ip`,
//! `sentinel announce-ip`, the master's address as configured); when those
//! route from the sentinels' hosts but not from elsewhere (NAT, container
//! networks, a firewall), every client that asks Sentinel where to go is
//! told an address it may not reach either. Pure.

use std::collections::BTreeMap;

use super::sentinel::Seen;
use crate::config::Severity;
use crate::model::finding::{Check, Finding};
use crate::parse::sentinel::{Flag, Flags};

/// The agent's side of an address: for how many seconds its polls have
/// failed (`None` while they succeed, or before the first).
pub type Failing<'a> = &'a dyn Fn(&str) -> Option<f64>;

/// Seconds on top of `down-after-milliseconds` that the agent's failing
/// polls must outlast before the sentinels' "up" is believed over them: a
/// sentinel's view is one poll old, and it flags an instance only after
/// `down-after-milliseconds` itself.
const GRACE: f64 = 5.0;

/// The findings about master `shard`: each address some reachable sentinel
/// sees up (its flags neither `s_down` nor `disconnected`) while the
/// agent's polls of it have failed for longer than that sentinel's
/// `down-after-milliseconds` plus [`GRACE`].
pub fn findings(deployment: &str, shard: &str, seen: &[Seen], failing: Failing) -> Vec<Finding> {
    // By address: the sentinels that see it up, and what it is.
    let mut up: BTreeMap<&str, (Vec<&str>, &str)> = BTreeMap::new();
    for (me, v) in seen {
        let limit = v.master.down_after_ms.unwrap_or(30_000) as f64 / 1000.0 + GRACE;
        let live = |flags: &Flags| !flags.has(Flag::SDown) && !flags.has(Flag::Disconnected);
        let instances = std::iter::once((&v.master.addr, &v.master.flags, "master"))
            .chain(v.replicas.iter().map(|r| (&r.addr, &r.flags, "replica")))
            .chain(v.sentinels.iter().map(|s| (&s.addr, &s.flags, "sentinel")));
        for (addr, flags, what) in instances {
            if live(flags) && failing(addr).is_some_and(|secs| secs > limit) {
                up.entry(addr)
                    .or_insert_with(|| (Vec::new(), what))
                    .0
                    .push(me);
            }
        }
    }
    up.into_iter()
        .map(|(addr, (sentinels, what))| Finding {
            check: Check::UnreachableFromAgent,
            severity: Severity::Warning,
            deployment: deployment.to_string(),
            shard: Some(shard.to_string()),
            node: Some(addr.to_string()),
            why: format!(
                "{what} {addr} is up for the sentinels ({}) but the agent's polls of it fail: the address they hand out may not route from other hosts (announce-ip, NAT, container networks), and clients that ask Sentinel are given it too",
                sentinels.join(", ")
            ),
            action: "check the address it announces (replica-announce-ip, sentinel announce-ip) against the network of the clients; if only the agent's host cannot reach it, fix that host's network or credentials (the agent's log says why its polls fail)".into(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::sentinel::tests::view;
    use super::*;

    /// Past down-after (30 s) plus the grace (5 s), an address the
    /// sentinel sees up and the agent does not is named; one the sentinel
    /// sees down too is the outage's, not a finding; before that, nothing.
    #[test]
    fn up_for_the_sentinels_down_for_the_agent() {
        let v = view(
            2,
            &["10.0.0.9:26379"],
            &[
                ("10.0.0.2:6379", "slave", 100),
                ("10.0.0.3:6379", "slave,s_down", 100),
            ],
        );
        let seen = [("10.0.0.8:26379", &v)];
        let all_failing = |secs: f64| move |_: &str| Some(secs);
        assert_eq!(findings("d", "m", &seen, &all_failing(35.0)), []);
        let f = findings("d", "m", &seen, &all_failing(36.0));
        let named: Vec<_> = f.iter().map(|f| f.node.as_deref().unwrap()).collect();
        assert_eq!(named, ["10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.9:26379"]);
        assert!(
            f[1].why
                .starts_with("replica 10.0.0.2:6379 is up for the sentinels (10.0.0.8:26379)"),
            "{}",
            f[1].why
        );
        let one = |a: &str| (a == "10.0.0.2:6379").then_some(60.0);
        assert_eq!(findings("d", "m", &seen, &one).len(), 1);
        assert_eq!(findings("d", "m", &seen, &|_| None), []);
    }
}
