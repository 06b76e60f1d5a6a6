//! The Debian package (docs/debian.md): built with `cargo deb`, inspected,
//! installed for real with dpkg, its systemd unit verified, the installed
//! binary run the way the unit runs it against a real redis-server and
//! sentinel, reinstalled, removed and purged.
//!
//! It needs root (dpkg), as CI has. It runs once, not on every server
//! version: what it checks is the package, not the monitoring, so it starts
//! one redis-server and one redis-sentinel itself (the OS package's) rather
//! than a lab topology. systemd is not PID 1 here, so the unit cannot be
//! started with systemctl; the test starts its `ExecStart` under its `User=`
//! and `Group=`, with the `EnvironmentFile=` and `STATE_DIRECTORY` systemd
//! would give, and `systemd-analyze` checks the unit itself.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, temp_dir, Metrics};

const PACKAGE: &str = "redis-ha-exporter";
const UNIT: &str = "/usr/lib/systemd/system/redis-ha-exporter.service";
const CONFIG: &str = "/etc/redis-ha-exporter/config.yaml";
const DEFAULTS: &str = "/etc/default/redis-ha-exporter";
const WANTS: &str = "/etc/systemd/system/multi-user.target.wants/redis-ha-exporter.service";
/// How long the agent may take to stop on SIGTERM (README, "Run it").
const AGENT_STOP: Duration = Duration::from_secs(8);

