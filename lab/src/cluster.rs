//! A Redis Cluster built by hand with CLUSTER MEET / ADDSLOTS / REPLICATE.
//!
//! `redis-cli --cluster create` is not used: it is interactive, slower, and its
//! behaviour differs between Redis and Valkey versions, while the primitive commands
//! are the same on Redis 6.2, 7.x and Valkey 8.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::net::Net;
use crate::node::{Node, Role};
use crate::security::Security;
use crate::{parse_info, wait_until, LabDir, Reply};

/// Total number of hash slots.
const SLOTS: usize = 16_384;

/// Slots per `CLUSTER ADDSLOTS` call: keeps each command small while needing only a few
/// round trips.
const ADDSLOTS_BATCH: usize = 2_000;

/// How long [`Cluster::start`], [`Cluster::add_node`] and [`Cluster::remove_node`] wait
/// for the nodes to converge.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Shape of a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterOpts {
    pub masters: usize,
    pub replicas_per_master: usize,
    pub node_timeout_ms: u64,
    /// TLS and ACL users (none by default).
    pub security: Security,
    /// Nodes announce this hostname (`cluster-announce-hostname`, Redis
    /// 7.0+): `Some("localhost")` in tests.
    pub hostname: Option<String>,
    /// Each node on its own host of this network, to partition them.
    pub net: Option<Net>,
}

impl Default for ClusterOpts {
    /// 3 masters with 1 replica each (the smallest cluster that survives losing a
    /// master), node timeout 1 s so failures are detected quickly.
    fn default() -> Self {
        ClusterOpts {
            masters: 3,
            replicas_per_master: 1,
            node_timeout_ms: 1000,
            security: Security::default(),
            hostname: None,
            net: None,
        }
    }
}

/// A running cluster. Everything is killed and the directory removed on drop.
#[derive(Debug)]
pub struct Cluster {
    /// `nodes[..masters]` are the initial masters; replica `i` of master `m` is
    /// `nodes[masters + m * replicas_per_master + i]`. Nodes added later are appended.
    pub nodes: Vec<Node>,
    node_timeout_ms: u64,
    /// For nodes added later.
    security: Security,
    hostname: Option<String>,
    dir: LabDir,
    /// Kept until the nodes are gone (fields drop in order).
    net: Option<Net>,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug)]
struct NodeLine {
    id: String,
    port: Option<u16>,
    flags: Vec<String>,
    master_id: String,
    /// Slot ranges and `[slot->-id]` migration markers.
    slots: Vec<String>,
}

