//! `redis-ha-lab demo`: a sentinel group and a cluster on loopback with the agent
//! watching both, so a person can look at real metrics and trigger failovers by hand.
//!
//! `redis-ha-lab sim`: the simulated cluster as a process, for the benchmark
//! harness: its nodes on stdout, controls on stdin.

use std::fs;
use std::io::{self, BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis_ha_lab::{
    Cluster, ClusterOpts, Control, SentinelGroup, SentinelOpts, SimCluster, SimOpts,
};

const USAGE: &str = "\
usage: redis-ha-lab demo --agent <path-to-agent-binary> [--listen 127.0.0.1:9478]
       redis-ha-lab sim [--masters 3] [--replicas 1] [--node-timeout 1s]
                        [--write-rate 1000] [--seed 1] [--threads 1]

demo: starts a sentinel group (1 master, 2 replicas, 3 sentinels) and a
cluster (3 masters, 1 replica each) on 127.0.0.1, writes a config for both
and runs `<agent> --config <config>` until Ctrl-C. The server binary is
$REDIS_HA_LAB_SERVER, default redis-server from PATH.

sim: serves a simulated cluster (no real servers) and prints one JSON line,
{\"nodes\":[{\"index\":0,\"addr\":\"127.0.0.1:PORT\",\"id\":\"...\",\"shard\":0},...]},
then reads controls on stdin, one a line, answering `ok [value]` or
`error <reason>`:
  fail-master <shard>        fail the shard's master (answers ok <node index>)
  freeze <index>             stop a node answering
  resume <index>             let it answer again (a failed master rejoins)
  migrate <slot> <from> <to> open a slot migration between two shards
  close-migration <slot>     close it
  master-of <shard>          answers ok <node index> <addr>
  quit                       stop (so does the end of stdin)";

const DEFAULT_LISTEN: &str = "127.0.0.1:9478";

#[derive(Debug, PartialEq)]
struct DemoArgs {
    agent: String,
    listen: String,
}

#[derive(Debug, PartialEq)]
enum Cli {
    Demo(DemoArgs),
    Sim(SimOpts),
    Help,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Ok(Cli::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Cli::Demo(demo_args)) => match demo(&demo_args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("redis-ha-lab: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(Cli::Sim(opts)) => match sim(opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("redis-ha-lab: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("redis-ha-lab: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn parse_args(args: &[String]) -> Result<Cli, String> {
    let Some((command, rest)) = args.split_first() else {
        return Err("missing command".to_string());
    };
    match command.as_str() {
        "demo" => parse_demo(rest),
        "sim" => parse_sim(rest),
        "help" | "-h" | "--help" => Ok(Cli::Help),
        other => Err(format!("unknown command `{other}`")),
    }
}

/// The flags of a subcommand as (flag, value) pairs; `None` for `--help`.
fn flags(args: &[String]) -> Result<Option<Vec<(&str, &str)>>, String> {
    let mut pairs = Vec::new();
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        if matches!(flag.as_str(), "-h" | "--help") {
            return Ok(None);
        }
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        pairs.push((flag.as_str(), value.as_str()));
    }
    Ok(Some(pairs))
}

fn parse_demo(args: &[String]) -> Result<Cli, String> {
    let Some(pairs) = flags(args)? else {
        return Ok(Cli::Help);
    };
    let mut agent = None;
    let mut listen = DEFAULT_LISTEN.to_string();
    for (flag, value) in pairs {
        match flag {
            "--agent" => agent = Some(value.to_string()),
            "--listen" => listen = value.to_string(),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let agent = agent.ok_or("--agent is required")?;
    Ok(Cli::Demo(DemoArgs { agent, listen }))
}

fn parse_sim(args: &[String]) -> Result<Cli, String> {
    let Some(pairs) = flags(args)? else {
        return Ok(Cli::Help);
    };
    let mut opts = SimOpts::default();
    for (flag, value) in pairs {
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: `{value}` is not a number"))
        };
        let count =
            || number().and_then(|n| usize::try_from(n).map_err(|_| format!("{flag}: too large")));
        match flag {
            "--masters" => opts.masters = count()?,
            "--replicas" => opts.replicas_per_master = count()?,
            "--node-timeout" => opts.node_timeout = parse_duration(value)?,
            "--write-rate" => opts.write_rate = number()?,
            "--seed" => opts.seed = number()?,
            "--threads" => opts.threads = count()?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Cli::Sim(opts))
}

/// `500ms` or `2s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration like 500ms or 2s");
    let (digits, unit): (&str, fn(u64) -> Duration) = match text.strip_suffix("ms") {
        Some(ms) => (ms, Duration::from_millis),
        None => (text.strip_suffix('s').ok_or_else(bad)?, Duration::from_secs),
    };
    digits.parse().map(unit).map_err(|_| bad())
}

/// Runs the simulator until `quit` or the end of stdin: the harness that
/// started it holds the other end, so the simulator never outlives it.
fn sim(opts: SimOpts) -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: plain prctl on this process. Also dies with the parent if it is
    // SIGKILLed while its end of stdin is still open somewhere.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error().into());
    }
    let cluster = SimCluster::try_start(opts)?;
    let mut out = io::stdout().lock();
    writeln!(out, "{}", nodes_json(&cluster))?;
    out.flush()?;
    for line in io::stdin().lock().lines() {
        let line = line?;
        let (answer, quit) = match Control::parse(&line) {
            Ok(control) => match cluster.apply(&control) {
                Ok(answer) => (answer, control == Control::Quit),
                Err(e) => (format!("error {e}"), false),
            },
            Err(e) => (format!("error {e}"), false),
        };
        writeln!(out, "{answer}")?;
        out.flush()?;
        if quit {
            break;
        }
    }
    Ok(())
}

/// Every node as one JSON line. Addresses and ids are plain ASCII without
/// quotes, so no escaping is needed.
fn nodes_json(cluster: &SimCluster) -> String {
    let nodes: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| {
            format!(
                r#"{{"index":{},"addr":"{}","id":"{}","shard":{}}}"#,
                n.index, n.addr, n.id, n.shard
            )
        })
        .collect();
    format!(r#"{{"nodes":[{}]}}"#, nodes.join(","))
}

fn demo_config(listen: &str, sentinel: &str, seed: &str) -> String {
    format!(
        "\
listen: \"{listen}\"
poll_interval: 1s
timeout: 500ms
deployments:
  - name: demo-sentinel
    kind: sentinel
    sentinels: [\"{sentinel}\"]
  - name: demo-cluster
    kind: cluster
    seeds: [\"{seed}\"]
"
    )
}

/// Set by SIGINT/SIGTERM; the main loop polls it.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_stop_handlers() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value, and the
        // handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            let handler: extern "C" fn(libc::c_int) = on_stop_signal;
            action.sa_sigaction = handler as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

fn demo(args: &DemoArgs) -> io::Result<ExitCode> {
    let agent_path = Path::new(&args.agent);
    // Fail before spending seconds on the topologies.
    if agent_path.components().count() > 1 && !agent_path.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("agent binary {} does not exist", agent_path.display()),
        ));
    }

    println!("starting a sentinel group (1 master, 2 replicas, 3 sentinels)…");
    let group = SentinelGroup::start(SentinelOpts::default());
    println!("starting a cluster (3 masters, 1 replica each)…");
    let cluster = Cluster::start(ClusterOpts::default());

    let config = group.dir().join("demo.yaml");
    fs::write(
        &config,
        demo_config(
            &args.listen,
            &group.sentinels[0].addr(),
            &cluster.nodes[0].addr(),
        ),
    )?;

    let mut agent = spawn_agent(agent_path, &config)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start agent {}: {e}", args.agent)))?;
    install_stop_handlers()?;
    print_summary(args, &config, &group, &cluster, &agent);

    let code = loop {
        if STOP.load(Ordering::SeqCst) {
            println!("\nstopping…");
            break ExitCode::SUCCESS;
        }
        match agent.try_wait()? {
            Some(status) if status.success() => {
                println!("agent exited ({status}); stopping the lab");
                break ExitCode::SUCCESS;
            }
            Some(status) => {
                eprintln!("agent exited ({status}); stopping the lab");
                break ExitCode::FAILURE;
            }
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let _ = agent.kill();
    let _ = agent.wait();
    drop(cluster);
    drop(group);
    Ok(code)
}

fn spawn_agent(agent: &Path, config: &Path) -> io::Result<Child> {
    let mut command = Command::new(agent);
    command.arg("--config").arg(config);
    // SAFETY: prctl is async-signal-safe and nothing is allocated. The agent should not
    // outlive the lab if the lab is SIGKILLed (its targets would be gone anyway).
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()
}

fn print_summary(
    args: &DemoArgs,
    config: &Path,
    group: &SentinelGroup,
    cluster: &Cluster,
    agent: &Child,
) {
    let listen = &args.listen;
    let pid = |n: &redis_ha_lab::Node| n.pid().map_or("-".to_string(), |p| p.to_string());
    let master = &group.nodes[0];
    let sentinel = &group.sentinels[0];

    println!();
    println!("redis-ha-lab demo is running (agent pid {}).", agent.id());
    println!();
    println!("  metrics:   http://{listen}/metrics");
    println!("  ready:     http://{listen}/-/ready");
    println!("  index:     http://{listen}/");
    println!("  config:    {}", config.display());
    println!();
    println!("sentinel group `{}` (demo-sentinel):", group.master_name);
    for (i, node) in group.nodes.iter().enumerate() {
        let role = if i == 0 { "master  " } else { "replica " };
        println!("  {role} {}  pid {}", node.addr(), pid(node));
    }
    for node in &group.sentinels {
        println!("  sentinel {}  pid {}", node.addr(), pid(node));
    }
    println!();
    println!("cluster (demo-cluster):");
    let masters = ClusterOpts::default().masters;
    for (i, node) in cluster.nodes.iter().enumerate() {
        let role = if i < masters { "master  " } else { "replica " };
        println!("  {role} {}  pid {}", node.addr(), pid(node));
    }
    println!();
    let name = &group.master_name;
    let (mp, sp) = (master.port(), sentinel.port());
    let (mpid, cport, cpid) = (pid(master), cluster.nodes[0].port(), pid(&cluster.nodes[0]));
    // (command, comment); an empty command marks a heading.
    let mut hints: Vec<(String, String)> = vec![
        (String::new(), "try a sentinel failover:".into()),
        (
            format!("redis-cli -p {mp} DEBUG SLEEP 10"),
            "master hangs for 10 s".into(),
        ),
        (
            format!("kill -STOP {mpid}; sleep 10; kill -CONT {mpid}"),
            "freeze the master for 10 s".into(),
        ),
        (
            format!("redis-cli -p {sp} SENTINEL FAILOVER {name}"),
            "planned failover".into(),
        ),
        (
            format!("redis-cli -p {sp} SENTINEL GET-MASTER-ADDR-BY-NAME {name}"),
            "who is master now".into(),
        ),
        (String::new(), "try a cluster failover:".into()),
        (
            format!("kill -STOP {cpid}; sleep 10; kill -CONT {cpid}"),
            format!("freeze master 127.0.0.1:{cport} for 10 s"),
        ),
    ];
    if let Some(replica) = cluster.nodes.get(masters) {
        hints.push((
            format!("redis-cli -p {} CLUSTER FAILOVER", replica.port()),
            "planned failover".into(),
        ));
    }
    let width = hints.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    for (command, comment) in hints {
        if command.is_empty() {
            println!("{comment}");
        } else {
            println!("  {command:<width$}  # {comment}");
        }
    }
    println!();
    println!("Ctrl-C to stop.");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_demo_arguments() {
        assert_eq!(
            parse_args(&args(&["demo", "--agent", "/bin/agent"])),
            Ok(Cli::Demo(DemoArgs {
                agent: "/bin/agent".into(),
                listen: DEFAULT_LISTEN.into()
            }))
        );
        assert_eq!(
            parse_args(&args(&["demo", "--listen", "127.0.0.1:1", "--agent", "a"])),
            Ok(Cli::Demo(DemoArgs {
                agent: "a".into(),
                listen: "127.0.0.1:1".into()
            }))
        );
        assert_eq!(parse_args(&args(&["--help"])), Ok(Cli::Help));
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(parse_args(&args(&[])).is_err());
        assert!(parse_args(&args(&["demo"]))
            .unwrap_err()
            .contains("--agent"));
        assert!(parse_args(&args(&["demo", "--agent"]))
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse_args(&args(&["demo", "--agent", "a", "--x"])).is_err());
        assert!(parse_args(&args(&["bench"])).is_err());
    }

    #[test]
    fn parses_sim_arguments() {
        assert_eq!(
            parse_args(&args(&["sim"])),
            Ok(Cli::Sim(SimOpts::default()))
        );
        let Ok(Cli::Sim(opts)) = parse_args(&args(&[
            "sim",
            "--masters",
            "500",
            "--replicas",
            "1",
            "--node-timeout",
            "1500ms",
            "--write-rate",
            "0",
            "--seed",
            "9",
            "--threads",
            "2",
        ])) else {
            panic!("sim arguments rejected");
        };
        assert_eq!(
            (opts.masters, opts.replicas_per_master, opts.node_timeout),
            (500, 1, Duration::from_millis(1500))
        );
        assert_eq!((opts.write_rate, opts.seed, opts.threads), (0, 9, 2));
        assert_eq!(parse_args(&args(&["sim", "--help"])), Ok(Cli::Help));
        assert!(parse_args(&args(&["sim", "--masters", "x"]))
            .unwrap_err()
            .contains("not a number"));
        assert!(parse_args(&args(&["sim", "--node-timeout", "3m"])).is_err());
        assert!(parse_args(&args(&["sim", "--bogus", "1"])).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("ms").is_err());
    }

    #[test]
    fn config_lists_both_deployments() {
        let text = demo_config("127.0.0.1:9478", "127.0.0.1:26379", "127.0.0.1:7000");
        assert!(text.starts_with("listen: \"127.0.0.1:9478\"\n"));
        assert!(text.contains("    kind: sentinel\n    sentinels: [\"127.0.0.1:26379\"]\n"));
        assert!(text.contains("    kind: cluster\n    seeds: [\"127.0.0.1:7000\"]\n"));
    }
}
