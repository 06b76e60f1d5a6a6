//! A simulated Redis Cluster for scale benchmarks: one process serving, on
//! N loopback ports, the commands the agent sends to cluster nodes, from one
//! consistent topology.
//!
//! Real servers stop at what two cores sustain (100-150 nodes); the agent is
//! benchmarked at 1000. The simulator answers `INFO` (server, clients, stats,
//! replication, cluster, keyspace), `CLUSTER INFO`, `CLUSTER NODES`,
//! `CLUSTER MYID`, `PING`, `ECHO`, `AUTH`, `CLIENT ID/SETNAME/SETINFO`,
//! `SELECT 0` and `QUIT` in Redis 7.0.15's shapes, and an error to anything
//! else. It holds no data, replicates nothing and speaks no cluster bus:
//! behaviour tests stay on real servers, and `tests/simulator.rs` checks
//! that the agent derives the same views from the simulator as from a real
//! cluster of the same shape, healthy and after a failover.
//!
//! Every node has a view of the cluster ([`topology`]); a failure reaches
//! the views one by one, over spreads given in [`FailureTiming`], the way
//! gossip spreads it ([`world`]). Views are shared between the nodes that
//! hold the same one, and their `CLUSTER NODES` text is rendered once
//! ([`replies`]), so 1000 nodes polled every second cost a fraction of a
//! core.

mod control;
mod replies;
mod server;
mod topology;
mod world;

use std::collections::HashMap;
use std::net::{Ipv4Addr, TcpListener as StdListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::ports::PortReservation;
use crate::resp::{self, Reply};
use crate::security::Admin;
use crate::LabError;
pub use control::{Control, ControlError};
use server::NodeIo;
use world::{hex_id, IdKind, Shape, World};

/// How a failure spreads (see [`SimCluster::fail_master`]). Each node gets
/// its own share of each spread, stable for a seed; zero spreads make every
/// node move at the same instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureTiming {
    /// After the node timeout, nodes flag the master `fail?` within this.
    pub pfail_spread: Duration,
    /// The failure is declared (`fail`) this long after the node timeout.
    pub fail_after: Duration,
    /// The other nodes learn `fail` within this after it is declared.
    pub fail_spread: Duration,
    /// A replica is promoted this long after the failure is declared (Redis
    /// waits 500 ms plus up to 500 ms, then holds an election).
    pub promote_after: Duration,
    /// The other nodes learn a promotion, or a resumed node's return,
    /// within this.
    pub gossip_spread: Duration,
}

impl Default for FailureTiming {
    /// What a real 3x1 lab cluster with a 1 s node timeout shows: `fail?`
    /// from 1.0-1.3 s after the master froze, `fail` everywhere by 1.6 s,
    /// the replica promoted at about 2.0 s and known everywhere by 2.3 s.
    fn default() -> Self {
        FailureTiming {
            pfail_spread: Duration::from_millis(300),
            fail_after: Duration::from_millis(300),
            fail_spread: Duration::from_millis(200),
            promote_after: Duration::from_millis(700),
            gossip_spread: Duration::from_millis(200),
        }
    }
}

/// Shape and pace of a [`SimCluster`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimOpts {
    pub masters: usize,
    pub replicas_per_master: usize,
    /// `cluster-node-timeout`: when nodes start flagging a failed master,
    /// and how often healthy peers' pong times move (half of it).
    pub node_timeout: Duration,
    pub timing: FailureTiming,
    /// Bytes per second each master's replication offset grows by.
    pub write_rate: u64,
    /// Node ids, replication ids and per-node spreads derive from it.
    pub seed: u64,
    /// Worker threads of the simulator's own runtime.
    pub threads: usize,
}

impl Default for SimOpts {
    /// The lab's default cluster shape: 3 masters with 1 replica each, 1 s
    /// node timeout.
    fn default() -> Self {
        SimOpts {
            masters: 3,
            replicas_per_master: 1,
            node_timeout: Duration::from_secs(1),
            timing: FailureTiming::default(),
            write_rate: 1000,
            seed: 1,
            threads: 1,
        }
    }
}

/// Why a simulator could not start, or a control was refused.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("a simulated cluster needs at least one master and one thread")]
    Empty,
    #[error("cannot start the simulator's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("no node {index}: the cluster has nodes 0..{nodes}")]
    NoSuchNode { index: usize, nodes: usize },
    #[error("no shard {shard}: the cluster has shards 0..{shards}")]
    NoSuchShard { shard: usize, shards: usize },
    #[error("no slot {slot}: slots are 0..16384")]
    NoSuchSlot { slot: u16 },
    #[error("a failover of shard {shard} is still spreading for {remaining:?}")]
    FailoverInProgress { shard: usize, remaining: Duration },
    #[error("node {index} has failed already; resume it first")]
    AlreadyFailed { index: usize },
    #[error("slot {slot} is not served by shard {shard}")]
    NotOwner { slot: u16, shard: usize },
    #[error("a migration needs two shards, got shard {shard} twice")]
    SameShard { shard: usize },
    #[error("slot {slot} is already migrating")]
    MigrationOpen { slot: u16 },
    #[error("slot {slot} is not migrating")]
    NoMigration { slot: u16 },
}

