//! What is wrong with a cluster's setup, from the views the monitor
//! derives. Pure: the same views give the same findings.

use crate::config::Severity;
use crate::model::finding::{Check, Finding};
use crate::model::snapshot::{ClusterView, TargetView};

/// The findings about cluster `deployment`: nodes that answer the agent
/// while the cluster has marked them `fail`. Clients still connected to one
/// (or configured with its address alone) are served by a node the rest of
/// the cluster routes away from: its writes to slots it lost are refused or,
/// for a stale master that has not learnt of its replacement yet, lost.
pub fn findings(deployment: &str, c: &ClusterView, targets: &[&TargetView]) -> Vec<Finding> {
    c.failing
        .iter()
        .filter(|f| f.fail)
        .filter(|f| {
            targets
                .iter()
                .any(|t| t.id.addr == f.node && t.polled && t.up)
        })
        .map(|f| Finding {
            check: Check::AnsweringWhileFailed,
            severity: Severity::Warning,
            deployment: deployment.to_string(),
            shard: None,
            node: Some(f.node.clone()),
            why: format!(
                "{} answers, but the cluster has marked it fail: clients still talking to it are served by a node the others route away from",
                f.node
            ),
            action: "find why the others cannot reach it (network, cluster bus port, announce address); CLUSTER NODES on it and on another node".into(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::snapshot::FailingView;
    use crate::model::{TargetId, TargetKind};

    fn target(addr: &str, up: bool) -> TargetView {
        TargetView {
            id: TargetId {
                deployment: "c".into(),
                kind: TargetKind::Node,
                addr: addr.into(),
            },
            exported: true,
            polled: true,
            up,
            last_duration: None,
            last_poll: None,
            failures: 0,
            tilt: None,
        }
    }

    fn cluster(failing: Vec<FailingView>) -> ClusterView {
        ClusterView {
            state_ok: true,
            majority: None,
            current_epoch: 1,
            failing,
            slots: None,
        }
    }

    #[test]
    fn a_failed_node_that_answers_is_a_finding_one_that_does_not_is_not() {
        let failing = |node: &str, pfail, fail| FailingView {
            node: node.into(),
            pfail,
            fail,
        };
        let c = cluster(vec![
            failing("a:1", 0, true),
            failing("b:1", 0, true),
            failing("c:1", 2, false),
        ]);
        let (a, b, cc) = (
            target("a:1", true),
            target("b:1", false),
            target("c:1", true),
        );
        let f = findings("c", &c, &[&a, &b, &cc]);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].check.as_str(), "answering_while_failed");
        assert_eq!(f[0].node.as_deref(), Some("a:1"));
        assert_eq!(findings("c", &cluster(Vec::new()), &[&a]), []);
    }
}