/// Must show: the package holds the binary, unit, sysusers file, conffiles,
/// dashboards and rules where docs/debian.md says; installing it makes the
/// user and the state directory and enables the unit; the unit passes
/// `systemd-analyze verify`; the installed default config is valid; the
/// installed binary, run as the unit runs it, sees its targets up, writes
/// its state directory as the package user and stops cleanly on SIGTERM
/// within the unit's stop timeout; a reinstall keeps an edited conffile and
/// the state; remove keeps config and state, purge removes both.
#[test]
fn the_package_installs_runs_as_its_unit_says_and_purges() {
    let _lock = Lock::take();
    assert_eq!(
        run(Command::new("id").arg("-u")).trim(),
        "0",
        "installing the package needs root"
    );
    assert_eq!(
        status(),
        None,
        "{PACKAGE} is installed on this machine; the test would replace and purge it \
         (dpkg --purge {PACKAGE} first if it is a leftover of this test)"
    );
    // The user outlives a purge (docs/debian.md): remove one a previous run
    // left, so that this install has to make it.
    if user().is_some() {
        run(Command::new("userdel").arg(PACKAGE));
    }

    let dir = temp_dir("debian");
    let deb = build(&dir);
    let listed = inspect(&deb, &dir);

    let installed = Installed::new();
    run(Command::new("dpkg").arg("-i").arg(&deb));
    assert_eq!(status().as_deref(), Some("install ok installed"));

    // The user and the state directory, made by the postinst.
    let passwd = user().expect("the package made no user");
    assert_eq!(passwd[5], "/var/lib/redis-ha-exporter", "home: {passwd:?}");
    assert!(passwd[6].ends_with("nologin"), "shell: {passwd:?}");
    let uid: u32 = passwd[2].parse().unwrap();
    assert!(uid < 1000, "not a system user: {passwd:?}");
    let state = std::fs::metadata("/var/lib/redis-ha-exporter").expect("no state directory");
    assert!(state.is_dir());
    assert_eq!((state.uid(), state.mode() & 0o7777), (uid, 0o750));
    let enabled = std::fs::read_link(WANTS).expect("the unit is not enabled");
    assert!(
        enabled.ends_with("systemd/system/redis-ha-exporter.service"),
        "{WANTS} -> {enabled:?}"
    );

    // The unit: valid for this systemd, hardened, and consistent with the
    // agent's stop and with the package.
    let verify = output(Command::new("systemd-analyze").args(["verify", UNIT]));
    assert!(
        verify.status.success() && verify.stdout.is_empty() && verify.stderr.is_empty(),
        "systemd-analyze verify {UNIT}: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    // Its exposure score (1.4 now, "OK") stays at most 2.0: the threshold
    // is in tenths.
    run(Command::new("systemd-analyze").args([
        "security",
        "--offline=yes",
        "--threshold=20",
        UNIT,
    ]));
    let unit = Unit::parse(&std::fs::read_to_string(UNIT).unwrap());
    assert_eq!(unit.one("User"), PACKAGE);
    assert_eq!(unit.one("Group"), PACKAGE);
    assert_eq!(unit.one("StateDirectory"), PACKAGE);
    assert_eq!(unit.one("Restart"), "on-failure");
    assert_eq!(unit.one("EnvironmentFile"), format!("-{DEFAULTS}"));
    let stop_timeout = humantime::parse_duration(unit.one("TimeoutStopSec")).unwrap();
    assert!(
        stop_timeout > AGENT_STOP,
        "TimeoutStopSec={stop_timeout:?} would SIGKILL an agent still stopping"
    );
    let state_dir = Path::new("/var/lib").join(unit.one("StateDirectory"));

    // The default config: valid, readable by the user, its state paths in
    // the unit's state directory.
    let argv = unit.exec_start(&environment_file(DEFAULTS));
    assert_eq!(
        argv[..3],
        ["/usr/bin/redis-ha-exporter", "--config", CONFIG]
    );
    assert!(
        as_user(&unit, &argv[0])
            .args(["check-config", "--config", CONFIG])
            .status()
            .unwrap()
            .success(),
        "the packaged {CONFIG} fails check-config"
    );
    let default: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(CONFIG).unwrap()).unwrap();
    for path in [
        &default["timelines"]["path"],
        &default["alerts"]["state_dir"],
    ] {
        let path = Path::new(path.as_str().expect("a state path in the default config"));
        assert!(path.starts_with(&state_dir), "{path:?}");
    }

    // The installed rules and their tests, where they are installed.
    run(Command::new("promtool").args([
        "test",
        "rules",
        "/usr/share/redis-ha-exporter/alerts/redis-ha.test.yml",
    ]));

    // Edit the installed config as an admin would: this machine's test
    // servers instead of 127.0.0.1:26379 (a real sentinel may listen
    // there), a free port instead of 9478, and a webhook receiver (nothing
    // listens at its URL) so that the agent opens its delivery queue in the
    // state directory at start. The reinstall below shows dpkg keeps it.
    let servers = Servers::start(&dir);
    let port = free_port();
    let mut edited = default.clone();
    edited["listen"] = format!("127.0.0.1:{port}").into();
    edited["deployments"] = serde_yaml::from_str(&format!(
        "[{{name: deb, kind: sentinel, sentinels: [\"127.0.0.1:{}\"]}}]",
        servers.sentinel
    ))
    .unwrap();
    edited["alerts"]["receivers"] = serde_yaml::from_str(&format!(
        "[{{name: hook, type: webhook, url: \"http://127.0.0.1:{}/hook\"}}]",
        free_port()
    ))
    .unwrap();
    let edited = serde_yaml::to_string(&edited).unwrap();
    std::fs::write(CONFIG, &edited).unwrap();

    // ExecStart as the unit's user, unchanged.
    let log = dir.join("agent.log");
    let started = Instant::now();
    let mut agent = Running(
        as_user(&unit, &argv[0])
            .args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let base = format!("http://127.0.0.1:{port}");
    let targets = [
        ("sentinel", format!("127.0.0.1:{}", servers.sentinel)),
        ("node", format!("127.0.0.1:{}", servers.master)),
    ];
    loop {
        let up = get(&format!("{base}/metrics")).map(|m| {
            let m = Metrics::parse(&m);
            targets.iter().all(|(kind, addr)| {
                m.value("redis_ha_target_up", &[("deployment", "deb"), (kind, addr)]) == Some(1.0)
            })
        });
        if up == Some(true) {
            break;
        }
        assert!(
            agent.0.try_wait().unwrap().is_none(),
            "the agent exited; its log:\n{}",
            read_log()
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the sentinel and its master are not both up in /metrics; the agent's log:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let proc_status = std::fs::read_to_string(format!("/proc/{}/status", agent.0.id())).unwrap();
    let ids = |key: &str| {
        proc_status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap()
            .split_whitespace()
            .map(|v| v.parse::<u32>().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids("Uid:"), [uid; 4], "the agent does not run as {PACKAGE}");
    assert_eq!(ids("Gid:"), [state.gid(); 4]);
    let queues: Vec<_> = std::fs::read_dir(&state_dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("queue-hook-"))
        .collect();
    assert_eq!(queues.len(), 1, "no delivery queue in {state_dir:?}");
    assert_eq!(queues[0].metadata().unwrap().uid(), uid);

    // SIGTERM, as systemctl stop sends: a clean stop within the unit's
    // timeout.
    let sent = Instant::now();
    run(Command::new("kill").args(["-TERM", &agent.0.id().to_string()]));
    let exit = loop {
        if let Some(exit) = agent.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            sent.elapsed() < stop_timeout,
            "still running {stop_timeout:?} after SIGTERM; its log:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        exit.success() && read_log().contains("stopped cleanly"),
        "{exit}; its log:\n{}",
        read_log()
    );

    // A reinstall (the upgrade path): the edited conffile and the state stay.
    let queue = queues[0].path();
    run(Command::new("dpkg").arg("-i").arg(&deb));
    assert_eq!(std::fs::read_to_string(CONFIG).unwrap(), edited);
    assert!(queue.exists(), "the reinstall lost {queue:?}");

    // Remove keeps the conffiles and the state; purge removes them, and
    // the unit's enablement, and keeps the user.
    run(Command::new("dpkg").args(["--remove", PACKAGE]));
    assert_eq!(status().as_deref(), Some("deinstall ok config-files"));
    assert!(!Path::new("/usr/bin/redis-ha-exporter").exists());
    assert!(Path::new(CONFIG).exists() && queue.exists());
    run(Command::new("dpkg").args(["--purge", PACKAGE]));
    installed.disarm();
    assert_eq!(status(), None);
    for path in listed.iter().filter(|p| !p.ends_with('/')) {
        assert!(!Path::new(path).exists(), "{path} is left after purge");
    }
    for path in [
        "/etc/redis-ha-exporter",
        "/var/lib/redis-ha-exporter",
        WANTS,
    ] {
        assert!(
            std::fs::symlink_metadata(path).is_err(),
            "{path} is left after purge"
        );
    }
    assert!(user().is_some(), "purge removed the user");
    // The package and its unpacked copy: some 20 MB a run. Kept on failure.
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `cargo deb` into `dir`: the release build, which CI has made already
/// (`cargo build --release --locked`) and cargo reuses when it is fresh.
/// `--fast` compresses less (2 s instead of 9): the files are the same.
fn build(dir: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    // What cargo and nextest set for a test (the package's variables, the
    // library path) would make this build differ from CI's, and cargo
    // would build everything again.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if ["CARGO_PKG_", "CARGO_BIN_EXE_", "CARGO_MANIFEST_", "NEXTEST"]
            .iter()
            .any(|p| key.starts_with(p))
            || ["LD_LIBRARY_PATH", "CARGO_CRATE_NAME", "CARGO_TARGET_TMPDIR"].contains(&&*key)
        {
            command.env_remove(&*key);
        }
    }
    let started = Instant::now();
    let out = run(command
        .args(["deb", "--locked", "--fast", "--output"])
        .arg(dir)
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    let deb = PathBuf::from(
        out.lines()
            .last()
            .expect("cargo deb printed no path")
            .trim(),
    );
    println!("cargo deb: {deb:?} in {:?}", started.elapsed());
    assert!(deb.starts_with(dir) && deb.exists(), "{out}");
    deb
}

/// Checks the package's control fields, files and conffiles; returns the
/// paths it installs (directories end with `/`).
fn inspect(deb: &Path, dir: &Path) -> Vec<String> {
    let field = |name: &str| run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name));
    assert_eq!(field("Package").trim(), PACKAGE);
    assert_eq!(
        field("Version").trim(),
        format!("{}-1", env!("CARGO_PKG_VERSION"))
    );
    // What the binary links ($auto, from dpkg-shlibdeps) and what the
    // postinst runs.
    let depends = field("Depends");
    assert!(
        depends.contains("libc6 (>=") && depends.contains("systemd-sysusers"),
        "Depends: {depends}"
    );

    // `dpkg-deb -c`: mode, owner, size, date, time, path.
    let mut files = BTreeMap::new();
    for line in run(Command::new("dpkg-deb").arg("-c").arg(deb)).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let path = fields[5].trim_start_matches('.').to_string();
        files.insert(path, (fields[0].to_string(), fields[1].to_string()));
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut expected = vec![
        ("/usr/bin/redis-ha-exporter".to_string(), "-rwxr-xr-x"),
        (UNIT.to_string(), "-rw-r--r--"),
        (
            "/usr/lib/sysusers.d/redis-ha-exporter.conf".to_string(),
            "-rw-r--r--",
        ),
        (CONFIG.to_string(), "-rw-r--r--"),
        (DEFAULTS.to_string(), "-rw-r--r--"),
        (
            "/usr/share/doc/redis-ha-exporter/copyright".to_string(),
            "-rw-r--r--",
        ),
    ];
    let mut shared = vec![
        "alerts/redis-ha.rules.yml".to_string(),
        "alerts/redis-ha.test.yml".to_string(),
    ];
    for entry in std::fs::read_dir(repo.join("dashboards")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") {
            shared.push(format!("dashboards/{name}"));
        }
    }
    assert!(shared.len() > 2, "no dashboards in the repository");
    for file in &shared {
        expected.push((format!("/usr/share/redis-ha-exporter/{file}"), "-rw-r--r--"));
    }
    for (path, mode) in &expected {
        let found = files
            .get(path)
            .unwrap_or_else(|| panic!("{path} not in the package"));
        assert_eq!(
            (found.0.as_str(), found.1.as_str()),
            (*mode, "0/0"),
            "{path}"
        );
    }
    for path in files.keys() {
        assert!(
            path.starts_with("/usr/") || path.starts_with("/etc/"),
            "{path}: the package installs only under /usr and /etc"
        );
    }

    // The files are the repository's, unchanged.
    let unpacked = dir.join("unpacked");
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&unpacked));
    let same = |packaged: &str, source: &str| {
        assert_eq!(
            std::fs::read(unpacked.join(packaged.trim_start_matches('/'))).unwrap(),
            std::fs::read(repo.join(source)).unwrap(),
            "{packaged} is not {source}"
        );
    };
    same(UNIT, "deploy/debian/redis-ha-exporter.service");
    same(CONFIG, "deploy/debian/config.yaml");
    same(DEFAULTS, "deploy/debian/default");
    for file in &shared {
        same(&format!("/usr/share/redis-ha-exporter/{file}"), file);
    }

    // Everything under /etc is a conffile, and nothing else is.
    let control = dir.join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&control));
    let conffiles: Vec<String> = std::fs::read_to_string(control.join("conffiles"))
        .expect("no conffiles")
        .lines()
        .map(str::to_string)
        .collect();
    let under_etc: Vec<String> = files
        .keys()
        .filter(|p| p.starts_with("/etc/") && !p.ends_with('/'))
        .cloned()
        .collect();
    let mut sorted = conffiles.clone();
    sorted.sort();
    assert_eq!(sorted, under_etc);
    assert!(conffiles.contains(&CONFIG.to_string()));
    files.into_keys().collect()
}

