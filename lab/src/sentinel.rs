//! A master, its replicas and the sentinels watching them.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use crate::net::Net;
use crate::node::{Node, Role};
use crate::security::Security;
use crate::{wait_until, LabDir, LabError, Reply};

/// How long [`SentinelGroup::start`] waits for replication and sentinel discovery.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Shape of a [`SentinelGroup`].
#[derive(Debug, Clone)]
pub struct SentinelOpts {
    pub master_name: String,
    pub replicas: usize,
    pub sentinels: usize,
    pub quorum: u32,
    pub down_after_ms: u64,
    pub failover_timeout_ms: u64,
    /// TLS and ACL users (none by default).
    pub security: Security,
    /// Servers and sentinels announce this hostname instead of 127.0.0.1
    /// (`replica-announce-ip`, `sentinel announce-hostnames`), and
    /// sentinels monitor the master by it: `Some("localhost")` in tests.
    pub hostname: Option<String>,
    /// Each server and sentinel on its own host of this network, to
    /// partition them.
    pub net: Option<Net>,
}

impl Default for SentinelOpts {
    /// `mymaster`, 2 replicas, 3 sentinels, quorum 2, down after 1 s, failover timeout 4 s:
    /// the smallest realistic group, tuned so a failover completes in a few seconds.
    fn default() -> Self {
        SentinelOpts {
            master_name: "mymaster".to_string(),
            replicas: 2,
            sentinels: 3,
            quorum: 2,
            down_after_ms: 1000,
            failover_timeout_ms: 4000,
            security: Security::default(),
            hostname: None,
            net: None,
        }
    }
}

/// A running sentinel deployment. Everything is killed and the directory removed on drop.
#[derive(Debug)]
pub struct SentinelGroup {
    pub master_name: String,
    /// Data nodes; `nodes[0]` is the initial master, the rest its replicas.
    pub nodes: Vec<Node>,
    pub sentinels: Vec<Node>,
    dir: LabDir,
    /// Kept until the nodes are gone (fields drop in order).
    net: Option<Net>,
}

impl SentinelGroup {
    /// Starts the master, then the replicas, then the sentinels, and returns once the
    /// group is settled: every replica has `master_link_status:up`, and every sentinel
    /// monitors the master with all replicas and all other sentinels discovered. Tests
    /// can therefore fail over right away without racing sentinel discovery.
    ///
    /// Panics with the missing piece (and server logs on startup failure) when the
    /// group is not ready within 30 s.
    pub fn start(opts: SentinelOpts) -> SentinelGroup {
        assert!(
            opts.sentinels >= 1,
            "redis-ha-lab: a sentinel group needs a sentinel"
        );
        assert!(
            opts.quorum >= 1,
            "redis-ha-lab: sentinel quorum must be at least 1"
        );
        let dir = LabDir::new();

        // The master first, so replicas find it on their first connection attempt.
        let security = &opts.security;
        let hostname = opts.hostname.as_deref();
        assert!(
            hostname.is_none() || opts.net.is_none(),
            "redis-ha-lab: hostnames resolve to loopback, so not on a lab network"
        );
        let host = |label: &str| opts.net.as_ref().map(|net| net.host(label));
        let master = Node::spawn(
            dir.path(),
            Role::Data {
                replica_of: None,
                hostname,
            },
            security,
            host("data"),
        );
        master.wait_started();
        let master_port = master.port();
        let master_at = SocketAddrV4::new(master.ip(), master_port);
        let mut nodes = vec![master];
        for _ in 0..opts.replicas {
            nodes.push(Node::spawn(
                dir.path(),
                Role::Data {
                    replica_of: Some(master_at),
                    hostname,
                },
                security,
                host("data"),
            ));
        }
        nodes.iter().for_each(Node::wait_started);
        wait_until(READY_TIMEOUT, "replicas to sync with the master", || {
            replicas_in_sync(&nodes[1..])
        });

        // Sentinels only after the replicas are online: a sentinel learns replicas from
        // the master's INFO, which it otherwise re-reads only every 10 s.
        let name = &opts.master_name;
        let mut directives = vec![
            format!(
                "sentinel monitor {name} {} {master_port} {}",
                hostname.map_or(master_at.ip().to_string(), str::to_string),
                opts.quorum
            ),
            format!(
                "sentinel down-after-milliseconds {name} {}",
                opts.down_after_ms
            ),
            format!(
                "sentinel failover-timeout {name} {}",
                opts.failover_timeout_ms
            ),
            format!("sentinel parallel-syncs {name} 1"),
        ];
        directives.extend(security.monitor_lines(name));
        if let Some(host) = hostname {
            directives.extend([
                "sentinel resolve-hostnames yes".to_string(),
                "sentinel announce-hostnames yes".to_string(),
                format!("sentinel announce-ip {host}"),
            ]);
        }
        let sentinels: Vec<Node> = (0..opts.sentinels)
            .map(|_| {
                Node::spawn(
                    dir.path(),
                    Role::Sentinel {
                        directives: &directives,
                    },
                    security,
                    host("sentinel"),
                )
            })
            .collect();
        sentinels.iter().for_each(Node::wait_started);

        let group = SentinelGroup {
            master_name: opts.master_name.clone(),
            nodes,
            sentinels,
            dir,
            net: opts.net.clone(),
        };
        wait_until(
            READY_TIMEOUT,
            "sentinels to discover all replicas and each other",
            || group.sentinels_settled(master_port, opts.replicas),
        );
        group
    }

