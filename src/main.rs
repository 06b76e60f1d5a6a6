//! The `redis-ha-exporter` command: runs the agent, checks a config, asks
//! a running agent whether it is healthy, or prints a cluster's slot
//! coverage once.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use redis_ha_exporter::config::{self, Config, WebConfig};
use redis_ha_exporter::model::snapshot::Snapshot;
use redis_ha_exporter::web;
use redis_ha_exporter::{healthcheck, http, monitor, notify, store, supervise};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Watches Redis Sentinel and Redis Cluster deployments and serves what it
/// sees as Prometheus metrics.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The YAML configuration file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["sentinels", "clusters"])]
    config: Option<PathBuf>,
    /// Watch the sentinel set reachable at ADDR (host:port); repeat for more seeds.
    #[arg(long = "sentinel", value_name = "ADDR")]
    sentinels: Vec<String>,
    /// Watch the cluster reachable at ADDR (host:port); repeat for more seeds.
    #[arg(long = "cluster", value_name = "ADDR")]
    clusters: Vec<String>,
    /// Listen address for HTTP, overriding the config.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Web config file (TLS, basic auth; exporter-toolkit format),
    /// overriding the config's `web_config_file`.
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config_file: Option<PathBuf>,
    /// Log filter, e.g. `info` or `redis_ha_exporter=debug`.
    #[arg(long, env = "REDIS_HA_LOG", default_value = "info")]
    log: String,
}