impl Cluster {
    /// Starts `masters * (1 + replicas_per_master)` cluster nodes and wires them up:
    /// slots split evenly over the masters, replicas attached, and returns once every
    /// node reports `cluster_state:ok` and knows all nodes, every replica's link is up
    /// and every node sees every replica under the right master.
    ///
    /// Panics with the missing piece (and server logs on startup failure) when that does
    /// not happen within 30 s.
    pub fn start(opts: ClusterOpts) -> Cluster {
        assert!(
            opts.masters >= 1,
            "redis-ha-lab: a cluster needs at least one master"
        );
        let dir = LabDir::new();
        let total = opts.masters * (1 + opts.replicas_per_master);
        let nodes: Vec<Node> = (0..total)
            .map(|_| {
                Node::spawn(
                    dir.path(),
                    Role::ClusterNode {
                        node_timeout_ms: opts.node_timeout_ms,
                        hostname: opts.hostname.as_deref(),
                    },
                    &opts.security,
                    opts.net.as_ref().map(|net| net.host("node")),
                )
            })
            .collect();
        nodes.iter().for_each(Node::wait_started);
        let cluster = Cluster {
            nodes,
            node_timeout_ms: opts.node_timeout_ms,
            security: opts.security.clone(),
            hostname: opts.hostname.clone(),
            dir,
            net: opts.net.clone(),
        };

        for (m, master) in cluster.nodes[..opts.masters].iter().enumerate() {
            let first = m * SLOTS / opts.masters;
            let end = (m + 1) * SLOTS / opts.masters;
            let slots: Vec<String> = (first..end).map(|s| s.to_string()).collect();
            for batch in slots.chunks(ADDSLOTS_BATCH) {
                let mut args = vec!["CLUSTER", "ADDSLOTS"];
                args.extend(batch.iter().map(String::as_str));
                expect_ok(master, &args);
            }
        }
        let (seed_ip, seed) = (cluster.nodes[0].ip().to_string(), cluster.nodes[0].port());
        for node in &cluster.nodes[1..] {
            expect_ok(node, &["CLUSTER", "MEET", &seed_ip, &seed.to_string()]);
        }

        let ids: Vec<String> = cluster.nodes.iter().map(my_id).collect();
        wait_until(CONVERGE_TIMEOUT, "every node to know every node", || {
            cluster.all_know(&ids)
        });

        let mut expected_masters = HashMap::new();
        for m in 0..opts.masters {
            for i in 0..opts.replicas_per_master {
                let r = opts.masters + m * opts.replicas_per_master + i;
                expect_ok(&cluster.nodes[r], &["CLUSTER", "REPLICATE", &ids[m]]);
                expected_masters.insert(ids[r].clone(), ids[m].clone());
            }
        }
        wait_until(
            CONVERGE_TIMEOUT,
            "the cluster to settle (state ok, replicas attached everywhere)",
            || {
                cluster.healthy()?;
                cluster.replicas_attached(&expected_masters)
            },
        );
        cluster
    }

    /// The lab network the servers are on, if any (`opts.net`).
    pub fn net(&self) -> Option<&Net> {
        self.net.as_ref()
    }

    /// The directory holding every node's config, log and `nodes-<port>.conf`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A node by port. Panics if unknown.
    pub fn node(&self, port: u16) -> &Node {
        &self.nodes[self.index_of(port)]
    }

    /// Mutable access to a node by port. Panics if unknown.
    pub fn node_mut(&mut self, port: u16) -> &mut Node {
        let index = self.index_of(port);
        &mut self.nodes[index]
    }

    /// The cluster node id (`CLUSTER MYID`) of the node on `port`. Panics if it does not
    /// answer.
    pub fn node_id(&self, port: u16) -> String {
        my_id(self.node(port))
    }

    /// Starts a new empty node, introduces it with `CLUSTER MEET`, waits until every
    /// running node lists it (and it lists them) and returns its port.
    pub fn add_node(&mut self) -> u16 {
        let node = Node::spawn(
            self.dir.path(),
            Role::ClusterNode {
                node_timeout_ms: self.node_timeout_ms,
                hostname: self.hostname.as_deref(),
            },
            &self.security,
            self.net.as_ref().map(|net| net.host("node")),
        );
        node.wait_started();
        let (seed_ip, seed) = self
            .nodes
            .iter()
            .find(|n| reachable(n))
            .map(|n| (n.ip().to_string(), n.port().to_string()))
            .expect("redis-ha-lab: add_node needs a running cluster node to MEET");
        expect_ok(&node, &["CLUSTER", "MEET", &seed_ip, &seed]);
        let port = node.port();
        self.nodes.push(node);
        let ids: Vec<String> = self.reachable().map(my_id).collect();
        wait_until(
            CONVERGE_TIMEOUT,
            &format!("every node to know new node {port}"),
            || self.all_know(&ids),
        );
        port
    }