/// The nodes' fixed identities, by index.
#[derive(Debug)]
pub(crate) struct Identity {
    pub ids: Vec<String>,
    pub ports: Vec<u16>,
    pub run_ids: Vec<String>,
}

/// What the server tasks and the controls share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub ident: Identity,
    pub io: Vec<NodeIo>,
    world: Mutex<World>,
}

impl Inner {
    pub(crate) fn lock_world(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock leaves no half-applied change
        // that matters more than serving on.
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One simulated node, as [`SimCluster::nodes`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimNode {
    pub index: usize,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// The 40-hex-digit node id.
    pub id: String,
    /// The shard it belongs to: a master's own index, a replica's first
    /// master's.
    pub shard: usize,
}

/// A running simulated cluster. Nodes are numbered like the lab's
/// [`crate::Cluster`]: `0..masters` the initial masters in slot order,
/// replica `i` of master `m` at `masters + m * replicas_per_master + i`.
/// Shards are numbered by their initial master. Everything stops when
/// dropped.
#[derive(Debug)]
pub struct SimCluster {
    inner: Arc<Inner>,
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    _reservations: Vec<PortReservation>,
}

impl SimCluster {
    /// Starts the simulator, panicking with the reason when it cannot: like
    /// the lab's real topologies, for tests, where a clear panic is the most
    /// useful failure.
    pub fn start(opts: SimOpts) -> SimCluster {
        SimCluster::try_start(opts).unwrap_or_else(|e| panic!("redis-ha-lab: simulator: {e}"))
    }

    /// Reserves a loopback port per node (through the lab's reservations,
    /// so concurrent tests never collide), starts a runtime of
    /// `opts.threads` threads and serves every port on it.
    pub fn try_start(opts: SimOpts) -> Result<SimCluster, SimError> {
        if opts.masters == 0 || opts.threads == 0 {
            return Err(SimError::Empty);
        }
        let total = opts.masters * (1 + opts.replicas_per_master);
        // A listener and a client connection per node, and some to spare.
        raise_open_files(2 * total as u64 + 256);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.threads)
            .thread_name("redis-ha-lab-sim")
            .enable_io()
            .enable_time()
            .build()
            .map_err(SimError::Runtime)?;
        let reservations: Vec<PortReservation> = (0..total)
            .map(|_| PortReservation::reserve(false))
            .collect();
        let listeners = reservations
            .iter()
            .map(|r| {
                let port = r.port();
                StdListener::bind(("127.0.0.1", port))
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|source| SimError::Listen { port, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ident = Identity {
            ids: (0..total)
                .map(|i| hex_id(opts.seed, IdKind::Node, i as u64))
                .collect(),
            ports: reservations.iter().map(PortReservation::port).collect(),
            run_ids: (0..total)
                .map(|i| hex_id(opts.seed, IdKind::Run, i as u64))
                .collect(),
        };
        let shape = Shape {
            masters: opts.masters,
            replicas: opts.replicas_per_master,
            node_timeout: opts.node_timeout,
            timing: opts.timing,
            write_rate: opts.write_rate,
            seed: opts.seed,
        };
        let inner = Arc::new(Inner {
            ident,
            io: (0..total).map(|_| NodeIo::new()).collect(),
            world: Mutex::new(World::new(shape, Instant::now())),
        });
        {
            let _guard = runtime.enter();
            for (node, listener) in listeners.into_iter().enumerate() {
                let port = inner.ident.ports[node];
                let listener = tokio::net::TcpListener::from_std(listener)
                    .map_err(|source| SimError::Listen { port, source })?;
                runtime.spawn(server::listen(listener, node, inner.clone()));
            }
        }
        Ok(SimCluster {
            inner,
            runtime: Some(runtime),
            _reservations: reservations,
        })
    }

    /// Every node: index, address, id and shard.
    pub fn nodes(&self) -> Vec<SimNode> {
        let world = self.inner.lock_world();
        let ident = &self.inner.ident;
        (0..ident.ids.len())
            .map(|index| SimNode {
                index,
                addr: format!("127.0.0.1:{}", ident.ports[index]),
                id: ident.ids[index].clone(),
                shard: world.shard_of(index),
            })
            .collect()
    }

    /// `127.0.0.1:<port>` of every node, by index.
    pub fn node_addrs(&self) -> Vec<String> {
        self.nodes().into_iter().map(|n| n.addr).collect()
    }

    /// The node that serves the shard's slots once every scheduled change
    /// has spread: right after [`SimCluster::fail_master`], the replica
    /// about to be promoted.
    pub fn master_of(&self, shard: usize) -> Result<usize, SimError> {
        self.inner.lock_world().master_of(shard)
    }

    /// Fails the master of `shard` as Redis Cluster sees a master die, and
    /// returns its index. It stops answering at once (connections are
    /// accepted, nothing is answered); `node_timeout` later the other nodes
    /// flag it `fail?` within `pfail_spread` (`cluster_slots_pfail` counts
    /// its slots); `fail_after` later the failure is declared and every
    /// node flags it `fail` within `fail_spread` (`cluster_slots_fail`,
    /// `cluster_state:fail`); `promote_after` later its first replica that
    /// answers becomes master of its slots with the next config epoch, and
    /// the others learn it within `gossip_spread`. The old master's line
    /// stays `master,fail`, without slots. With no answering replica the
    /// shard stays down until [`SimCluster::resume`].
    ///
    /// Refused while a failover of the shard is still spreading.
    pub fn fail_master(&self, shard: usize) -> Result<usize, SimError> {
        let mut world = self.inner.lock_world();
        let failed = world.fail_master(shard, Instant::now())?;
        self.inner.io[failed].set_frozen(true);
        Ok(failed)
    }

    /// Stops a node answering, without the cluster reacting: its peers'
    /// lines show the pings it leaves unanswered, nothing more.
    pub fn freeze(&self, index: usize) -> Result<(), SimError> {
        let mut world = self.inner.lock_world();
        world.check_node(index)?;
        world.freeze(index, Instant::now());
        self.inner.io[index].set_frozen(true);
        Ok(())
    }

    /// Lets a frozen node answer again; what it was asked meanwhile is
    /// answered now. A master failed by [`SimCluster::fail_master`] comes
    /// back as a replica of the shard's new master (or, when no replica
    /// took over, as the master of its slots again), and the other nodes
    /// learn it within `gossip_spread`. Refused while its failover is
    /// still spreading; nothing to do for a node that is not frozen.
    pub fn resume(&self, index: usize) -> Result<(), SimError> {
        let mut world = self.inner.lock_world();
        world.check_node(index)?;
        world.resume(index, Instant::now())?;
        self.inner.io[index].set_frozen(false);
        Ok(())
    }

    /// Whether a node is frozen.
    pub fn is_frozen(&self, index: usize) -> Result<bool, SimError> {
        let world = self.inner.lock_world();
        world.check_node(index)?;
        Ok(world.is_frozen(index))
    }

    /// Opens a migration of `slot` from the master of shard `from` to the
    /// master of shard `to`: `[slot->-<to id>]` on the source's own line and
    /// `[slot-<-<from id>]` on the target's, each only in its own
    /// `CLUSTER NODES`, as Redis shows them.
    pub fn open_migration(&self, slot: u16, from: usize, to: usize) -> Result<(), SimError> {
        self.inner.lock_world().open_migration(slot, from, to)
    }

    /// Closes the migration of `slot`, leaving the slot where it was.
    pub fn close_migration(&self, slot: u16) -> Result<(), SimError> {
        self.inner.lock_world().close_migration(slot)
    }

    /// Sends one command to a node over RESP, as [`crate::Node::cmd`] does to a
    /// real one (new connection, 2 s timeout).
    pub fn cmd(&self, index: usize, args: &[&str]) -> Result<Reply, LabError> {
        resp::request(&self.admin(index), args)
    }

    /// `INFO <section>` of a node, parsed into its `key:value` pairs.
    pub fn info(&self, index: usize, section: &str) -> Result<HashMap<String, String>, LabError> {
        resp::info(&self.admin(index), section)
    }

    /// How the lab's client reaches a node. Panics on an index out of
    /// range, as [`crate::Cluster::node`] does on an unknown port.
    fn admin(&self, index: usize) -> Admin {
        let ports = &self.inner.ident.ports;
        let Some(&port) = ports.get(index) else {
            panic!(
                "redis-ha-lab: no node {index} in this simulated cluster (nodes 0..{})",
                ports.len()
            )
        };
        Admin {
            ip: Ipv4Addr::LOCALHOST,
            port,
            socket: None,
            auth: false,
        }
    }
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        // Without waiting for tasks: allowed even inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Raises the soft limit on open files towards `wanted` (up to the hard
/// limit): 1000 simulated nodes need about 2000 descriptors, more than the
/// common default of 1024. Best effort: a lower limit shows up as refused
/// connections, not as a failure here.
fn raise_open_files(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= wanted {
            return;
        }
        limit.rlim_cur = wanted.min(limit.rlim_max);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}
