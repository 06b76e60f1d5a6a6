//! The `redis-ha-exporter` command: runs the agent, or checks a config.

use std::future::IntoFuture;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use redis_ha_exporter::config::{self, Config};
use redis_ha_exporter::{collect, http, monitor, store};
use tokio::sync::{mpsc, watch};

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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { config }) = &cli.command {
        return match config::load(config) {
            Ok(c) => {
                println!(
                    "{}: OK ({} deployments)",
                    config.display(),
                    c.deployments.len()
                );
                ExitCode::SUCCESS
            }
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into()),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    match runtime
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(config)))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let mut restored = Vec::new();
    let mut persist = None;
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
        persist = Some(tx);
    }
    let monitor = monitor::Monitor::new(&config, restored);
    let (snap_tx, snap_rx) = watch::channel(Arc::new(monitor.snapshot()));
    let (input_tx, input_rx) = mpsc::channel(4096);
    let monitor_task = tokio::spawn(monitor::run(monitor, input_rx, snap_tx, persist));
    let supervisor_task = tokio::spawn(collect::supervise(
        config.clone(),
        snap_rx.clone(),
        input_tx,
    ));
    tracing::info!(listen = %config.listen, deployments = config.deployments.len(), "serving");
    let server = axum::serve(listener, http::router(snap_rx)).with_graceful_shutdown(shutdown());
    // The monitor and the supervisor run for as long as the agent does: if
    // either ends, the metrics would go stale while looking fine, so the
    // agent exits and its supervisor (systemd, Kubernetes) restarts it.
    tokio::select! {
        served = server.into_future() => Ok(served?),
        ended = monitor_task => anyhow::bail!("the monitor stopped: {}", why(ended)),
        ended = supervisor_task => anyhow::bail!("the poller supervisor stopped: {}", why(ended)),
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
