//! The `redis-ha-exporter` command: runs the agent, checks a config, asks
//! a running agent whether it is healthy, or prints a cluster's slot
//! coverage once.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures::{FutureExt as _, TryFutureExt as _};
use redis_ha_exporter::config::{self, Config, WebConfig};
use redis_ha_exporter::model::snapshot::Snapshot;
use redis_ha_exporter::model::write_errors::WriteErrors;
use redis_ha_exporter::shutdown::{self, Shutdown};
use redis_ha_exporter::web;
use redis_ha_exporter::{healthcheck, http, logs, monitor, notify, store, supervise};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::{self, JoinSet};

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
    /// Log filter: a level (`debug`, `info`, `warn`, `error`) or
    /// directives as in RUST_LOG, e.g. `redis_ha_exporter=debug,info`. The
    /// Redis client library logs only errors unless named (`fred=warn`).
    #[arg(long, visible_alias = "log.level", env = "REDIS_HA_LOG", default_value = logs::DEFAULT_FILTER)]
    log: String,
    /// Log line format.
    #[arg(
        long = "log.format",
        env = "REDIS_HA_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    log_format: logs::Format,
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
        logs::init("warn", cli.log_format);
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
    logs::init(&cli.log, cli.log_format);
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

/// How long a stop may take, from the signal to the exit: below the 10 s
/// that `docker stop` waits before SIGKILL (Kubernetes waits 30 s, systemd
/// 90 s), so that an agent that cannot finish says what it was waiting for.
/// With the defaults a stop takes well under a second: the longest wait is
/// a poll in progress (2 x `timeout`) and then QUIT (`timeout`).
const STOP_WITHIN: Duration = Duration::from_secs(8);

/// The agent's tasks, by name. None ends while the agent runs; on a stop,
/// each ends after the tasks that feed it, all within [`STOP_WITHIN`].
#[derive(Default)]
struct Tasks {
    set: JoinSet<anyhow::Result<()>>,
    names: HashMap<task::Id, &'static str>,
}

impl Tasks {
    fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        let id = self.set.spawn(task).id();
        self.names.insert(id, name);
    }

    /// The next task to end, and how it ended; none once all have.
    async fn next(&mut self) -> Option<(&'static str, anyhow::Result<()>)> {
        let (id, ended) = match self.set.join_next_with_id().await? {
            Ok((id, ended)) => (id, ended),
            Err(e) => (e.id(), Err(e.into())),
        };
        Some((self.names.remove(&id).unwrap_or("a task"), ended))
    }

    /// The tasks that have not ended, sorted.
    fn running(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.names.values().copied().collect();
        names.sort_unstable();
        names
    }
}

/// The running parts of the agent; the HTTP server joins their tasks.
struct Agent {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Delivery counters of every receiver URL, for /metrics.
    deliveries: Vec<Arc<notify::EndpointStats>>,
    /// Failed writes of the state files, for /metrics.
    write_errors: Arc<WriteErrors>,
    tasks: Tasks,
}