    /// The lab network the servers are on, if any (`opts.net`).
    pub fn net(&self) -> Option<&Net> {
        self.net.as_ref()
    }

    /// The directory holding every node's config (`<port>.conf`) and log (`<port>.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The master port according to the first sentinel that answers, asking them in turn
    /// (frozen or stopped sentinels are skipped); `None` if none answers.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels
            .iter()
            .filter(|s| reachable(s))
            .find_map(|s| self.sentinel_master_port(s).ok())
    }

    /// A data node or sentinel of this group by port. Panics if unknown.
    pub fn node(&self, port: u16) -> &Node {
        self.nodes
            .iter()
            .chain(&self.sentinels)
            .find(|n| n.port() == port)
            .unwrap_or_else(|| {
                panic!("redis-ha-lab: no node on port {port} in this sentinel group")
            })
    }

    /// Mutable access to a data node or sentinel by port. Panics if unknown.
    pub fn node_mut(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .chain(&mut self.sentinels)
            .find(|n| n.port() == port)
            .unwrap_or_else(|| {
                panic!("redis-ha-lab: no node on port {port} in this sentinel group")
            })
    }

    /// Waits until every reachable sentinel names the same master and it is not
    /// `old_port`, and returns that port. Unreachable (killed, frozen, not answering)
    /// sentinels are ignored; at least one must answer. Panics on timeout with what each
    /// sentinel said last.
    pub fn wait_for_new_master(&self, old_port: u16, timeout: Duration) -> u16 {
        wait_until(
            timeout,
            &format!("sentinels to agree on a master other than port {old_port}"),
            || {
                let answers: Vec<(u16, u16)> = self
                    .sentinels
                    .iter()
                    .filter(|s| reachable(s))
                    .filter_map(|s| Some((s.port(), self.sentinel_master_port(s).ok()?)))
                    .collect();
                let Some(&(_, first)) = answers.first() else {
                    return Err("no sentinel answered".to_string());
                };
                if first != old_port && answers.iter().all(|&(_, port)| port == first) {
                    Ok(first)
                } else {
                    Err(format!("(sentinel port, master port) = {answers:?}"))
                }
            },
        )
    }

    fn sentinel_master_port(&self, sentinel: &Node) -> Result<u16, LabError> {
        let reply = sentinel.cmd(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.master_name])?;
        let port = match &reply {
            Reply::Array(items) if items.len() == 2 => items[1].as_int(),
            _ => None,
        };
        port.and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| LabError::Protocol {
                addr: sentinel.addr(),
                command: format!("SENTINEL GET-MASTER-ADDR-BY-NAME {}", self.master_name),
                detail: format!("expected [ip, port], got {reply:?}"),
            })
    }

    /// `Ok` when every sentinel monitors `master_port` as an up master, sees `replicas`
    /// up replicas and all the other sentinels.
    fn sentinels_settled(&self, master_port: u16, replicas: usize) -> Result<(), String> {
        let name = self.master_name.as_str();
        let others = self.sentinels.len() - 1;
        for sentinel in &self.sentinels {
            let who = sentinel.addr();
            let master = sentinel
                .cmd(&["SENTINEL", "MASTER", name])
                .map_err(|e| e.to_string())?;
            let master = fields(&master);
            let field = |key: &str| master.get(key).map(String::as_str).unwrap_or("?");
            let expected = [
                ("port", master_port.to_string()),
                ("flags", "master".to_string()),
                ("num-slaves", replicas.to_string()),
                ("num-other-sentinels", others.to_string()),
            ];
            for (key, want) in &expected {
                if field(key) != want {
                    return Err(format!(
                        "sentinel {who}: {key} is {} (want {want})",
                        field(key)
                    ));
                }
            }
            // A replica counts as discovered only once the sentinel talks to it
            // (plain `slave` flags, no `disconnected`/`s_down`): before that it cannot
            // be promoted, and failover tests would wait on discovery instead.
            let listed = sentinel
                .cmd(&["SENTINEL", "REPLICAS", name])
                .map_err(|e| e.to_string())?;
            if let Reply::Array(entries) = &listed {
                for entry in entries.iter().map(fields) {
                    let flags = entry.get("flags").map(String::as_str).unwrap_or("?");
                    if flags != "slave" {
                        let port = entry.get("port").map(String::as_str).unwrap_or("?");
                        return Err(format!("sentinel {who}: replica {port} has flags {flags}"));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for SentinelGroup {
    /// Sentinels go first so they do not start failovers while the data nodes die.
    fn drop(&mut self) {
        self.sentinels.iter_mut().for_each(Node::kill);
        self.nodes.iter_mut().for_each(Node::kill);
    }
}

/// Running, not frozen: worth a 2 s request.
fn reachable(node: &Node) -> bool {
    node.is_running() && !node.is_frozen()
}

fn replicas_in_sync(replicas: &[Node]) -> Result<(), String> {
    for replica in replicas {
        let info = replica.info("replication").map_err(|e| e.to_string())?;
        let link = info.get("master_link_status").map(String::as_str);
        if link != Some("up") {
            return Err(format!(
                "replica {}: master_link_status is {}",
                replica.addr(),
                link.unwrap_or("missing")
            ));
        }
    }
    Ok(())
}

/// A sentinel reply of the form `[key, value, key, value, …]` as a map.
fn fields(reply: &Reply) -> HashMap<String, String> {
    let Reply::Array(items) = reply else {
        return HashMap::new();
    };
    items
        .chunks_exact(2)
        .filter_map(|pair| Some((pair[0].as_str()?.to_string(), pair[1].as_str()?.to_string())))
        .collect()
}