/// The package's dpkg status (`install ok installed`, ...), `None` when
/// dpkg knows nothing of it.
fn status() -> Option<String> {
    let out = output(Command::new("dpkg-query").args(["-W", "-f=${Status}", PACKAGE]));
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty() && text != "unknown ok not-installed").then_some(text)
}

/// The package user's passwd entry, split at `:`.
fn user() -> Option<Vec<String>> {
    let out = output(Command::new("getent").args(["passwd", PACKAGE]));
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(':')
            .map(str::to_string)
            .collect()
    })
}

/// `program` as the unit starts it: as its user and group (setpriv execs,
/// so the child is the program itself), in `/`, with only the environment
/// systemd gives: the unit's `EnvironmentFile=` and `STATE_DIRECTORY`.
fn as_user(unit: &Unit, program: &str) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid", unit.one("User"), "--regid", unit.one("Group")])
        .args(["--init-groups", "--", program])
        .current_dir("/")
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin")
        .env(
            "STATE_DIRECTORY",
            Path::new("/var/lib").join(unit.one("StateDirectory")),
        )
        .envs(environment_file(DEFAULTS))
        .stdin(Stdio::null());
    command
}

/// `KEY=value` lines of an environment file, quotes removed, as systemd
/// reads them.
fn environment_file(path: &str) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{path}: {l}"));
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

