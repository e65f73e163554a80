//! The servers under test: an embedded broker, a spawned broker binary, a peer (kinesalite or
//! kinesis-mock) under node, or any endpoint given by URL; their startup time, and the CPU time and
//! memory of the process that serves them.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;
use tokio::process::{Child, Command};

/// How long a spawned server may take to answer its first ListStreams.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a starting server is asked ListStreams.
const START_POLL: Duration = Duration::from_millis(2);
/// How long a started server is left alone before its idle memory is read.
const IDLE_SETTLE: Duration = Duration::from_millis(500);

/// What serves the endpoint, and so what CPU can be attributed to the server.
pub enum Server {
    /// In this process: its CPU cannot be told apart from the load generator's.
    Embedded(local_broker::RunningBroker),
    /// A child process, measured from /proc/<pid>/stat.
    Process { child: Child, pid: u32 },
    /// Somewhere else: no CPU figures.
    External,
}

/// A local Kinesis from the npm registry to measure ourselves against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    /// kinesalite 3 (Node.js, LevelDB in memory).
    Kinesalite,
    /// kinesis-mock, as its npm build `kinesis-local` (Scala.js on Node.js).
    KinesisMock,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Kinesalite => "kinesalite",
            Peer::KinesisMock => "kinesis-mock",
        }
    }

    /// The npm package and the version range installed.
    fn package(self) -> (&'static str, &'static str) {
        match self {
            Peer::Kinesalite => ("kinesalite", "3"),
            Peer::KinesisMock => ("kinesis-local", "0.6"),
        }
    }
}

/// Startup and memory of a server in its own process.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ProcessFacts {
    /// Spawn → first successful ListStreams.
    pub startup_ms: Option<f64>,
    /// Resident memory once started and idle.
    pub idle_rss_mib: Option<f64>,
}

/// One endpoint to measure.
pub struct Target {
    /// Short label for tables: "local-broker", "kinesalite", "kinesis-mock".
    pub name: String,
    /// How it runs: "embedded", "spawned", "external" or "node".
    pub mode: &'static str,
    pub endpoint: String,
    pub server: Server,
    pub facts: ProcessFacts,
}

impl Target {
    pub async fn embedded() -> Result<Self> {
        let broker = local_broker::LocalBroker::builder()
            .start()
            .await
            .context("starting the embedded broker")?;
        Ok(Self {
            name: "local-broker".into(),
            mode: "embedded",
            endpoint: broker.endpoint(),
            server: Server::Embedded(broker),
            facts: ProcessFacts::default(),
        })
    }

    pub fn external(endpoint: String) -> Self {
        Self {
            name: "endpoint".into(),
            mode: "external",
            endpoint,
            server: Server::External,
            facts: ProcessFacts::default(),
        }
    }

    /// Runs the `local-broker` binary on a free loopback port.
    pub async fn spawn_broker(binary: &Path) -> Result<Self> {
        let port = free_port()?;
        let mut command = Command::new(binary);
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            // Request logs would cost the server CPU we are trying to measure.
            .env("RUST_LOG", "warn");
        spawn("local-broker", "spawned", command, port).await
    }

    /// Runs a peer under node, bound to 127.0.0.1 only (both bind every interface by default),
    /// installing it into `peers_dir` with npm first if it is not there.
    pub async fn spawn_peer(peer: Peer, peers_dir: &Path) -> Result<Self> {
        let module = install(peer, peers_dir).await?;
        // Absolute: kinesis-mock runs in its own directory.
        let peers_dir = &peers_dir
            .canonicalize()
            .with_context(|| format!("{} is missing", peers_dir.display()))?;
        let port = free_port()?;
        let command = match peer {
            Peer::Kinesalite => {
                let wrapper = peers_dir.join("kinesalite-loopback.js");
                std::fs::write(&wrapper, KINESALITE_WRAPPER)
                    .with_context(|| format!("writing {}", wrapper.display()))?;
                let mut command = Command::new("node");
                command.arg(&wrapper).arg(&module).arg(port.to_string());
                command
            }
            Peer::KinesisMock => {
                let preload = peers_dir.join("loopback.js");
                std::fs::write(&preload, LOOPBACK_PRELOAD)
                    .with_context(|| format!("writing {}", preload.display()))?;
                let mut command = Command::new("node");
                // It reads its certificate (server.json) from the working directory.
                command
                    .current_dir(&module)
                    .arg("-r")
                    .arg(&preload)
                    .arg(module.join("main.js"))
                    .env("KINESIS_MOCK_PLAIN_PORT", port.to_string())
                    .env("KINESIS_MOCK_TLS_PORT", free_port()?.to_string())
                    .env("CREATE_STREAM_DURATION", "0ms")
                    .env("DELETE_STREAM_DURATION", "0ms")
                    .env("SHARD_LIMIT", "1000")
                    .env("ROOT_LOG_LEVEL", "ERROR");
                command
            }
        };
        spawn(peer.name(), "node", command, port).await
    }