#[derive(Subcommand)]
enum Command {
    /// Check a configuration file (and that its secrets can be read), then exit.
    CheckConfig {
        /// The YAML configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// A web config file to check instead of the config's `web_config_file`.
        #[arg(long = "web.config.file", value_name = "FILE")]
        web_config_file: Option<PathBuf>,
    },
    /// Ask a running agent's /-/healthy: exit 0 when it answers 200, 1
    /// otherwise, with the reason on stderr. For container health checks.
    Healthcheck {
        /// The URL to ask [default: /-/healthy at the config's listen
        /// address, else http://127.0.0.1:9478/-/healthy].
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// The agent's configuration: where it listens, its web config.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The agent's web config file, overriding the config's
        /// `web_config_file`: whether it serves HTTPS, and the client
        /// certificate to show when it requires one.
        #[arg(long = "web.config.file", value_name = "FILE")]
        web_config_file: Option<PathBuf>,
        /// How long to wait for the answer.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Print a cluster's slot coverage once; exit 1 if any slot is uncovered
    /// (no master, or a master in fail), 2 if no node answered.
    Slots {
        /// A node of the cluster (host:port); repeat for more seeds.
        #[arg(long = "cluster", value_name = "ADDR", required = true)]
        seeds: Vec<String>,
        /// How long to wait for every node to answer.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig {
        config,
        web_config_file,
    }) = &cli.command
    {
        let checked = config::load(config).and_then(|c| {
            let web = config::web_config(web_config_file.as_deref(), Some(&c))?;
            Ok((c, web))
        });
        return match checked {
            Ok((c, web)) => {
                println!(
                    "{}: OK ({} deployments), endpoint: {}",
                    config.display(),
                    c.deployments.len(),
                    web.summary()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(Command::Healthcheck {
        url,
        config,
        web_config_file,
        timeout,
    }) = &cli.command
    {
        let checked = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                rt.block_on(healthcheck::run(
                    url.as_deref(),
                    config.as_deref(),
                    web_config_file.as_deref(),
                    *timeout,
                ))
                .map_err(|e| e.to_string())
            });
        // Exit 1, not 2, for every failure: a container health check knows
        // only 0 (healthy) and 1 (unhealthy).
        return match checked {
            Ok(what) => {
                println!("healthy: {what}");
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("unhealthy: {why}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Slots { seeds, wait }) = &cli.command {
        init_logs("warn");
        let config = match config::from_flags(None, &[], seeds) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build();
        return match runtime.map(|rt| rt.block_on(slots(config, *wait))) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    let loaded = match &cli.config {
        Some(path) => config::load(path),
        None if cli.sentinels.is_empty() && cli.clusters.is_empty() => {
            eprintln!(
                "error: nothing to watch: give --config FILE, or --sentinel ADDR / --cluster ADDR"
            );
            return ExitCode::from(2);
        }
        None => config::from_flags(None, &cli.sentinels, &cli.clusters),
    };
    let mut config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = cli.listen {
        config.listen = listen;
    }
    let web = match config::web_config(cli.web_config_file.as_deref(), Some(&config)) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logs(&cli.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    match runtime
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(config, web)))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, plain unless it is a terminal; `filter` as in RUST_LOG.
fn init_logs(filter: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// The running parts of the agent, without the HTTP server.
struct Agent {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Delivery counters of every receiver URL, for /metrics.
    deliveries: Vec<Arc<notify::EndpointStats>>,
    monitor: JoinHandle<()>,
    supervisor: JoinHandle<()>,
    /// Alert delivery, when there are receivers.
    delivery: Option<JoinHandle<()>>,
}

/// Starts the monitor, the pollers, the receivers' delivery and (with a
/// timeline path) the timeline file.
fn start(config: Arc<Config>) -> anyhow::Result<Agent> {
    let mut restored = Vec::new();
    let mut outputs = monitor::Outputs::default();
    if let Some(path) = &config.timelines.path {
        match store::load(path, config.timelines.keep_per_shard) {
            Ok(t) => restored = t,
            // Monitoring matters more than the history: go on without it.
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read timelines; starting without them")
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(store::write(path.clone(), rx));
        outputs.timelines = Some(tx);
    }
    // Without receivers nothing keeps the firing set up to date: a file
    // left from an earlier configuration is not read.
    let mut firing = Vec::new();
    let mut deliveries = Vec::new();
    let mut delivery = None;
    if !config.alerts.receivers.is_empty() {
        firing = notify::load_firing(&config.alerts);
        let (dispatcher, stats) = notify::Dispatcher::start(&config.alerts, firing.clone())?;
        let (tx, rx) = mpsc::unbounded_channel();
        delivery = Some(tokio::spawn(notify::run(dispatcher, rx)));
        outputs.transitions = Some(tx);
        deliveries = stats;
    }
    let monitor = monitor::Monitor::new(&config, restored, firing);
    let (snap_tx, snapshots) = watch::channel(monitor.snapshot());
    let (input_tx, input_rx) = mpsc::channel(4096);
    Ok(Agent {
        monitor: tokio::spawn(monitor::run(monitor, input_rx, snap_tx, outputs)),
        supervisor: tokio::spawn(supervise::supervise(config, snapshots.clone(), input_tx)),
        snapshots,
        deliveries,
        delivery,
    })
}

async fn run(config: Config, web: WebConfig) -> anyhow::Result<()> {
    let config = Arc::new(config);
    // The certificate and key are read again here: they may have changed
    // since the config was checked.
    let tls = web
        .tls
        .as_ref()
        .map(web::acceptor)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let auth = web::BasicAuth::new(&web.users).map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let agent = start(config.clone())?;
    tracing::info!(listen = %config.listen, deployments = config.deployments.len(), endpoint = %web.summary(), "serving");
    let server = web::serve(
        listener,
        http::router(agent.snapshots, agent.deliveries, auth),
        tls,
        shutdown(),
    );
    // The monitor and the supervisor run for as long as the agent does: if
    // either ends, the metrics would go stale while looking fine, so the
    // agent exits and its supervisor (systemd, Kubernetes) restarts it.
    tokio::select! {
        served = server => Ok(served?),
        ended = agent.monitor => anyhow::bail!("the monitor stopped: {}", why(ended)),
        ended = agent.supervisor => anyhow::bail!("the poller supervisor stopped: {}", why(ended)),
        ended = async move {
            match agent.delivery {
                Some(d) => d.await,
                None => std::future::pending().await,
            }
        } => anyhow::bail!("alert delivery stopped: {}", why(ended)),
    }
}

/// `slots`: polls the cluster until every node it finds has answered (or
/// `wait` passes), prints the merged slot map by range, and says by its exit
/// code whether every slot is covered.
async fn slots(config: Config, wait: std::time::Duration) -> ExitCode {
    let seeds = config.deployments[0].seeds.join(", ");
    let mut agent = match start(Arc::new(config)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let _ = tokio::time::timeout(wait, agent.snapshots.wait_for(|s| s.ready)).await;
    let snapshot = agent.snapshots.borrow().clone();
    if !snapshot.ready {
        eprintln!(
            "warning: not every node answered within {}: the map below is partial",
            humantime::format_duration(wait)
        );
    }
    let Some(sv) = snapshot.deployments[0]
        .cluster
        .as_ref()
        .and_then(|c| c.slots.as_ref())
    else {
        eprintln!(
            "error: no node of the cluster at {seeds} answered within {}",
            humantime::format_duration(wait)
        );
        return ExitCode::from(2);
    };
    let covered = redis_ha_exporter::slots::SLOTS as u32 - sv.uncovered;
    println!(
        "cluster at {seeds}: {covered}/{} slots covered, {} uncovered range(s), {} slot map(s), {} open slot(s)",
        redis_ha_exporter::slots::SLOTS,
        sv.uncovered_ranges,
        sv.config_views,
        sv.open.len()
    );
    println!(
        "{:<6} {:<6} {:<6} {:<10} {:<14} MASTER",
        "START", "END", "SLOTS", "STATE", "SHARD"
    );
    for r in &sv.ranges {
        println!(
            "{:<6} {:<6} {:<6} {:<10} {:<14} {}",
            r.start,
            r.end,
            u32::from(r.end - r.start) + 1,
            r.state.as_str(),
            r.shard.as_deref().unwrap_or("-"),
            r.master.as_deref().unwrap_or("-")
        );
    }
    for d in &sv.divergences {
        println!(
            "differs: {} says {}-{} is served by {}, most nodes say {}",
            d.node,
            d.start,
            d.end,
            d.says.as_deref().unwrap_or("nobody"),
            d.majority.as_deref().unwrap_or("nobody")
        );
    }
    if sv.uncovered > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn why(ended: Result<(), tokio::task::JoinError>) -> String {
    match ended {
        Ok(()) => "its input ended".into(),
        Err(e) => e.to_string(),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