/// A unit file's `Key=value` settings, in order.
struct Unit(Vec<(String, String)>);

impl Unit {
    fn parse(text: &str) -> Unit {
        Unit(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with(['#', ';', '[']))
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect(),
        )
    }

    /// The value of a key set exactly once.
    fn one(&self, key: &str) -> &str {
        let found: Vec<&str> = self
            .0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(found.len(), 1, "{key}= in the unit: {found:?}");
        found[0]
    }

    /// `ExecStart=` as systemd runs it: `$VAR` is the variable's value
    /// split at white space, `${VAR}` one word.
    fn exec_start(&self, env: &BTreeMap<String, String>) -> Vec<String> {
        let mut argv = Vec::new();
        for word in self.one("ExecStart").split_whitespace() {
            if let Some(name) = word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
                argv.push(env.get(name).cloned().unwrap_or_default());
            } else if let Some(name) = word.strip_prefix('$') {
                let value = env.get(name).map(String::as_str).unwrap_or_default();
                argv.extend(value.split_whitespace().map(str::to_string));
            } else {
                argv.push(word.to_string());
            }
        }
        argv
    }
}

/// A redis-server and a redis-sentinel watching it, on free ports of
/// 127.0.0.1; killed on drop.
struct Servers {
    master: u16,
    sentinel: u16,
    _children: Vec<Running>,
}

