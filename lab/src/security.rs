//! Secured topologies: TLS-only servers and ACL users with the `default`
//! user off, as production deployments run them.
//!
//! A secured server still has to be driven by the lab (cluster setup,
//! checks, `SENTINEL` queries) without the lab speaking TLS: it listens on a
//! Unix socket in the topology's directory as well, which is no network
//! port, and the lab authenticates there as its own admin user.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// How a topology's servers are secured. The default is neither: plain TCP
/// and the `default` user, as before.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// Serve TLS only (`port 0`, `tls-port`), for clients, replication, the
    /// cluster bus and sentinels alike.
    pub tls: Option<TlsFiles>,
    /// ACL users, with `user default off`.
    pub acl: Option<Acl>,
}

/// PEM files of a server certificate (for 127.0.0.1) and the CA that
/// signed it; servers use the same certificate as clients of each other.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Refuse clients without a certificate signed by the CA (mutual TLS).
    pub require_client_cert: bool,
}

/// ACL users besides the lab's own: full `user ...` directives.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    /// For data nodes (also cluster nodes).
    pub node_users: Vec<String>,
    /// For sentinels.
    pub sentinel_users: Vec<String>,
}

/// The lab's own user on secured servers; replicas and sentinels use it too.
pub(crate) const ADMIN_USER: &str = "lab-admin";
pub(crate) const ADMIN_PASSWORD: &str = "lab-admin-password";

/// How the lab reaches one server.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    /// 127.0.0.1, or the server's own address on a lab network.
    pub ip: Ipv4Addr,
    pub port: u16,
    /// Set on secured servers.
    pub socket: Option<PathBuf>,
    /// Send `AUTH lab-admin ...` first.
    pub auth: bool,
}

impl Security {
    fn secured(&self) -> bool {
        self.tls.is_some() || self.acl.is_some()
    }

    pub(crate) fn admin(&self, ip: Ipv4Addr, port: u16, dir: &Path) -> Admin {
        Admin {
            ip,
            port,
            socket: self.secured().then(|| dir.join(format!("{port}.sock"))),
            auth: self.acl.is_some(),
        }
    }

    /// Config lines for a server listening on `port`: how it listens, whom
    /// it lets in, and how it authenticates to its master and peers.
    pub(crate) fn config_lines(&self, port: u16, dir: &Path, sentinel: bool) -> Vec<String> {
        let mut lines = Vec::new();
        match &self.tls {
            None => lines.push(format!("port {port}")),
            Some(tls) => {
                lines.push("port 0".into());
                lines.push(format!("tls-port {port}"));
                lines.push(format!("tls-cert-file \"{}\"", tls.cert_file.display()));
                lines.push(format!("tls-key-file \"{}\"", tls.key_file.display()));
                lines.push(format!("tls-ca-cert-file \"{}\"", tls.ca_file.display()));
                let clients = if tls.require_client_cert { "yes" } else { "no" };
                lines.push(format!("tls-auth-clients {clients}"));
                // Replication, and a sentinel's links to servers and to
                // other sentinels.
                lines.push("tls-replication yes".into());
                if !sentinel {
                    lines.push("tls-cluster yes".into());
                }
            }
        }
        if self.secured() {
            lines.push(format!(
                "unixsocket \"{}\"",
                dir.join(format!("{port}.sock")).display()
            ));
            lines.push("unixsocketperm 700".into());
        }
        if let Some(acl) = &self.acl {
            lines.push("user default off".into());
            lines.push(format!(
                "user {ADMIN_USER} on >{ADMIN_PASSWORD} ~* &* +@all"
            ));
            let users = if sentinel {
                &acl.sentinel_users
            } else {
                &acl.node_users
            };
            lines.extend(users.iter().cloned());
            if sentinel {
                lines.push(format!("sentinel sentinel-user {ADMIN_USER}"));
                lines.push(format!("sentinel sentinel-pass {ADMIN_PASSWORD}"));
            } else {
                lines.push(format!("masteruser {ADMIN_USER}"));
                lines.push(format!("masterauth {ADMIN_PASSWORD}"));
            }
        }
        lines
    }

    /// `sentinel ...` lines a sentinel needs to log in to master `name`.
    pub(crate) fn monitor_lines(&self, name: &str) -> Vec<String> {
        match self.acl {
            None => Vec::new(),
            Some(_) => vec![
                format!("sentinel auth-user {name} {ADMIN_USER}"),
                format!("sentinel auth-pass {name} {ADMIN_PASSWORD}"),
            ],
        }
    }
}
