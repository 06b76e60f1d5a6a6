//! The independent record of a sentinel group and a cluster that the soak
//! and chaos runs check the agent against: what the servers themselves
//! said, read with the lab's own client and nothing of the agent's. Every
//! sentinel event as a raw `PSUBSCRIBE *` connection to each sentinel
//! received it, and every server's own view of roles, polled every 200 ms
//! by a thread of its own (so that a frozen server delays only its own
//! thread, and the test's thread is free to freeze, kill and restart).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis_ha_lab::{Cluster, Remote, Reply, SentinelGroup};

use super::unix_now;

/// How often each server's view is read.
const POLL: Duration = Duration::from_millis(200);
/// A view older than this is not taken for the server's present state (a
/// frozen server's last answer, before its 2 s timeout).
const FRESH: Duration = Duration::from_millis(1500);

/// One message a sentinel published, as received.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    pub at: f64,
    pub sentinel: String,
    pub channel: String,
    pub payload: String,
}

/// What a sentinel says of the master (`SENTINEL MASTER`, `INFO sentinel`).
#[derive(Debug, Clone, PartialEq)]
pub struct SentinelView {
    pub master: String,
    pub epoch: u64,
    pub flags: String,
    pub tilt: bool,
}

/// What a data node of the sentinel group says of itself (`INFO replication`).
#[derive(Debug, Clone, PartialEq)]
pub struct DataView {
    pub role: String,
    pub master: Option<String>,
    pub link_up: bool,
}

/// One line of a cluster node's `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLine {
    pub id: String,
    pub addr: String,
    pub flags: Vec<String>,
    pub master_id: String,
    pub epoch: u64,
    /// Inclusive slot ranges it serves.
    pub slots: Vec<(u16, u16)>,
}

impl NodeLine {
    fn flagged(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    pub fn is_master(&self) -> bool {
        self.flagged("master")
    }

    /// Flagged failing (`fail?`) or failed (`fail`).
    pub fn failing(&self) -> bool {
        self.flagged("fail?") || self.flagged("fail")
    }

    fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }
}

/// What a cluster node says (`CLUSTER NODES`, `CLUSTER INFO`, `INFO replication`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    pub state_ok: bool,
    pub lines: Vec<NodeLine>,
    /// `master_link_status:up`, for a replica.
    pub link_up: bool,
}

impl ClusterView {
    /// The node's line about itself.
    pub fn myself(&self) -> Option<&NodeLine> {
        self.lines.iter().find(|l| l.flagged("myself"))
    }
}

/// A server's latest answer, or why it gave none.
#[derive(Debug, Clone)]
struct Seen<T> {
    at: Instant,
    view: Result<T, String>,
}

/// A real failover as the record tells it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failover {
    /// `sentinel` or `cluster`.
    pub kind: &'static str,
    /// The sentinel master name, or the cluster shard's first slot.
    pub shard: String,
    /// When the record first saw the new master: the first `+switch-master`
    /// (sentinel), the promoted node's first poll naming itself master
    /// (cluster).
    pub at: f64,
    pub old_master: String,
    pub new_master: String,
}

#[derive(Default)]
struct State {
    events: Vec<Event>,
    sentinels: BTreeMap<String, Seen<SentinelView>>,
    data: BTreeMap<String, Seen<DataView>>,
    cluster: BTreeMap<String, Seen<ClusterView>>,
    /// (first seen, config epoch, master) each time a sentinel named a
    /// higher config epoch than any before.
    sentinel_epochs: Vec<(f64, u64, String)>,
    /// Per cluster shard (its first slot): (first seen, config epoch, node
    /// id, address) each time a node named itself master of the slot with a
    /// higher config epoch than any before.
    shard_epochs: BTreeMap<u16, Vec<(f64, u64, String, String)>>,
    /// (first seen, failing node id): a node starting to flag another
    /// `fail?` or `fail`.
    flagged: Vec<(f64, String)>,
    /// The sentinels whose `PSUBSCRIBE` is confirmed now.
    subscribed: BTreeSet<String>,
}

/// The record; its threads run until it is dropped.
pub struct Record {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    pub master_name: String,
    /// The sentinel group's master when the record started.
    pub first_master: String,
    pub sentinels: Vec<String>,
    pub data_nodes: Vec<String>,
    pub cluster_nodes: Vec<String>,
    /// Each cluster shard's first slot, from the cluster at the start.
    pub shards: Vec<u16>,
}