impl Servers {
    fn start(dir: &Path) -> Servers {
        let (master, m) = serve(dir, "redis-server", |port| {
            vec![
                "--port".into(),
                port.to_string(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--save".into(),
                String::new(),
                "--appendonly".into(),
                "no".into(),
                "--dir".into(),
                dir.display().to_string(),
            ]
        });
        let (sentinel, s) = serve(dir, "redis-sentinel", |port| {
            let conf = dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor deb 127.0.0.1 {master} 1\n",
                    dir.display()
                ),
            )
            .unwrap();
            vec![conf.display().to_string()]
        });
        Servers {
            master,
            sentinel,
            _children: vec![m, s],
        }
    }
}

/// Starts `program` with `args(port)` on a free port and waits until it
/// answers PING; another port if one was taken meanwhile.
fn serve(dir: &Path, program: &str, args: impl Fn(u16) -> Vec<String>) -> (u16, Running) {
    for _ in 0..3 {
        let port = free_port();
        let log = dir.join(format!("{program}-{port}.log"));
        let mut child = Running(
            Command::new(program)
                .args(args(port))
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{program}: {e} (scripts/install-deps installs it)")),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.0.try_wait().unwrap().is_none() && Instant::now() < deadline {
            if pong(port) {
                return (port, child);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let printed = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            printed.contains("Address already in use"),
            "{program} did not start: {printed}"
        );
    }
    panic!("{program}: no free port in three tries");
}

/// Whether a Redis server answers PING on `port`.
fn pong(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    conn.write_all(b"PING\r\n").is_ok()
        && conn.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// A child process, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Purges the package on drop unless disarmed: a failed run does not leave
/// it installed.
struct Installed {
    armed: bool,
}

impl Installed {
    fn new() -> Installed {
        Installed { armed: true }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if self.armed && status().is_some() {
            let _ = Command::new("dpkg")
                .args(["--purge", PACKAGE])
                .stdin(Stdio::null())
                .status();
        }
    }
}

/// Held while the test runs: two runs at once (two checkouts on one
/// machine) would install and purge the same package under each other. A
/// directory, made atomically; one whose holder has died is taken over.
struct Lock(PathBuf);

impl Lock {
    fn take() -> Lock {
        let path = std::env::temp_dir().join("redis-ha-exporter-debian-test.lock");
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    std::fs::write(path.join("pid"), std::process::id().to_string()).unwrap();
                    return Lock(path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(path.join("pid")).unwrap_or_default();
                    let holder = holder.trim();
                    if !holder.is_empty() && !Path::new("/proc").join(holder).exists() {
                        let _ = std::fs::remove_dir_all(&path);
                        continue;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{path:?} is held by process {holder:?}"
                    );
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("{path:?}: {e}"),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `command` with no input; panics with its output unless it succeeds;
/// returns its stdout.
fn run(command: &mut Command) -> String {
    let out = output(command);
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn output(command: &mut Command) -> std::process::Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e} (scripts/install-deps installs it)"))
}

/// The body of a 200 answer to a GET, `None` otherwise.
fn get(url: &str) -> Option<String> {
    ureq::get(url)
        .timeout(Duration::from_secs(2))
        .call()
        .ok()?
        .into_string()
        .ok()
}

#[test]
fn exec_start_expands_variables_as_systemd_does() {
    let unit = Unit::parse("[Service]\n# c\nExecStart=/bin/x --a $ARGS ${ONE} $NONE\n");
    let env = BTreeMap::from([
        ("ARGS".to_string(), "-b  -c".to_string()),
        ("ONE".to_string(), "d e".to_string()),
    ]);
    assert_eq!(unit.exec_start(&env), ["/bin/x", "--a", "-b", "-c", "d e"]);
}
