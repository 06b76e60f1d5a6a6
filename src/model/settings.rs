//! A data node's settings that decide how a failover goes (`CONFIG GET`),
//! read at a slow cadence for the findings: plain data, and what each
//! value means.

use std::collections::BTreeMap;

/// A setting the findings read, by the name `CONFIG GET` knows it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Param {
    /// `min-replicas-to-write`: how many replicas must be within the lag
    /// below for the master to accept writes (0: it always does).
    MinReplicasToWrite,
    /// `min-replicas-max-lag`: seconds since a replica's last ACK for it
    /// to count.
    MinReplicasMaxLag,
    /// `cluster-require-full-coverage`: whether a node stops serving every
    /// key when any slot is uncovered.
    RequireFullCoverage,
    /// `cluster-allow-replica-migration` (Redis 6.2+): whether a replica
    /// moves to a master left without one.
    AllowReplicaMigration,
    /// `cluster-migration-barrier`: the replicas a master keeps before one
    /// may migrate.
    MigrationBarrier,
    /// `availability-zone` (Valkey 8+): where the node runs, as its
    /// operator names it.
    AvailabilityZone,
    /// `cluster-node-timeout`: milliseconds before a node is suspected.
    NodeTimeout,
    /// `cluster-replica-validity-factor`: a replica whose data is older
    /// than this many node timeouts (plus the ping period) never starts a
    /// failover; 0: it always may.
    ReplicaValidityFactor,
    /// `repl-ping-replica-period`: seconds between the master's pings.
    ReplPingReplicaPeriod,
}

impl Param {
    /// Every setting, in the order they are read.
    pub const ALL: [Param; 9] = [
        Param::MinReplicasToWrite,
        Param::MinReplicasMaxLag,
        Param::RequireFullCoverage,
        Param::AllowReplicaMigration,
        Param::MigrationBarrier,
        Param::AvailabilityZone,
        Param::NodeTimeout,
        Param::ReplicaValidityFactor,
        Param::ReplPingReplicaPeriod,
    ];

    /// The name `CONFIG GET` takes.
    pub fn name(self) -> &'static str {
        match self {
            Param::MinReplicasToWrite => "min-replicas-to-write",
            Param::MinReplicasMaxLag => "min-replicas-max-lag",
            Param::RequireFullCoverage => "cluster-require-full-coverage",
            Param::AllowReplicaMigration => "cluster-allow-replica-migration",
            Param::MigrationBarrier => "cluster-migration-barrier",
            Param::AvailabilityZone => "availability-zone",
            Param::NodeTimeout => "cluster-node-timeout",
            Param::ReplicaValidityFactor => "cluster-replica-validity-factor",
            Param::ReplPingReplicaPeriod => "repl-ping-replica-period",
        }
    }

    /// Whether it means anything on a node of this kind: the cluster
    /// settings are not asked of a sentinel-watched node.
    pub fn applies(self, cluster: bool) -> bool {
        cluster
            || matches!(
                self,
                Param::MinReplicasToWrite | Param::MinReplicasMaxLag | Param::AvailabilityZone
            )
    }
}

/// What a node's settings read said.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingsRead {
    /// The values the server has; a setting it does not know (an older
    /// version) is absent.
    Read(Settings),
    /// The server refused `CONFIG GET` (most often the agent's user may
    /// not run it: `NOPERM`): the checks that need it cannot tell. The
    /// server's words.
    Refused(String),
}

/// Settings by name, as the server gave them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings(BTreeMap<Param, String>);

impl Settings {
    /// Records one value.
    pub fn set(&mut self, param: Param, value: String) {
        self.0.insert(param, value);
    }

    /// A numeric setting; `None` when absent or not a number.
    pub fn number(&self, param: Param) -> Option<u64> {
        self.0.get(&param)?.parse().ok()
    }

    /// A yes/no setting; `None` when absent or neither.
    pub fn flag(&self, param: Param) -> Option<bool> {
        match self.0.get(&param)?.as_str() {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        }
    }

    /// A text setting; `None` when absent or empty (an unset zone).
    pub fn text(&self, param: Param) -> Option<&str> {
        self.0
            .get(&param)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_by_kind() {
        let mut s = Settings::default();
        s.set(Param::MinReplicasToWrite, "2".into());
        s.set(Param::RequireFullCoverage, "no".into());
        s.set(Param::AvailabilityZone, String::new());
        s.set(Param::MigrationBarrier, "many".into());
        assert_eq!(s.number(Param::MinReplicasToWrite), Some(2));
        assert_eq!(s.number(Param::MigrationBarrier), None);
        assert_eq!(s.number(Param::MinReplicasMaxLag), None);
        assert_eq!(s.flag(Param::RequireFullCoverage), Some(false));
        assert_eq!(s.flag(Param::MinReplicasToWrite), None);
        assert_eq!(s.text(Param::AvailabilityZone), None);
        s.set(Param::AvailabilityZone, "eu-1a".into());
        assert_eq!(s.text(Param::AvailabilityZone), Some("eu-1a"));
    }

    #[test]
    fn cluster_settings_only_on_cluster_nodes() {
        let sentinel: Vec<_> = Param::ALL.iter().filter(|p| p.applies(false)).collect();
        assert_eq!(
            sentinel,
            [
                &Param::MinReplicasToWrite,
                &Param::MinReplicasMaxLag,
                &Param::AvailabilityZone
            ]
        );
        assert!(Param::ALL.iter().all(|p| p.applies(true)));
    }
}
