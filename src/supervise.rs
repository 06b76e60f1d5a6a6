//! The supervisor: keeps one poller (and, for sentinels, one event
//! subscriber) per target of the latest snapshot, and one canary probe per
//! probed shard, starting and stopping them as snapshots add and drop
//! targets and shards.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::client::PollSettings;
use crate::collect::clients::{self, GIVE_UP_AFTER};
use crate::collect::node::Strays;
use crate::collect::topology::{Rotation, Topology};
use crate::collect::{poller, subscriber};
use crate::config::{Config, Deployment, Kind};
use crate::model::snapshot::{DeploymentView, FailoverView, Snapshot};
use crate::model::timeline::Timeline;
use crate::model::{Input, TargetId, TargetKind};
use crate::shutdown::Shutdown;
use crate::util::time::unix_now;

/// How long a canary probe keeps running after its shard stopped being
/// probed (left the topology, or lost its slots).
const PROBE_GRACE: Duration = Duration::from_secs(30);

/// Tasks started for one key (a target, a probed shard), and the switch
/// that stops them.
struct Running {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Makes the running set equal to `wanted`: tells the tasks of keys no
/// longer wanted to stop (they close their connections and exit on their
/// own), and starts tasks for new keys (`start` gives none for a key it
/// cannot serve).
fn reconcile<K: Eq + Hash + Clone>(
    running: &mut HashMap<K, Running>,
    wanted: &HashSet<K>,
    mut start: impl FnMut(&K, watch::Receiver<bool>) -> Option<Vec<JoinHandle<()>>>,
    left: impl Fn(&K),
) {
    running.retain(|key, r| {
        let keep = wanted.contains(key);
        if !keep {
            left(key);
            let _ = r.stop.send(true);
        }
        keep
    });
    for key in wanted {
        if running.contains_key(key) {
            continue;
        }
        let (stop, stopped) = watch::channel(false);
        if let Some(tasks) = start(key, stopped) {
            running.insert(key.clone(), Running { stop, tasks });
        }
    }
}

/// The nodes of a deployment that report role master beside their shard's
/// master: those of the shards' open two-masters windows. Few, and most
/// often none: a scan of the shards per snapshot.
fn stray_masters(d: &DeploymentView) -> HashSet<String> {
    d.shards
        .iter()
        .filter_map(|s| Some((s.two_masters.as_ref()?, s.master.as_deref())))
        .flat_map(|(w, master)| w.nodes.iter().filter(move |n| Some(n.as_str()) != master))
        .cloned()
        .collect()
}

/// The failovers whose old master's clients are to be read: switched to a
/// new master, not read yet, and recent enough (a timeline read back from
/// disk long after its failover is not read now).
fn clients_unread(failovers: &FailoverView, now: f64, after: f64) -> Vec<&Timeline> {
    failovers
        .timelines
        .iter()
        .filter(|t| t.clients_left_behind.is_none() && t.old_master.is_some())
        .filter(|t| t.new_master.is_some() && t.new_master != t.old_master)
        .filter(|t| {
            t.switch_seen()
                .is_some_and(|s| now - s < GIVE_UP_AFTER + after)
        })
        .collect()
}

/// The shards the canary probes: every shard of a sentinel deployment,
/// every shard owning slots of a cluster, where `canary.enabled`.
fn probed(config: &Config, snapshot: &Snapshot) -> HashSet<(Arc<str>, String)> {
    let mut wanted = HashSet::new();
    for d in &snapshot.deployments {
        if !config
            .deployments
            .iter()
            .any(|c| *c.name == *d.name && c.canary.enabled)
        {
            continue;
        }
        // While no node answers, the slot map is unknown: probes keep
        // running (and their records of acknowledged writes) rather than
        // stop exactly when a failover may be losing writes.
        for s in d.shards.iter().filter(|s| d.owns_slots(&s.name)) {
            wanted.insert((d.name.clone(), s.name.clone()));
        }
    }
    wanted
}

/// Keeps exactly one poller running for every target of the latest
/// snapshot, and one canary probe for every probed shard, until `shutdown`:
/// then stops them all and returns once they have ended, each after
/// closing its connection. With them go the senders of the monitor's
/// input, which is how the monitor learns the agent is stopping.
pub async fn supervise(
    config: Arc<Config>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    inputs: mpsc::Sender<Input>,
    mut shutdown: Shutdown,
) {
    let settings = PollSettings {
        interval: config.poll_interval,
        timeout: config.timeout,
        settings_interval: config.findings.settings_interval,
        hot_slots: config.findings.hot_slots,
    };
    // Shared by every task of the deployment: a poller holds a pointer, not
    // a copy (a deployment may list many seeds).
    let deployments: HashMap<&str, Arc<Deployment>> = config
        .deployments
        .iter()
        .map(|d| (d.name.as_str(), Arc::new(d.clone())))
        .collect();
    let deployment = |name: &str| deployments.get(name);
    // What the node pollers of each cluster share.
    let clusters: HashMap<Arc<str>, Arc<Topology>> = config
        .deployments
        .iter()
        .filter(|d| d.kind == Kind::Cluster)
        .map(|d| {
            let rotation = Rotation::new(
                d.seeds.clone(),
                config.poll_interval,
                config.topology_interval,
            );
            (d.name.as_str().into(), Arc::new(Topology::new(rotation)))
        })
        .collect();
    // Per deployment, the nodes whose write count the pollers read.
    let strays: HashMap<Arc<str>, Arc<Strays>> = config
        .deployments
        .iter()
        .map(|d| (d.name.as_str().into(), Arc::default()))
        .collect();
    let mut pollers: HashMap<TargetId, Running> = HashMap::new();
    let mut probes: HashMap<(Arc<str>, String), Running> = HashMap::new();
    let mut probe_seen: HashMap<(Arc<str>, String), Instant> = HashMap::new();
    // One read of clients left behind per failover, by timeline id, until
    // its result is on the timeline.
    let mut reads: HashMap<String, Running> = HashMap::new();
    let mut failovers: Option<Arc<FailoverView>> = None;
    let canary = config.deployments.iter().any(|d| d.canary.enabled);
    let mut topology = None;
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        for d in &snapshot.deployments {
            if let Some(set) = strays.get(&d.name) {
                set.set(stray_masters(d));
            }
        }
        // Targets change only with the topology: most snapshots need no look.
        if topology != Some(snapshot.topology) {
            topology = Some(snapshot.topology);
            for d in &snapshot.deployments {
                if let Some(shared) = clusters.get(&d.name) {
                    let nodes = d.targets.iter().map(|t| t.id.addr.clone()).collect();
                    shared.set_rotation(Rotation::new(
                        nodes,
                        config.poll_interval,
                        config.topology_interval,
                    ));
                }
            }
            let targets: HashSet<TargetId> = snapshot.targets().cloned().collect();
            reconcile(
                &mut pollers,
                &targets,
                |id, stopped| {
                    let deployment = deployment(&id.deployment)?;
                    tracing::info!(deployment = %id.deployment, target = %id.addr, kind = id.kind.label(), "polling new target");
                    let mut tasks = vec![tokio::spawn(poller::run(
                        id.clone(),
                        deployment.clone(),
                        settings,
                        clusters.get(&id.deployment).cloned(),
                        strays.get(&id.deployment).cloned().unwrap_or_default(),
                        inputs.clone(),
                        stopped.clone(),
                    ))];
                    if id.kind == TargetKind::Sentinel {
                        tasks.push(tokio::spawn(subscriber::run(
                            id.clone(),
                            deployment.clone(),
                            settings,
                            inputs.clone(),
                            stopped,
                        )));
                    }
                    Some(tasks)
                },
                |id| tracing::info!(deployment = %id.deployment, target = %id.addr, "target left the topology; polling stopped"),
            );
        }
        // The failovers change far less often than the snapshots.
        if failovers
            .as_ref()
            .is_none_or(|f| !Arc::ptr_eq(f, &snapshot.failovers))
        {
            failovers = Some(snapshot.failovers.clone());
            let after = config.timelines.clients_after;
            let unread = clients_unread(&snapshot.failovers, unix_now(), after.as_secs_f64());
            let wanted: HashSet<String> = unread.iter().map(|t| t.id.clone()).collect();
            reconcile(
                &mut reads,
                &wanted,
                |id, stopped| {
                    let t = unread.iter().find(|t| t.id == *id)?;
                    let read = clients::Read {
                        deployment: deployment(&t.deployment)?.clone(),
                        shard: t.shard.clone(),
                        timeline: t.id.clone(),
                        node: t.old_master.clone()?,
                        switched: t.switch_seen()?,
                    };
                    Some(vec![tokio::spawn(clients::run(
                        read,
                        after,
                        settings,
                        snapshots.clone(),
                        inputs.clone(),
                        stopped,
                    ))])
                },
                |_| {},
            );
        }
        if canary {
            reconcile_probes(
                &config,
                &snapshot,
                &mut probes,
                &mut probe_seen,
                |(name, shard), stopped| {
                    let deployment = deployment(name)?;
                    tracing::info!(deployment = %name, shard = %shard, "canary probe started");
                    Some(vec![tokio::spawn(crate::canary::run(
                        deployment.clone(),
                        shard.clone(),
                        settings,
                        snapshots.clone(),
                        inputs.clone(),
                        stopped,
                    ))])
                },
            );
        }
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { break },
            () = shutdown.requested() => break,
        }
    }
    let running: Vec<Running> = pollers
        .into_values()
        .chain(probes.into_values())
        .chain(reads.into_values())
        .collect();
    // All told first, then awaited: each may take up to a timeout to close
    // its connection (a frozen server never answers QUIT), and those waits
    // must overlap, not add up.
    for r in &running {
        let _ = r.stop.send(true);
    }
    for task in running.into_iter().flat_map(|r| r.tasks) {
        let _ = task.await;
    }
}