    /// Removes a node that owns no slots: kills it, runs `CLUSTER FORGET <id>` on every
    /// other reachable node (all at once, so gossip cannot re-teach it within the 60 s
    /// forget ban), waits until none lists it any more, and drops it from `nodes`.
    ///
    /// Panics if the node owns slots, or is the master of a remaining replica (Redis
    /// refuses to FORGET a node's own master).
    pub fn remove_node(&mut self, port: u16) {
        let index = self.index_of(port);
        let id = self.id_by_port(port);
        if let Some(line) = self
            .reachable()
            .filter(|n| n.port() != port)
            .find_map(|n| cluster_nodes(n).ok()?.into_iter().find(|l| l.id == id))
        {
            assert!(
                line.slots.is_empty(),
                "redis-ha-lab: cannot remove node {port}: it still owns slots {:?}",
                line.slots
            );
        }
        self.nodes[index].kill();
        for node in self.reachable() {
            match node.cmd(&["CLUSTER", "FORGET", &id]) {
                Ok(_) => {}
                // Already forgotten (e.g. a retry): the goal state.
                Err(crate::LabError::Server { message, .. })
                    if message.contains("Unknown node") => {}
                Err(e) => panic!("redis-ha-lab: removing node {port}: {e}"),
            }
        }
        wait_until(
            CONVERGE_TIMEOUT,
            &format!("every node to forget node {port}"),
            || {
                for node in self.reachable() {
                    let lines = cluster_nodes(node)?;
                    if lines.iter().any(|l| l.id == id) {
                        return Err(format!("{} still lists {id}", node.addr()));
                    }
                }
                Ok(())
            },
        );
        self.nodes.remove(index);
    }

    /// Waits until every running, not frozen node reports `cluster_state:ok`. Panics
    /// on timeout with the first node that did not.
    pub fn wait_ok(&self, timeout: Duration) {
        wait_until(timeout, "cluster_state:ok on every running node", || {
            for node in self.reachable() {
                let state = cluster_info(node)?;
                let state = state.get("cluster_state").map(String::as_str);
                if state != Some("ok") {
                    return Err(format!("{}: cluster_state is {state:?}", node.addr()));
                }
            }
            Ok(())
        });
    }

