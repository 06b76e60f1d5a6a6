//! The simulated cluster's state: what each node knows (its view, and the
//! changes still on their way to it), what is true (the view every node
//! settles on), replication streams, and the controls that schedule a
//! failure the way Redis Cluster goes through one.
//!
//! Changes reach nodes lazily: a node applies the ones that are due when it
//! is asked something. A frozen node is asked nothing, so it catches up on
//! what it missed when it is resumed, as a real node does.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::replies::WallClock;
use super::topology::{Change, Health, Role, View, SLOTS};
use super::{FailureTiming, SimError};

/// How far behind its master's stream a replica's own offset is.
pub(crate) const REPLICA_DELAY: Duration = Duration::from_millis(20);

/// After this long without its master answering, a replica reports the link
/// down (Redis's default `repl-timeout`).
pub(crate) const REPL_TIMEOUT: Duration = Duration::from_secs(60);

/// Transitions remembered before dead ones are swept.
const TRANSITION_CACHE: usize = 4096;

/// The cluster bus messages whose counts `CLUSTER INFO` prints, in Redis's
/// order. Pings, pongs and meets are derived from time (see `replies`);
/// these count what failures and rejoins sent.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Message {
    Fail = 0,
    AuthReq = 1,
    AuthAck = 2,
    Update = 3,
}

impl Message {
    pub(crate) const ALL: [Message; 4] = [
        Message::Fail,
        Message::AuthReq,
        Message::AuthAck,
        Message::Update,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Message::Fail => "fail",
            Message::AuthReq => "auth-req",
            Message::AuthAck => "auth-ack",
            Message::Update => "update",
        }
    }
}

/// Bus messages one node sent and received because of failures.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Messages {
    pub sent: [u64; 4],
    pub received: [u64; 4],
}

/// A change on its way to the nodes, with the bus messages it stands for.
#[derive(Debug)]
struct Delta {
    id: u64,
    change: Change,
    /// The node that sent it: the one that declared a failure, the replica
    /// that asked for votes, the master that told a rejoining node.
    from: Option<usize>,
}

/// What one node knows.
#[derive(Debug)]
struct Knowledge {
    view: Arc<View>,
    /// Sorted by arrival time, then by delta id.
    pending: VecDeque<(Instant, Arc<Delta>)>,
    messages: Messages,
}

/// A replication stream position that advances at the write rate while its
/// node runs as a master.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    value: u64,
    since: Instant,
    running: bool,
}

impl Clock {
    /// The offset at `t`; never before `since`.
    pub(crate) fn at(&self, t: Instant, rate: u64) -> u64 {
        if !self.running || t <= self.since {
            return self.value;
        }
        let ms = u64::try_from(t.duration_since(self.since).as_millis()).unwrap_or(u64::MAX);
        self.value.saturating_add(rate.saturating_mul(ms) / 1000)
    }

    fn stop(&mut self, now: Instant, rate: u64) {
        *self = Clock {
            value: self.at(now, rate),
            since: now,
            running: false,
        };
    }
}

/// A master's replication ids: its own, and the one it continued (with the
/// offset it took over at) after a promotion.
#[derive(Debug, Clone)]
pub(crate) struct ReplIds {
    pub id: String,
    pub previous: Option<(String, u64)>,
}

/// A slot in migration: shown on the source's and target's own lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Migration {
    pub slot: u16,
    pub from: usize,
    pub to: usize,
}

/// A master failed by [`World::fail_master`], until it is resumed.
#[derive(Debug, Clone, Copy)]
struct Failure {
    node: usize,
    shard: usize,
    promoted: Option<usize>,
    /// When the last node learns the outcome.
    settled: Instant,
}

/// The shape and pace of a simulated cluster.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub masters: usize,
    pub replicas: usize,
    pub node_timeout: Duration,
    pub timing: FailureTiming,
    pub write_rate: u64,
    pub seed: u64,
}

/// Everything that changes, behind one lock.
#[derive(Debug)]
pub(crate) struct World {
    pub shape: Shape,
    start: Instant,
    wall: WallClock,
    knowledge: Vec<Knowledge>,
    /// Every scheduled change applied: what the cluster settles on.
    truth: Arc<View>,
    next_view: u64,
    next_delta: u64,
    /// (from view, delta) → the view it leads to, so nodes that learn the
    /// same things share one view.
    transitions: HashMap<(u64, u64), Weak<View>>,
    failures: Vec<Failure>,
    /// Requested failures so far: varies the per-node spreads between them.
    failures_requested: u64,
    clocks: Vec<Clock>,
    replids: Vec<ReplIds>,
    /// Since when each node has been frozen; replaced, not changed, so a
    /// render can hold it without the lock.
    frozen: Arc<[Option<Instant>]>,
    migrations: Vec<Migration>,
}