/// Keeps a probe for every shard probed now or within [`PROBE_GRACE`].
fn reconcile_probes(
    config: &Config,
    snapshot: &Snapshot,
    probes: &mut HashMap<(Arc<str>, String), Running>,
    probe_seen: &mut HashMap<(Arc<str>, String), Instant>,
    start: impl FnMut(&(Arc<str>, String), watch::Receiver<bool>) -> Option<Vec<JoinHandle<()>>>,
) {
    // A shard's view flickers during a failover (its slots briefly
    // elsewhere, no node answering): its probe, and its records of
    // acknowledged writes, outlive such a gap.
    let now = Instant::now();
    for key in probed(config, snapshot) {
        probe_seen.insert(key, now);
    }
    probe_seen.retain(|_, seen| now.duration_since(*seen) < PROBE_GRACE);
    let wanted: HashSet<(Arc<str>, String)> = probe_seen.keys().cloned().collect();
    reconcile(
        probes,
        &wanted,
        start,
        |(name, shard)| tracing::info!(deployment = %name, shard = %shard, "shard left the topology; canary probe stopped"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::clients::ClientsLeftBehind;
    use crate::model::timeline::{MarkName, Serial};

    fn failover(shard: &str, switched: Option<f64>) -> Timeline {
        let mut t = Timeline::open(&Serial::default(), "d", shard, Kind::Sentinel);
        t.old_master = Some("10.0.0.1:6379".into());
        t.new_master = Some("10.0.0.2:6379".into());
        if let Some(at) = switched {
            t.mark(MarkName::Switched, at, "s:1");
        }
        t
    }

    #[test]
    fn clients_are_read_once_per_recent_switch() {
        let mut read = failover("read", Some(100.0));
        read.clients_left_behind = Some(ClientsLeftBehind::unread("x", 1.0, "e".into()));
        let mut same = failover("same", Some(100.0));
        same.new_master = same.old_master.clone();
        let view = FailoverView {
            timelines: vec![
                failover("due", Some(100.0)),
                failover("unswitched", None),
                read,
                same,
                failover("old", Some(105.0 - 10.0 - GIVE_UP_AFTER)),
            ],
            ..FailoverView::default()
        };
        let shards: Vec<&str> = clients_unread(&view, 105.0, 10.0)
            .iter()
            .map(|t| t.shard.as_str())
            .collect();
        assert_eq!(shards, ["due"]);
    }
}