/// Starts the monitor, the pollers (until `shutdown`), the receivers'
/// delivery and (with a timeline path) the timeline file.
fn start(config: Arc<Config>, shutdown: Shutdown) -> anyhow::Result<Agent> {
    let mut tasks = Tasks::default();
    let mut restored = Vec::new();
    let mut outputs = monitor::Outputs::default();
    let write_errors = Arc::new(WriteErrors::default());
    if let Some(path) = &config.timelines.path {
        match store::load(path, config.timelines.keep_per_shard) {
            Ok(t) => restored = t,
            // Monitoring matters more than the history: go on without it.
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read timelines; starting without them")
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tasks.spawn(
            "the timeline writer",
            store::write(path.clone(), rx, write_errors.clone()).map(Ok),
        );
        outputs.timelines = Some(tx);
    }
    // Without receivers nothing keeps the firing set up to date: a file
    // left from an earlier configuration is not read.
    let mut firing = Vec::new();
    let mut deliveries = Vec::new();
    if !config.alerts.receivers.is_empty() {
        firing = notify::load_firing(&config.alerts);
        let (dispatcher, stats) =
            notify::Dispatcher::start(&config.alerts, firing.clone(), write_errors.clone())?;
        let (tx, rx) = mpsc::unbounded_channel();
        tasks.spawn("alert delivery", notify::run(dispatcher, rx).err_into());
        outputs.transitions = Some(tx);
        deliveries = stats;
    }
    let monitor = monitor::Monitor::new(&config, restored, firing);
    let (snap_tx, snapshots) = watch::channel(monitor.snapshot());
    let (input_tx, input_rx) = mpsc::channel(4096);
    tasks.spawn(
        "the monitor",
        monitor::run(monitor, input_rx, snap_tx, outputs).map(Ok),
    );
    tasks.spawn(
        "the poller supervisor",
        supervise::supervise(config, snapshots.clone(), input_tx, shutdown).map(Ok),
    );
    Ok(Agent {
        snapshots,
        deliveries,
        write_errors,
        tasks,
    })
}

async fn run(config: Config, web: WebConfig) -> anyhow::Result<()> {
    // Caught from here on: a signal while the agent starts stops it as
    // cleanly as one later, instead of killing it.
    let mut signals = Signals::new()?;
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
    let (stop, shutdown) = shutdown::channel();
    let mut agent = start(config.clone(), shutdown.clone())?;
    let router = http::router(
        agent.snapshots.clone(),
        std::mem::take(&mut agent.deliveries),
        agent.write_errors.clone(),
        auth,
    );
    let mut served = shutdown;
    let server = web::serve(listener, router, tls, async move {
        served.requested().await;
    });
    agent.tasks.spawn("the HTTP server", server.err_into());
    tracing::info!(listen = %config.listen, deployments = config.deployments.len(), endpoint = %web.summary(), "serving");
    // Every task runs for as long as the agent does: if one ends, metrics
    // would go stale while looking fine, or timelines and notifications
    // would go nowhere, so the agent stops and exits non-zero, and its
    // supervisor (systemd, Kubernetes) restarts it.
    let failed = tokio::select! {
        signal = signals.recv() => {
            tracing::info!(signal, within = ?STOP_WITHIN, "stopping");
            None
        }
        Some((name, ended)) = agent.tasks.next() => {
            let why = match ended {
                Ok(()) => "its input ended".to_string(),
                Err(e) => format!("{e:#}"),
            };
            tracing::error!(task = name, %why, "a task stopped; stopping the agent");
            Some(anyhow::anyhow!("{name} stopped: {why}"))
        }
    };
    stop.request();
    let began = Instant::now();
    let mut failures: Vec<anyhow::Error> = failed.into_iter().collect();
    let deadline = tokio::time::sleep(STOP_WITHIN);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = agent.tasks.next() => match next {
                None => break,
                Some((name, Ok(()))) => tracing::info!(task = name, "stopped"),
                Some((name, Err(e))) => {
                    tracing::error!(task = name, error = %e, "failed while stopping");
                    failures.push(e.context(format!("{name} failed while stopping")));
                }
            },
            () = &mut deadline => {
                let running = agent.tasks.running();
                tracing::error!(?running, "did not stop in time; exiting without them");
                anyhow::bail!("did not stop within {}: {} still running", humantime::format_duration(STOP_WITHIN), running.join(", "));
            }
            signal = signals.recv() => {
                let running = agent.tasks.running();
                tracing::warn!(signal, ?running, "signalled again while stopping; exiting without them");
                anyhow::bail!("{signal} while stopping: exited before {} ended", running.join(", "));
            }
        }
    }
    match failures.into_iter().next() {
        Some(e) => Err(e),
        None => {
            tracing::info!(took = ?began.elapsed(), "stopped cleanly");
            Ok(())
        }
    }
}

/// `slots`: polls the cluster until every node it finds has answered (or
/// `wait` passes), prints the merged slot map by range, and says by its exit
/// code whether every slot is covered.
async fn slots(config: Config, wait: std::time::Duration) -> ExitCode {
    let seeds = config.deployments[0].seeds.join(", ");
    // Not requested: the agent runs until this returns.
    let (_stop, shutdown) = shutdown::channel();
    let mut agent = match start(Arc::new(config), shutdown) {
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

/// The stop signals, SIGTERM (service managers, `docker stop`, Kubernetes)
/// and SIGINT (Ctrl-C).
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        let catch =
            |kind| signal(kind).map_err(|e| anyhow::anyhow!("cannot catch stop signals: {e}"));
        Ok(Signals {
            term: catch(SignalKind::terminate())?,
            int: catch(SignalKind::interrupt())?,
        })
    }

    /// The next one's name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