impl World {
    pub(crate) fn new(shape: Shape, now: Instant) -> World {
        let total = shape.masters * (1 + shape.replicas);
        let initial = Arc::new(View::initial(0, shape.masters, shape.replicas));
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        World {
            knowledge: (0..total)
                .map(|_| Knowledge {
                    view: initial.clone(),
                    pending: VecDeque::new(),
                    messages: Messages::default(),
                })
                .collect(),
            truth: initial,
            next_view: 1,
            next_delta: 0,
            transitions: HashMap::new(),
            failures: Vec::new(),
            failures_requested: 0,
            clocks: vec![
                Clock {
                    value: 0,
                    since: now,
                    running: true,
                };
                total
            ],
            replids: (0..total)
                .map(|i| ReplIds {
                    id: hex_id(shape.seed, IdKind::Replication(0), i as u64),
                    previous: None,
                })
                .collect(),
            frozen: vec![None; total].into(),
            migrations: Vec::new(),
            start: now,
            wall: WallClock::new(now, wall),
            shape,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.knowledge.len()
    }

    pub(crate) fn wall_clock(&self) -> WallClock {
        self.wall
    }

    pub(crate) fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.start)
    }

    /// The shard a node belongs to for good: a master's own index, a
    /// replica's first master's.
    pub(crate) fn shard_of(&self, node: usize) -> usize {
        let masters = self.shape.masters;
        if node < masters {
            node
        } else {
            (node - masters) / self.shape.replicas.max(1)
        }
    }

    /// The node serving the shard's slots once every scheduled change has
    /// spread.
    pub(crate) fn master_of(&self, shard: usize) -> Result<usize, SimError> {
        if shard >= self.shape.masters {
            return Err(SimError::NoSuchShard {
                shard,
                shards: self.shape.masters,
            });
        }
        Ok((0..self.len())
            .filter(|&n| self.shard_of(n) == shard)
            .find(|&n| {
                let line = &self.truth.lines[n];
                line.role == Role::Master && !line.slots.is_empty()
            })
            .unwrap_or(shard))
    }

    pub(crate) fn check_node(&self, node: usize) -> Result<(), SimError> {
        if node < self.len() {
            Ok(())
        } else {
            Err(SimError::NoSuchNode {
                index: node,
                nodes: self.len(),
            })
        }
    }

    /// `node`'s view as of `now`, after applying what reached it by then.
    pub(crate) fn advance(&mut self, node: usize, now: Instant) -> Arc<View> {
        loop {
            let due = match self.knowledge[node].pending.front() {
                Some((at, _)) if *at <= now => self.knowledge[node].pending.pop_front(),
                _ => None,
            };
            let Some((_, delta)) = due else {
                return self.knowledge[node].view.clone();
            };
            let before = self.knowledge[node].view.clone();
            self.count_messages(node, &before, &delta);
            self.knowledge[node].view = self.transition(&before, &delta);
        }
    }

    fn transition(&mut self, from: &Arc<View>, delta: &Delta) -> Arc<View> {
        let key = (from.id, delta.id);
        if let Some(view) = self.transitions.get(&key).and_then(Weak::upgrade) {
            return view;
        }
        let view = Arc::new(from.apply(&delta.change, self.next_view));
        self.next_view += 1;
        if self.transitions.len() >= TRANSITION_CACHE {
            self.transitions.retain(|_, v| v.strong_count() > 0);
        }
        self.transitions.insert(key, Arc::downgrade(&view));
        view
    }

    /// Counts the bus messages a change stands for, at the node learning it.
    fn count_messages(&mut self, node: usize, before: &View, delta: &Delta) {
        let others = self.len() as u64 - 1;
        let masters_voting = before
            .lines
            .iter()
            .filter(|l| l.role == Role::Master && !l.slots.is_empty() && l.health == Health::Ok)
            .count() as u64;
        let m = &mut self.knowledge[node].messages;
        let is_sender = delta.from == Some(node);
        match delta.change {
            Change::Health {
                health: Health::Fail,
                ..
            } => {
                if is_sender {
                    m.sent[Message::Fail as usize] += others;
                } else {
                    m.received[Message::Fail as usize] += 1;
                }
            }
            Change::Health { .. } => {}
            Change::Promote { .. } => {
                if is_sender {
                    m.sent[Message::AuthReq as usize] += others;
                    m.received[Message::AuthAck as usize] += masters_voting;
                } else {
                    m.received[Message::AuthReq as usize] += 1;
                    let line = &before.lines[node];
                    if line.role == Role::Master && !line.slots.is_empty() {
                        m.sent[Message::AuthAck as usize] += 1;
                    }
                }
            }
            Change::Rejoin { node: back, .. } => {
                if node == back {
                    m.received[Message::Update as usize] += 1;
                } else if is_sender {
                    m.sent[Message::Update as usize] += 1;
                }
            }
        }
    }

    fn delta(&mut self, change: Change, from: Option<usize>) -> Arc<Delta> {
        self.next_delta += 1;
        Arc::new(Delta {
            id: self.next_delta,
            change,
            from,
        })
    }

    fn schedule(&mut self, node: usize, at: Instant, delta: &Arc<Delta>) {
        let pending = &mut self.knowledge[node].pending;
        let pos = pending.partition_point(|(t, d)| (*t, d.id) <= (at, delta.id));
        pending.insert(pos, (at, delta.clone()));
    }

    fn apply_to_truth(&mut self, change: &Change) {
        self.truth = Arc::new(self.truth.apply(change, self.next_view));
        self.next_view += 1;
    }

    /// A node-dependent share of `spread`, stable for one failure.
    fn spread(&self, spread: Duration, node: usize, salt: u64) -> Duration {
        let r = mix(self.shape.seed ^ mix(self.failures_requested ^ (salt << 32)) ^ node as u64);
        // 53 random bits as a fraction in [0, 1).
        spread.mul_f64((r >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// Fails the master of `shard` as Redis Cluster sees a master die: it
    /// stops answering; `node_timeout` later the nodes flag it `fail?` one
    /// by one, then `fail` spreads from the node that declared it, then its
    /// first replica that answers (if any) takes its slots with a new
    /// epoch and the others learn it. Returns the failed node.
    pub(crate) fn fail_master(&mut self, shard: usize, now: Instant) -> Result<usize, SimError> {
        let failed = self.master_of(shard)?;
        if let Some(f) = self
            .failures
            .iter()
            .find(|f| f.shard == shard && f.settled > now)
        {
            return Err(SimError::FailoverInProgress {
                shard,
                remaining: f.settled - now,
            });
        }
        if self.failures.iter().any(|f| f.node == failed) {
            return Err(SimError::AlreadyFailed { index: failed });
        }
        self.failures_requested += 1;
        let promoted = self
            .truth
            .replicas_of(failed)
            .find(|&r| self.frozen[r].is_none());
        let declarer = promoted.or_else(|| {
            (0..self.len()).find(|&n| {
                let line = &self.truth.lines[n];
                n != failed && self.frozen[n].is_none() && line.role == Role::Master
            })
        });
        self.freeze(failed, now);

        let t = &self.shape.timing;
        let (pfail_spread, fail_spread, gossip) = (t.pfail_spread, t.fail_spread, t.gossip_spread);
        let timed_out = now + self.shape.node_timeout;
        let declared = timed_out + t.fail_after;
        let promote_at = declared + t.promote_after;

        let pfail = self.delta(
            Change::Health {
                node: failed,
                health: Health::Pfail,
            },
            None,
        );
        let fail_change = Change::Health {
            node: failed,
            health: Health::Fail,
        };
        let fail = self.delta(fail_change.clone(), declarer);
        self.apply_to_truth(&fail_change);
        let promote = promoted.map(|replica| {
            let change = Change::Promote {
                replica,
                epoch: self.truth.current_epoch + 1,
            };
            self.apply_to_truth(&change);
            self.delta(change, Some(replica))
        });

        let mut settled = declared;
        for node in (0..self.len()).filter(|&n| n != failed) {
            let pfail_at = timed_out + self.spread(pfail_spread, node, 1);
            let fail_at = if Some(node) == declarer {
                declared
            } else {
                declared + self.spread(fail_spread, node, 2)
            };
            // A node told by the FAIL broadcast first never flags `fail?`.
            if pfail_at < fail_at {
                self.schedule(node, pfail_at, &pfail);
            }
            self.schedule(node, fail_at, &fail);
            settled = settled.max(fail_at);
        }
        if let (Some(replica), Some(promote)) = (promoted, &promote) {
            // The new master continues the old one's stream where it stopped.
            let offset = self.clocks[failed].at(now, self.shape.write_rate);
            self.clocks[replica] = Clock {
                value: offset,
                since: promote_at,
                running: true,
            };
            let old_id = self.replids[failed].id.clone();
            self.replids[replica] = ReplIds {
                id: hex_id(
                    self.shape.seed,
                    IdKind::Replication(self.failures_requested),
                    replica as u64,
                ),
                previous: Some((old_id, offset + 1)),
            };
            // The failed node learns it too, when it is resumed.
            for node in 0..self.len() {
                let at = if node == replica {
                    promote_at
                } else {
                    promote_at + self.spread(gossip, node, 3)
                };
                self.schedule(node, at, promote);
                settled = settled.max(at);
            }
        }
        self.failures.push(Failure {
            node: failed,
            shard,
            promoted,
            settled,
        });
        Ok(failed)
    }

    /// Stops a node answering, without the cluster reacting.
    pub(crate) fn freeze(&mut self, node: usize, now: Instant) {
        if self.frozen[node].is_some() {
            return;
        }
        self.clocks[node].stop(now, self.shape.write_rate);
        let mut frozen = self.frozen.to_vec();
        frozen[node] = Some(now);
        self.frozen = frozen.into();
    }

    /// Lets a frozen node answer again. A master failed by
    /// [`World::fail_master`] comes back as Redis brings it back: as a
    /// replica of the shard's master when a replica took over, else as the
    /// master of its slots with its failure cleared; it learns that at once,
    /// the others over the gossip spread.
    pub(crate) fn resume(&mut self, node: usize, now: Instant) -> Result<(), SimError> {
        if let Some(i) = self.failures.iter().position(|f| f.node == node) {
            let failure = self.failures[i];
            if failure.settled > now {
                return Err(SimError::FailoverInProgress {
                    shard: failure.shard,
                    remaining: failure.settled - now,
                });
            }
            self.failures.remove(i);
            let (change, from) = match failure.promoted {
                Some(_) => {
                    let master = self.master_of(failure.shard)?;
                    (Change::Rejoin { node, master }, Some(master))
                }
                None => (
                    Change::Health {
                        node,
                        health: Health::Ok,
                    },
                    None,
                ),
            };
            self.apply_to_truth(&change);
            let delta = self.delta(change, from);
            let gossip = self.shape.timing.gossip_spread;
            for other in 0..self.len() {
                let at = if other == node {
                    now
                } else {
                    now + self.spread(gossip, other, 4)
                };
                self.schedule(other, at, &delta);
            }
        }
        if self.frozen[node].is_some() {
            self.clocks[node] = Clock {
                since: now,
                running: true,
                ..self.clocks[node]
            };
            let mut frozen = self.frozen.to_vec();
            frozen[node] = None;
            self.frozen = frozen.into();
        }
        Ok(())
    }

    /// Opens a migration of `slot` from the master of `from` to the master
    /// of `to`.
    pub(crate) fn open_migration(
        &mut self,
        slot: u16,
        from: usize,
        to: usize,
    ) -> Result<(), SimError> {
        if usize::from(slot) >= SLOTS {
            return Err(SimError::NoSuchSlot { slot });
        }
        let (source, target) = (self.master_of(from)?, self.master_of(to)?);
        if source == target {
            return Err(SimError::SameShard { shard: from });
        }
        let owns = self.truth.lines[source]
            .slots
            .iter()
            .any(|&(a, b)| (a..=b).contains(&slot));
        if !owns {
            return Err(SimError::NotOwner { slot, shard: from });
        }
        if self.migrations.iter().any(|m| m.slot == slot) {
            return Err(SimError::MigrationOpen { slot });
        }
        self.migrations.push(Migration {
            slot,
            from: source,
            to: target,
        });
        self.migrations.sort_by_key(|m| m.slot);
        Ok(())
    }

    pub(crate) fn close_migration(&mut self, slot: u16) -> Result<(), SimError> {
        let before = self.migrations.len();
        self.migrations.retain(|m| m.slot != slot);
        if self.migrations.len() == before {
            return Err(SimError::NoMigration { slot });
        }
        Ok(())
    }

    pub(crate) fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    pub(crate) fn frozen(&self) -> &Arc<[Option<Instant>]> {
        &self.frozen
    }

    pub(crate) fn is_frozen(&self, node: usize) -> bool {
        self.frozen[node].is_some()
    }

    pub(crate) fn clock(&self, node: usize) -> &Clock {
        &self.clocks[node]
    }

    pub(crate) fn replids(&self, node: usize) -> &ReplIds {
        &self.replids[node]
    }

    pub(crate) fn messages(&self, node: usize) -> &Messages {
        &self.knowledge[node].messages
    }
}

/// splitmix64: a cheap, well-spread hash of a counter.
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What a [`hex_id`] names: ids of different kinds never collide.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IdKind {
    Node,
    Run,
    /// A replication stream; the number of failures requested before it
    /// started tells a promoted replica's new stream from its first one.
    Replication(u64),
}

/// A 40-hex-digit id (node ids, run ids, replication ids), stable for a seed.
pub(crate) fn hex_id(seed: u64, kind: IdKind, n: u64) -> String {
    let kind = match kind {
        IdKind::Node => 0,
        IdKind::Run => 1,
        IdKind::Replication(generation) => generation.saturating_add(2),
    };
    let a = mix(mix(mix(seed) ^ kind) ^ n);
    let b = mix(a ^ 1);
    let c = mix(a ^ 2);
    format!("{a:016x}{b:016x}{:08x}", c >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(masters: usize, replicas: usize) -> Shape {
        Shape {
            masters,
            replicas,
            node_timeout: Duration::from_secs(1),
            timing: FailureTiming {
                pfail_spread: Duration::ZERO,
                fail_after: Duration::from_millis(300),
                fail_spread: Duration::ZERO,
                promote_after: Duration::from_millis(700),
                gossip_spread: Duration::ZERO,
            },
            write_rate: 1000,
            seed: 7,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_failure_goes_through_pfail_fail_and_promotion_in_time() {
        let t0 = Instant::now();
        let mut w = World::new(shape(3, 1), t0);
        assert_eq!(w.fail_master(1, t0).unwrap(), 1);
        assert!(w.is_frozen(1));
        // The eventual master is known at once.
        assert_eq!(w.master_of(1).unwrap(), 4);

        let v = w.advance(0, t0 + ms(999));
        assert_eq!(v.lines[1].health, Health::Ok);
        let v = w.advance(0, t0 + ms(1000));
        assert_eq!(v.lines[1].health, Health::Pfail);
        assert!(v.summary.state_ok());
        let v = w.advance(0, t0 + ms(1300));
        assert_eq!(v.lines[1].health, Health::Fail);
        assert!(!v.summary.state_ok());
        let v = w.advance(0, t0 + ms(2000));
        assert_eq!(v.lines[4].role, Role::Master);
        assert_eq!(v.current_epoch, 6);
        assert!(v.summary.state_ok());

        // Nodes that learnt the same things share one view.
        let other = w.advance(2, t0 + ms(2000));
        assert!(Arc::ptr_eq(&v, &other));

        // The declaring replica sent FAIL and asked for votes; masters voted.
        let declarer = w.advance(4, t0 + ms(2000));
        assert_eq!(declarer.lines[4].role, Role::Master);
        assert_eq!(w.messages(4).sent[Message::Fail as usize], 5);
        assert_eq!(w.messages(4).received[Message::AuthAck as usize], 2);
        assert_eq!(w.messages(0).sent[Message::AuthAck as usize], 1);
        // Counted as each node learns the change.
        assert_eq!(w.messages(3).received[Message::AuthReq as usize], 0);
        w.advance(3, t0 + ms(2000));
        assert_eq!(w.messages(3).received[Message::AuthReq as usize], 1);
        assert_eq!(w.messages(3).sent[Message::AuthAck as usize], 0);
    }

    #[test]
    fn resume_waits_for_the_failover_then_rejoins_as_a_replica() {
        let t0 = Instant::now();
        let mut w = World::new(shape(3, 1), t0);
        w.fail_master(0, t0).unwrap();
        let err = w.resume(0, t0 + ms(500)).unwrap_err();
        assert!(matches!(err, SimError::FailoverInProgress { shard: 0, .. }));
        assert!(matches!(
            w.fail_master(0, t0 + ms(500)),
            Err(SimError::FailoverInProgress { .. })
        ));
        w.resume(0, t0 + ms(2000)).unwrap();
        assert!(!w.is_frozen(0));
        let own = w.advance(0, t0 + ms(2000));
        assert_eq!(own.lines[0].role, Role::Replica { of: 3 });
        assert_eq!(own.lines[3].role, Role::Master);
        let peer = w.advance(1, t0 + ms(2000));
        assert_eq!(peer.lines[0].role, Role::Replica { of: 3 });
        assert_eq!(peer.lines[0].health, Health::Ok);
        assert_eq!(w.messages(0).received[Message::Update as usize], 1);
        w.advance(3, t0 + ms(2000));
        assert_eq!(w.messages(3).sent[Message::Update as usize], 1);
    }

    #[test]
    fn without_an_answering_replica_the_shard_stays_down_until_resumed() {
        let t0 = Instant::now();
        let mut w = World::new(shape(3, 1), t0);
        w.freeze(3, t0);
        w.fail_master(0, t0).unwrap();
        let v = w.advance(1, t0 + ms(5000));
        assert_eq!(v.lines[0].health, Health::Fail);
        assert_eq!(v.lines[0].slots.to_vec(), [(0, 5460)]);
        assert!(!v.summary.state_ok());
        assert_eq!(w.master_of(0).unwrap(), 0);
        w.resume(0, t0 + ms(5000)).unwrap();
        let v = w.advance(1, t0 + ms(5000));
        assert!(v.summary.state_ok());
        // The master that declared the failure sent it to every other node.
        assert_eq!(w.messages(1).sent[Message::Fail as usize], 5);
    }

    #[test]
    fn spreads_order_nodes_but_each_sees_pfail_before_fail() {
        let t0 = Instant::now();
        let mut s = shape(10, 1);
        s.timing.pfail_spread = ms(300);
        s.timing.fail_spread = ms(200);
        s.timing.gossip_spread = ms(200);
        let mut w = World::new(s, t0);
        w.fail_master(0, t0).unwrap();
        let mut pfail_seen = 0;
        for step in (1000..=2400).step_by(10) {
            for node in 1..20 {
                let v = w.advance(node, t0 + ms(step));
                if v.lines[0].health == Health::Pfail {
                    pfail_seen += 1;
                }
            }
        }
        assert!(pfail_seen > 0, "some node flags fail? before fail");
        for node in 1..20 {
            let v = w.advance(node, t0 + ms(2400));
            assert_eq!(v.lines[10].role, Role::Master, "node {node}");
            assert_eq!(v.lines[0].health, Health::Fail);
        }
    }

    #[test]
    fn offsets_follow_the_stream_and_stop_when_frozen() {
        let t0 = Instant::now();
        let mut w = World::new(shape(1, 1), t0);
        assert_eq!(w.clock(0).at(t0 + ms(1500), 1000), 1500);
        w.freeze(0, t0 + ms(1000));
        assert_eq!(w.clock(0).at(t0 + ms(5000), 1000), 1000);
        w.resume(0, t0 + ms(5000)).unwrap();
        assert_eq!(w.clock(0).at(t0 + ms(6000), 1000), 2000);
    }

    #[test]
    fn migrations_are_checked() {
        let t0 = Instant::now();
        let mut w = World::new(shape(3, 0), t0);
        w.open_migration(100, 0, 1).unwrap();
        assert_eq!(
            w.migrations(),
            [Migration {
                slot: 100,
                from: 0,
                to: 1
            }]
        );
        assert!(matches!(
            w.open_migration(100, 0, 2),
            Err(SimError::MigrationOpen { slot: 100 })
        ));
        assert!(matches!(
            w.open_migration(6000, 0, 1),
            Err(SimError::NotOwner { .. })
        ));
        assert!(matches!(
            w.open_migration(16384, 0, 1),
            Err(SimError::NoSuchSlot { .. })
        ));
        assert!(matches!(
            w.open_migration(1, 0, 0),
            Err(SimError::SameShard { .. })
        ));
        assert!(matches!(
            w.open_migration(1, 0, 3),
            Err(SimError::NoSuchShard { .. })
        ));
        w.close_migration(100).unwrap();
        assert!(matches!(
            w.close_migration(100),
            Err(SimError::NoMigration { slot: 100 })
        ));
    }

    #[test]
    fn ids_are_40_hex_digits_and_distinct() {
        let ids: Vec<String> = (0..100)
            .flat_map(|n| {
                [IdKind::Node, IdKind::Run, IdKind::Replication(1)].map(|k| hex_id(1, k, n))
            })
            .collect();
        assert!(ids
            .iter()
            .all(|id| id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit())));
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
    }
}
