//! Follows one cluster shard through failovers, from successive views of
//! who serves its slots and how the views flag its master. Redis Cluster
//! publishes no events: marks are exact to the poll interval.

use super::{Context, Step};
use crate::config::Kind;
use crate::model::timeline::{MarkName, Outcome, Serial, Timeline};
use crate::monitor::derive::cluster::{ClusterShardView, NodeRef};

/// The failover machine of one cluster shard.
#[derive(Debug, Default, Clone)]
pub struct ClusterShard {
    /// The failover in progress.
    pub open: Option<Timeline>,
    /// The master before the failover.
    pub master: Option<NodeRef>,
    /// Names the next failover.
    pub serial: Serial,
}

impl ClusterShard {
    /// Resumes a failover read back from disk. The old master is known by
    /// address only until a view names an owner; a failover already over by
    /// then closes as the views show it.
    pub fn resume(&mut self, t: Timeline) {
        self.master = t.old_master.clone().map(|addr| NodeRef { id: None, addr });
        self.open = Some(t);
    }

    /// Applies one derivation's view; `resolution` is the poll interval in seconds.
    pub fn on_view(&mut self, v: &ClusterShardView, ctx: &Context, resolution: f64) -> Step {
        let Some(owner) = &v.owner else {
            return Step::Unchanged;
        };
        let Some(settled) = self.master.clone() else {
            if v.converged {
                self.master = Some(owner.clone());
            }
            return Step::Unchanged;
        };
        let moved = match &settled.id {
            Some(id) => owner.id.as_ref() != Some(id),
            None => owner.addr != settled.addr,
        };
        let suspect = v.pfail > 0 || v.fail;
        if self.open.is_none() && !suspect && !moved {
            return Step::Unchanged;
        }
        let t = self.open.get_or_insert_with(|| {
            let mut t = Timeline::open(&self.serial, ctx.deployment, ctx.shard, Kind::Cluster);
            t.old_master = Some(settled.addr.clone());
            t.poll_resolution_seconds = Some(resolution);
            t
        });
        let mut changed = false;
        if v.pfail > 0 {
            changed |= t.mark(MarkName::Pfail, v.at, ctx.reporter);
        }
        if v.fail {
            // A node flags `fail` only after flagging `fail?`: when both
            // happened between two polls, the first sign the agent saw of
            // either is this view.
            changed |= t.mark(MarkName::Pfail, v.at, ctx.reporter);
            changed |= t.mark(MarkName::Fail, v.at, ctx.reporter);
        }
        if moved {
            changed |= t.mark(MarkName::Promoted, v.at, ctx.reporter);
            t.new_master = Some(owner.addr.clone());
            if !t.epochs.contains(&v.epoch) {
                t.epochs.push(v.epoch);
            }
            if v.converged {
                t.mark(MarkName::Converged, v.at, ctx.reporter);
                let mut t = self.open.take().expect("open");
                t.close(Outcome::Completed, None);
                self.master = Some(owner.clone());
                return Step::Closed(Box::new(t));
            }
        } else if !suspect && t.at(MarkName::Promoted).is_none() {
            // The master is back and still owns its slots. (Once a promotion
            // was seen, views that still name the old master are only late:
            // the failover ends at convergence or times out.)
            let mut t = self.open.take().expect("open");
            if t.at(MarkName::Fail).is_some() {
                t.close(Outcome::Aborted, Some("master-recovered"));
                return Step::Closed(Box::new(t));
            }
            return Step::Dropped;
        }
        Step::changed_if(changed)
    }

    /// Closes a failover that has gone on longer than `limit` seconds.
    pub fn on_tick(&mut self, now: f64, limit: f64) -> Step {
        match &self.open {
            Some(t) if now - t.started().unwrap_or(now) > limit => {
                let mut t = self.open.take().expect("open");
                t.close(Outcome::TimedOut, None);
                Step::Closed(Box::new(t))
            }
            _ => Step::Unchanged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(at: f64, owner: &str, pfail: u32, fail: bool, converged: bool) -> ClusterShardView {
        ClusterShardView {
            at,
            owner: Some(NodeRef {
                id: Some(owner.to_string()),
                addr: format!("addr-{owner}"),
            }),
            pfail,
            fail,
            converged,
            epoch: 7,
        }
    }

    #[test]
    fn cluster_failover_from_views() {
        let mut c = ClusterShard::default();
        let cx = Context {
            deployment: "d",
            shard: "s",
            at: 0.0,
            reporter: "views",
        };
        assert_eq!(
            c.on_view(&view(1.0, "a", 0, false, true), &cx, 0.5),
            Step::Unchanged
        );
        assert_eq!(
            c.on_view(&view(2.0, "a", 1, false, true), &cx, 0.5),
            Step::Changed
        );
        assert_eq!(
            c.on_view(&view(3.0, "a", 3, true, true), &cx, 0.5),
            Step::Changed
        );
        assert_eq!(
            c.on_view(&view(4.0, "b", 0, true, false), &cx, 0.5),
            Step::Changed
        );
        let Step::Closed(t) = c.on_view(&view(4.5, "b", 0, true, true), &cx, 0.5) else {
            panic!("converged")
        };
        let names: Vec<&str> = t.marks.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["pfail", "fail", "promoted", "converged"]);
        assert_eq!(
            (t.old_master.as_deref(), t.new_master.as_deref()),
            (Some("addr-a"), Some("addr-b"))
        );
        assert_eq!(t.poll_resolution_seconds, Some(0.5));
        let phases: std::collections::HashMap<&str, f64> = t
            .phases()
            .into_iter()
            .map(|(p, s)| (p.as_str(), s))
            .collect();
        assert_eq!(
            (
                phases["detection"],
                phases["promotion"],
                phases["convergence"],
                phases["total"]
            ),
            (1.0, 1.0, 0.5, 2.5)
        );

        // A manual failover: the owner changes with no pfail/fail.
        assert_eq!(
            c.on_view(&view(10.0, "a", 0, false, false), &cx, 0.5),
            Step::Changed
        );
        let Step::Closed(t) = c.on_view(&view(10.5, "a", 0, false, true), &cx, 0.5) else {
            panic!()
        };
        assert_eq!(t.marks[0].name, MarkName::Promoted);
        // A blip that clears by itself.
        c.on_view(&view(20.0, "a", 1, false, true), &cx, 0.5);
        assert_eq!(
            c.on_view(&view(20.5, "a", 0, false, true), &cx, 0.5),
            Step::Dropped
        );
    }

    #[test]
    fn a_resumed_failover_knows_its_master_by_address_until_a_view_names_it() {
        let mut t = Timeline::open(&Serial::default(), "d", "s", Kind::Cluster);
        t.old_master = Some("addr-a".into());
        t.mark(MarkName::Fail, 1.0, "views");
        let mut c = ClusterShard::default();
        c.resume(t);
        let cx = Context {
            deployment: "d",
            shard: "s",
            at: 0.0,
            reporter: "views",
        };
        // Still served by the old master, known by address: no promotion.
        c.on_view(&view(2.0, "a", 0, true, true), &cx, 1.0);
        let open = c.open.as_ref().expect("still open");
        assert_eq!(open.at(MarkName::Promoted), None);
        let Step::Closed(t) = c.on_view(&view(3.0, "b", 0, false, true), &cx, 1.0) else {
            panic!("a new owner everywhere ends it")
        };
        assert_eq!(t.outcome, Some(Outcome::Completed));
        assert_eq!(c.master.and_then(|m| m.id).as_deref(), Some("b"));
    }
}