impl Drop for Record {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Record {
    /// Starts recording `group` and `cluster`, both settled, and returns
    /// once every server has been read and every sentinel's events are
    /// subscribed to.
    pub fn start(group: &SentinelGroup, cluster: &Cluster) -> Record {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let first_master = group.node(group.master_port().unwrap()).addr();
        let shards = first_slots(&cluster.nodes[0].remote());
        for s in &group.sentinels {
            let (remote, events, stopped) = (s.remote(), state.clone(), stop.clone());
            std::thread::spawn(move || listen(&remote, &events, &stopped));
            let (remote, name) = (s.remote(), group.master_name.clone());
            poller(&state, &stop, move |state| {
                let view = sentinel_view(&remote, &name);
                let mut s = state.lock().unwrap();
                if let Ok(v) = &view {
                    s.note_sentinel(v);
                }
                s.sentinels.insert(remote.addr(), seen(view));
            });
        }
        for n in &group.nodes {
            let remote = n.remote();
            poller(&state, &stop, move |state| {
                let view = data_view(&remote);
                state.lock().unwrap().data.insert(remote.addr(), seen(view));
            });
        }
        for n in &cluster.nodes {
            let (remote, shards) = (n.remote(), shards.clone());
            poller(&state, &stop, move |state| {
                let view = cluster_view(&remote);
                let mut s = state.lock().unwrap();
                if let Ok(v) = &view {
                    s.note_cluster(&remote.addr(), v, &shards);
                }
                s.cluster.insert(remote.addr(), seen(view));
            });
        }
        let record = Record {
            state,
            stop,
            master_name: group.master_name.clone(),
            first_master,
            sentinels: group.sentinels.iter().map(|n| n.addr()).collect(),
            data_nodes: group.nodes.iter().map(|n| n.addr()).collect(),
            cluster_nodes: cluster.nodes.iter().map(|n| n.addr()).collect(),
            shards,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let subscribed = || record.state().subscribed.len() == record.sentinels.len();
        while record.sentinel_settled().is_err()
            || record.cluster_settled().is_err()
            || !subscribed()
        {
            assert!(
                Instant::now() < deadline,
                "the record did not see the lab settled and subscribed: {:?} {:?} {:?}",
                record.sentinel_settled(),
                record.cluster_settled(),
                record.state().subscribed
            );
            std::thread::sleep(POLL);
        }
        record
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Every sentinel event received so far, in arrival order.
    pub fn events(&self) -> Vec<Event> {
        self.state().events.clone()
    }

    /// The sentinel group's master as the sentinels name it now (highest
    /// config epoch).
    pub fn sentinel_master(&self) -> Option<String> {
        self.state().sentinel_epochs.last().map(|e| e.2.clone())
    }

    /// Each cluster shard's master (by its first slot) as the nodes name it
    /// now (highest config epoch).
    pub fn cluster_masters(&self) -> BTreeMap<u16, String> {
        self.state()
            .shard_epochs
            .iter()
            .filter_map(|(slot, h)| Some((*slot, h.last()?.3.clone())))
            .collect()
    }

    /// The sentinel group's failovers: each `+switch-master` naming a new
    /// master other than the one the record holds, in order. A sentinel
    /// that comes back late announces the switch it missed, to the master
    /// the others already named: that is not another failover.
    pub fn sentinel_failovers(&self) -> Vec<Failover> {
        let mut current = self.first_master.clone();
        let mut found = Vec::new();
        for e in self
            .events()
            .iter()
            .filter(|e| e.channel == "+switch-master")
        {
            let f: Vec<&str> = e.payload.split(' ').collect();
            if f.len() != 5 || f[0] != self.master_name {
                continue;
            }
            let new = format!("{}:{}", f[3], f[4]);
            if new != current {
                found.push(Failover {
                    kind: "sentinel",
                    shard: self.master_name.clone(),
                    at: e.at,
                    old_master: std::mem::replace(&mut current, new.clone()),
                    new_master: new,
                });
            }
        }
        found
    }

    /// The masters the sentinels named, each time a higher config epoch
    /// came with another address than the last: the sentinels' own polled
    /// view of the failovers, to hold against their events.
    pub fn sentinel_epoch_switches(&self) -> Vec<(u64, String)> {
        let mut out: Vec<(u64, String)> = Vec::new();
        for (_, epoch, master) in &self.state().sentinel_epochs {
            let last = out.last().map_or(&self.first_master, |l| &l.1);
            if master != last {
                out.push((*epoch, master.clone()));
            }
        }
        out
    }

    /// The cluster's failovers: per shard, each time a node of another id
    /// named itself master of the shard's first slot with a higher config
    /// epoch than any before (a returning old master still claiming its
    /// slots has the lower epoch).
    pub fn cluster_failovers(&self) -> Vec<Failover> {
        let mut found = Vec::new();
        for (slot, history) in &self.state().shard_epochs {
            for pair in history.windows(2) {
                let (before, after) = (&pair[0], &pair[1]);
                if before.2 != after.2 {
                    found.push(Failover {
                        kind: "cluster",
                        shard: slot.to_string(),
                        at: after.0,
                        old_master: before.3.clone(),
                        new_master: after.3.clone(),
                    });
                }
            }
        }
        found.sort_by(|a, b| a.at.total_cmp(&b.at));
        found
    }

    /// Whether some sentinel published an event about the master of the
    /// kind that opens a timeline (`+sdown`, `+odown`, `+try-failover`,
    /// `+switch-master`) between `from` and `to`.
    pub fn sentinel_trouble(&self, from: f64, to: f64) -> bool {
        let opens = ["+sdown", "+odown", "+try-failover", "+switch-master"];
        let (about, switch) = (
            format!("master {} ", self.master_name),
            format!("{} ", self.master_name),
        );
        self.events().iter().any(|e| {
            (from..=to).contains(&e.at)
                && opens.contains(&e.channel.as_str())
                && (e.payload.starts_with(&about) || e.payload.starts_with(&switch))
        })
    }

    /// Whether some sentinel published that it gave up a failover of the
    /// master (`-failover-abort-*`) between `from` and `to`.
    pub fn sentinel_aborted(&self, from: f64, to: f64) -> bool {
        let about = format!("master {} ", self.master_name);
        self.events().iter().any(|e| {
            (from..=to).contains(&e.at)
                && e.channel.starts_with("-failover-abort-")
                && e.payload.starts_with(&about)
        })
    }

    /// Whether some cluster node began flagging `node` (an address)
    /// failing between `from` and `to`.
    pub fn cluster_trouble(&self, node: &str, from: f64, to: f64) -> bool {
        let s = self.state();
        let ids: BTreeSet<&String> = s
            .cluster
            .values()
            .filter_map(|seen| seen.view.as_ref().ok())
            .flat_map(|v| v.lines.iter())
            .filter(|l| l.addr == node)
            .map(|l| &l.id)
            .collect();
        s.flagged
            .iter()
            .any(|(at, id)| (from..=to).contains(at) && ids.contains(id))
    }

    /// Fresh views of every server in `addrs`, or which one has none.
    fn fresh<T: Clone>(
        seen: &BTreeMap<String, Seen<T>>,
        addrs: &[String],
    ) -> Result<Vec<(String, T)>, String> {
        addrs
            .iter()
            .map(|a| match seen.get(a) {
                Some(Seen { at, view: Ok(v) }) if at.elapsed() < FRESH => {
                    Ok((a.clone(), v.clone()))
                }
                Some(Seen { view: Err(e), .. }) => Err(format!("{a}: {e}")),
                _ => Err(format!("{a}: no fresh answer")),
            })
            .collect()
    }

    /// `Ok` when the sentinel group is at rest: every server answers, the
    /// sentinels name one master with one epoch, none sees it down or fails
    /// it over, it reports role master and every other data node is its
    /// replica with the link up.
    pub fn sentinel_settled(&self) -> Result<(), String> {
        let s = self.state();
        let sentinels = Self::fresh(&s.sentinels, &self.sentinels)?;
        let data = Self::fresh(&s.data, &self.data_nodes)?;
        let (_, first) = &sentinels[0];
        for (who, v) in &sentinels {
            if v.master != first.master || v.epoch != first.epoch {
                return Err(format!("sentinels disagree: {sentinels:?}"));
            }
            if v.flags != "master" {
                return Err(format!("sentinel {who}: master flags {}", v.flags));
            }
        }
        for (node, v) in &data {
            let ok = if *node == first.master {
                v.role == "master"
            } else {
                v.role == "slave" && v.master.as_ref() == Some(&first.master) && v.link_up
            };
            if !ok {
                return Err(format!("{node} with master {}: {v:?}", first.master));
            }
        }
        Ok(())
    }

    /// Whether any sentinel is in TILT now.
    pub fn tilted(&self) -> Vec<String> {
        self.state()
            .sentinels
            .iter()
            .filter(|(_, seen)| seen.view.as_ref().is_ok_and(|v| v.tilt))
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// `Ok` when the cluster is at rest: every node answers with
    /// `cluster_state:ok`, knows every node and flags none failing, all
    /// name the same master for each shard, and each other node is a
    /// replica with its link up.
    pub fn cluster_settled(&self) -> Result<(), String> {
        let s = self.state();
        let views = Self::fresh(&s.cluster, &self.cluster_nodes)?;
        let owners = |v: &ClusterView| -> Vec<Option<String>> {
            self.shards
                .iter()
                .map(|&slot| {
                    v.lines
                        .iter()
                        .find(|l| l.is_master() && l.serves(slot))
                        .map(|l| l.addr.clone())
                })
                .collect()
        };
        let first = owners(&views[0].1);
        for (node, v) in &views {
            if !v.state_ok {
                return Err(format!("{node}: cluster_state is not ok"));
            }
            if v.lines.len() != self.cluster_nodes.len() {
                return Err(format!("{node} knows {} nodes", v.lines.len()));
            }
            if let Some(l) = v.lines.iter().find(|l| l.failing()) {
                return Err(format!("{node} flags {} {:?}", l.addr, l.flags));
            }
            if owners(v) != first || first.iter().any(Option::is_none) {
                return Err(format!(
                    "{node} names masters {:?}, not {first:?}",
                    owners(v)
                ));
            }
            let me = v.myself().ok_or(format!("{node}: no myself line"))?;
            if !first.contains(&Some(node.clone())) && (me.is_master() || !v.link_up) {
                return Err(format!("{node}: not a replica with its link up: {me:?}"));
            }
        }
        Ok(())
    }

    /// The cluster's replicas now, from their own views.
    pub fn cluster_replicas(&self) -> Vec<String> {
        let s = self.state();
        s.cluster
            .iter()
            .filter(|(_, seen)| {
                seen.view
                    .as_ref()
                    .is_ok_and(|v| v.myself().is_some_and(|m| !m.is_master()))
            })
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// What the record holds now, for a failure's message.
    pub fn describe(&self) -> String {
        let s = self.state();
        format!(
            "sentinels: {:?}\ndata nodes: {:?}\ncluster masters: {:?}\nsentinel epochs: {:?}",
            s.sentinels, s.data, s.shard_epochs, s.sentinel_epochs
        )
    }
}

impl State {
    fn note_sentinel(&mut self, v: &SentinelView) {
        // The leader of a failover takes the new config epoch at the
        // promotion and the new address only at the switch: until then its
        // flags say the failover is in progress.
        if v.flags.contains("failover_in_progress") {
            return;
        }
        if self.sentinel_epochs.last().is_none_or(|l| v.epoch > l.1) {
            self.sentinel_epochs
                .push((unix_now(), v.epoch, v.master.clone()));
        }
    }

    fn note_cluster(&mut self, observer: &str, v: &ClusterView, shards: &[u16]) {
        let now = unix_now();
        if let Some(me) = v.myself().filter(|m| m.is_master()) {
            for &slot in shards.iter().filter(|&&s| me.serves(s)) {
                let history = self.shard_epochs.entry(slot).or_default();
                if history.last().is_none_or(|l| me.epoch > l.1) {
                    history.push((now, me.epoch, me.id.clone(), me.addr.clone()));
                }
            }
        }
        // Which nodes this observer flags now, against what it flagged last.
        let before: BTreeSet<String> = self
            .cluster
            .get(observer)
            .and_then(|seen| seen.view.as_ref().ok())
            .map(|old| {
                old.lines
                    .iter()
                    .filter(|l| l.failing())
                    .map(|l| l.id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for l in v
            .lines
            .iter()
            .filter(|l| l.failing() && !before.contains(&l.id))
        {
            self.flagged.push((now, l.id.clone()));
        }
    }
}

fn seen<T>(view: Result<T, String>) -> Seen<T> {
    Seen {
        at: Instant::now(),
        view,
    }
}

/// Calls `read` every [`POLL`] on a thread of its own until the record is
/// dropped.
fn poller(
    state: &Arc<Mutex<State>>,
    stop: &Arc<AtomicBool>,
    mut read: impl FnMut(&Mutex<State>) + Send + 'static,
) {
    let (state, stop) = (state.clone(), stop.clone());
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            read(&state);
            std::thread::sleep(POLL.saturating_sub(started.elapsed()));
        }
    });
}

/// Records every message the sentinel publishes, subscribing again after
/// it was killed.
fn listen(remote: &Remote, state: &Mutex<State>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut sub) = remote.psubscribe("*") else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        state.lock().unwrap().subscribed.insert(remote.addr());
        while !stop.load(Ordering::SeqCst) {
            match sub.receive() {
                Ok(Some(m)) => state.lock().unwrap().events.push(Event {
                    at: unix_now(),
                    sentinel: remote.addr(),
                    channel: m.channel,
                    payload: m.payload,
                }),
                Ok(None) => {}
                Err(_) => break,
            }
        }
        state.lock().unwrap().subscribed.remove(&remote.addr());
    }
}

fn text(reply: Reply) -> Result<String, String> {
    match reply {
        Reply::Str(s) => Ok(s),
        other => Err(format!("not text: {other:?}")),
    }
}

fn sentinel_view(remote: &Remote, name: &str) -> Result<SentinelView, String> {
    let reply = remote
        .cmd(&["SENTINEL", "MASTER", name])
        .map_err(|e| e.to_string())?;
    let Reply::Array(items) = reply else {
        return Err(format!("SENTINEL MASTER: {reply:?}"));
    };
    let fields: BTreeMap<&str, &str> = items
        .chunks_exact(2)
        .filter_map(|p| Some((p[0].as_str()?, p[1].as_str()?)))
        .collect();
    let field = |k: &str| fields.get(k).copied().ok_or(format!("no {k}"));
    let info = remote.info("sentinel").map_err(|e| e.to_string())?;
    Ok(SentinelView {
        master: format!("{}:{}", field("ip")?, field("port")?),
        epoch: field("config-epoch")?.parse().map_err(|_| "config-epoch")?,
        flags: field("flags")?.to_string(),
        tilt: info.get("sentinel_tilt").map(String::as_str) == Some("1"),
    })
}

fn data_view(remote: &Remote) -> Result<DataView, String> {
    let info = remote.info("replication").map_err(|e| e.to_string())?;
    let get = |k: &str| info.get(k).cloned();
    Ok(DataView {
        role: get("role").unwrap_or_default(),
        master: get("master_host")
            .zip(get("master_port"))
            .map(|(h, p)| format!("{h}:{p}")),
        link_up: get("master_link_status").as_deref() == Some("up"),
    })
}

fn cluster_view(remote: &Remote) -> Result<ClusterView, String> {
    let nodes = text(
        remote
            .cmd(&["CLUSTER", "NODES"])
            .map_err(|e| e.to_string())?,
    )?;
    let info = text(
        remote
            .cmd(&["CLUSTER", "INFO"])
            .map_err(|e| e.to_string())?,
    )?;
    let repl = remote.info("replication").map_err(|e| e.to_string())?;
    Ok(ClusterView {
        state_ok: info.lines().any(|l| l.trim() == "cluster_state:ok"),
        lines: nodes.lines().filter_map(parse_line).collect(),
        link_up: repl.get("master_link_status").map(String::as_str) == Some("up"),
    })
}

/// `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slots…>`
fn parse_line(line: &str) -> Option<NodeLine> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 8 {
        return None;
    }
    let slots = f[8..]
        .iter()
        .filter(|s| !s.starts_with('['))
        .filter_map(|s| match s.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => s.parse().ok().map(|n| (n, n)),
        })
        .collect();
    Some(NodeLine {
        id: f[0].to_string(),
        addr: f[1].split(['@', ',']).next()?.to_string(),
        flags: f[2].split(',').map(str::to_string).collect(),
        master_id: f[3].to_string(),
        epoch: f[6].parse().ok()?,
        slots,
    })
}

/// The first slot of each master's first range, as `node` sees them.
fn first_slots(node: &Remote) -> Vec<u16> {
    let view = cluster_view(node).expect("the cluster answers");
    let mut slots: Vec<u16> = view
        .lines
        .iter()
        .filter(|l| l.is_master())
        .filter_map(|l| l.slots.first().map(|r| r.0))
        .collect();
    slots.sort();
    slots
}