    /// The pid whose CPU is the server's, if the server runs in its own process.
    pub fn server_pid(&self) -> Option<u32> {
        match &self.server {
            Server::Process { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// Whether the server process is still alive (always true when it is not ours to watch).
    pub fn alive(&mut self) -> bool {
        match &mut self.server {
            Server::Process { child, .. } => matches!(child.try_wait(), Ok(None)),
            _ => true,
        }
    }

    pub async fn stop(self) {
        match self.server {
            Server::Embedded(broker) => broker.shutdown().await,
            Server::Process { mut child, .. } => {
                // Kill, then reap, so no zombie or orphan outlives the benchmark.
                let _ = child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            }
            Server::External => {}
        }
    }
}

/// Installs `peer` with npm into `peers_dir` unless it is there; returns its module directory.
async fn install(peer: Peer, peers_dir: &Path) -> Result<PathBuf> {
    let (package, version) = peer.package();
    let module = peers_dir.join("node_modules").join(package);
    if !module.join("package.json").exists() {
        eprintln!(
            "installing {package}@{version} into {}",
            peers_dir.display()
        );
        std::fs::create_dir_all(peers_dir)?;
        let status = Command::new("npm")
            .arg("install")
            .arg("--prefix")
            .arg(peers_dir)
            .args(["--no-audit", "--no-fund", "--loglevel=error"])
            .arg(format!("{package}@{version}"))
            .stdin(Stdio::null())
            .status()
            .await
            .context("running npm (is Node.js installed?)")?;
        if !status.success() {
            bail!("npm install {package}@{version} failed: {status}");
        }
    }
    module
        .canonicalize()
        .with_context(|| format!("{} missing after npm install", module.display()))
}

/// A loopback port free right now (the OS picks it; the server binds it a moment later).
fn free_port() -> Result<u16> {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(socket.local_addr()?.port())
}

/// Spawns a server that will listen on 127.0.0.1:`port`, and times it from spawn to its first
/// successful ListStreams; then reads its idle resident memory.
async fn spawn(name: &str, mode: &'static str, mut command: Command, port: u16) -> Result<Target> {
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {name}"))?;
    let pid = child.id().context("spawned server has no pid")?;
    let mut target = Target {
        name: name.to_owned(),
        mode,
        endpoint,
        server: Server::Process { child, pid },
        facts: ProcessFacts::default(),
    };
    let client = crate::client(&target.endpoint);
    let ready = tokio::time::timeout(START_TIMEOUT, async {
        loop {
            if client.list_streams().send().await.is_ok() {
                return;
            }
            tokio::time::sleep(START_POLL).await;
        }
    })
    .await;
    if ready.is_err() || !target.alive() {
        target.stop().await;
        bail!("{name} did not answer ListStreams within {START_TIMEOUT:?}");
    }
    target.facts.startup_ms = Some(started.elapsed().as_secs_f64() * 1e3);
    tokio::time::sleep(IDLE_SETTLE).await;
    target.facts.idle_rss_mib = memory_mib(pid, "VmRSS");
    Ok(target)
}

/// Binds kinesalite to loopback on the port given, streams ACTIVE at once.
const KINESALITE_WRAPPER: &str = r#"// Written by kinesis-bench: kinesalite on 127.0.0.1 only, streams ACTIVE at once.
const kinesalite = require(process.argv[2]);
const server = kinesalite({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100});
server.listen(Number(process.argv[3]), '127.0.0.1');
"#;

/// Preloaded with `node -r`: every server the process opens listens on 127.0.0.1 only, whatever
/// host it asked for (kinesis-mock has no setting for it).
const LOOPBACK_PRELOAD: &str = r#"// Written by kinesis-bench: bind every listening socket to 127.0.0.1.
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'object' && args[0] !== null) {
    args[0] = Object.assign({}, args[0], { host: '127.0.0.1' });
  } else if (typeof args[0] === 'number' || /^\d+$/.test(String(args[0]))) {
    const callbacks = args.filter((a) => typeof a === 'function');
    args = [Number(args[0]), '127.0.0.1', ...callbacks];
  }
  return listen.apply(this, args);
};
"#;

/// A memory figure of a process from /proc/<pid>/status, in MiB: `VmRSS` (now) or `VmHWM`
/// (peak resident).
pub fn memory_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    let kib: f64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

/// User + system CPU time of a process so far, from /proc/<pid>/stat (all threads).
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Field 2 (comm) may hold spaces or parentheses; the fields after its closing ')' are fixed:
    // state is field 3, utime field 14 and stime field 15.
    let (_, rest) = stat.rsplit_once(')').context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .context("short /proc stat")?
            .parse::<u64>()
            .context("non-numeric /proc stat field")
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(
        total as f64 / clock_ticks_per_second(),
    ))
}

/// CPU time of this process (the load generator, plus an embedded broker if there is one).
pub fn own_cpu_time() -> Result<Duration> {
    cpu_time(std::process::id())
}

/// USER_HZ, the unit of /proc CPU times: asked of `getconf` once, 100 if that fails (the value
/// on every mainstream Linux build).
fn clock_ticks_per_second() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|hz| *hz > 0.0)
            .unwrap_or(100.0)
    })
}

/// Default place for npm-installed peers: `<workspace>/target/peers`.
pub fn default_peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("peers")
}