    fn index_of(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port() == port)
            .unwrap_or_else(|| {
                let ports: Vec<u16> = self.nodes.iter().map(Node::port).collect();
                panic!("redis-ha-lab: no node on port {port} in this cluster (ports: {ports:?})")
            })
    }

    /// The node id of `port`: from the node itself, or, when it is down or frozen,
    /// from a peer's `CLUSTER NODES`.
    fn id_by_port(&self, port: u16) -> String {
        let node = self.node(port);
        if reachable(node) {
            if let Ok(Reply::Str(id)) = node.cmd(&["CLUSTER", "MYID"]) {
                return id;
            }
        }
        self.reachable()
            .filter_map(|n| cluster_nodes(n).ok())
            .flatten()
            .find(|l| l.port == Some(port))
            .map(|l| l.id)
            .unwrap_or_else(|| panic!("redis-ha-lab: no node knows the id of port {port}"))
    }

    fn reachable(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| reachable(n))
    }

    /// Every reachable node lists exactly `ids`, none of them still in handshake.
    fn all_know(&self, ids: &[String]) -> Result<(), String> {
        for node in self.reachable() {
            let lines = cluster_nodes(node)?;
            for id in ids {
                match lines.iter().find(|l| &l.id == id) {
                    None => return Err(format!("{} does not know {id} yet", node.addr())),
                    Some(l) if l.flags.iter().any(|f| f == "handshake") => {
                        return Err(format!("{} is still in handshake with {id}", node.addr()))
                    }
                    Some(_) => {}
                }
            }
            if lines.len() != ids.len() {
                return Err(format!(
                    "{} knows {} nodes, want {}",
                    node.addr(),
                    lines.len(),
                    ids.len()
                ));
            }
        }
        Ok(())
    }

    /// `cluster_state:ok` and the full node count everywhere, replica links up.
    fn healthy(&self) -> Result<(), String> {
        let total = self.nodes.len().to_string();
        for node in self.reachable() {
            let info = cluster_info(node)?;
            let state = info.get("cluster_state").map(String::as_str);
            let known = info.get("cluster_known_nodes").map(String::as_str);
            if state != Some("ok") || known != Some(total.as_str()) {
                return Err(format!(
                    "{}: cluster_state {state:?}, cluster_known_nodes {known:?} (want {total})",
                    node.addr()
                ));
            }
            // Only replicas report master_link_status; keyed on it rather than on
            // `role:slave` so a server that renames the role still gets checked.
            let repl = node.info("replication").map_err(|e| e.to_string())?;
            if let Some(link) = repl.get("master_link_status").filter(|l| *l != "up") {
                return Err(format!("{}: master_link_status is {link}", node.addr()));
            }
        }
        Ok(())
    }

    /// Every node sees each replica (id → master id) flagged as a replica of its master.
    fn replicas_attached(&self, expected: &HashMap<String, String>) -> Result<(), String> {
        for node in self.reachable() {
            let lines = cluster_nodes(node)?;
            for (replica, master) in expected {
                let seen = lines.iter().find(|l| &l.id == replica);
                let ok = seen.is_some_and(|l| {
                    l.flags.iter().any(|f| f == "slave" || f == "replica") && &l.master_id == master
                });
                if !ok {
                    return Err(format!(
                        "{} does not yet see {replica} as a replica of {master}",
                        node.addr()
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    /// Kill everything before the directory goes (fields drop in declaration order, but
    /// being explicit keeps this independent of it).
    fn drop(&mut self) {
        self.nodes.iter_mut().for_each(Node::kill);
    }
}

fn reachable(node: &Node) -> bool {
    node.is_running() && !node.is_frozen()
}

/// Runs a setup command that must succeed; panics naming the node otherwise.
fn expect_ok(node: &Node, args: &[&str]) {
    if let Err(e) = node.cmd(args) {
        panic!("redis-ha-lab: cluster setup failed: {e}");
    }
}

fn my_id(node: &Node) -> String {
    match node.cmd(&["CLUSTER", "MYID"]) {
        Ok(Reply::Str(id)) => id,
        other => panic!("redis-ha-lab: CLUSTER MYID on {}: {other:?}", node.addr()),
    }
}

fn cluster_info(node: &Node) -> Result<HashMap<String, String>, String> {
    match node.cmd(&["CLUSTER", "INFO"]) {
        Ok(Reply::Str(text)) => Ok(parse_info(&text)),
        other => Err(format!("{}: CLUSTER INFO: {other:?}", node.addr())),
    }
}

fn cluster_nodes(node: &Node) -> Result<Vec<NodeLine>, String> {
    match node.cmd(&["CLUSTER", "NODES"]) {
        Ok(Reply::Str(text)) => Ok(parse_cluster_nodes(&text)),
        other => Err(format!("{}: CLUSTER NODES: {other:?}", node.addr())),
    }
}

/// Parses `CLUSTER NODES`:
/// `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slots…>`.
fn parse_cluster_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let port = fields[1]
                .split(['@', ','])
                .next()
                .and_then(|hostport| hostport.rsplit_once(':'))
                .and_then(|(_, port)| port.parse().ok());
            Some(NodeLine {
                id: fields[0].to_string(),
                port,
                flags: fields[2].split(',').map(str::to_string).collect(),
                master_id: fields[3].to_string(),
                slots: fields[8..].iter().map(|s| s.to_string()).collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_nodes_of_6_2_and_7() {
        let text = "\
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460\n\
67ed 127.0.0.1:30002@40002,host-b master - 0 1426238316232 2 connected 5461-10922 [5461->-e7d1]\n\
292f 127.0.0.1:30004@40004 slave e7d1 0 1426238317741 1 connected\n\
abcd :0@0 handshake,noaddr - 0 0 0 disconnected\n";
        let lines = parse_cluster_nodes(text);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].port, Some(30001));
        assert_eq!(lines[0].flags, ["myself", "master"]);
        assert_eq!(lines[0].slots, ["0-5460"]);
        assert_eq!(lines[1].port, Some(30002));
        assert_eq!(lines[1].slots.len(), 2);
        assert_eq!(lines[2].master_id, "e7d1");
        assert!(lines[2].slots.is_empty());
        assert_eq!(lines[3].port, Some(0));
    }
}
