//! The servers under test: an embedded broker, a spawned broker binary, kinesalite under node, or
//! any endpoint given by URL; and the CPU time of the process that serves them.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// How long a spawned server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// What serves the endpoint, and so what CPU can be attributed to the server.
pub enum Server {
    /// In this process: its CPU cannot be told apart from the load generator's.
    Embedded(local_broker::RunningBroker),
    /// A child process, measured from /proc/<pid>/stat.
    Process { child: Child, pid: u32 },
    /// Somewhere else: no CPU figures.
    External,
}

/// One endpoint to measure.
pub struct Target {
    /// Short label for tables: "local-broker" or "kinesalite".
    pub name: String,
    /// How it runs: "embedded", "spawned", "external" or "node".
    pub mode: &'static str,
    pub endpoint: String,
    pub server: Server,
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
        })
    }

    pub fn external(endpoint: String) -> Self {
        Self {
            name: "endpoint".into(),
            mode: "external",
            endpoint,
            server: Server::External,
        }
    }

    /// Runs the `local-broker` binary on a free loopback port (it prints the URL it bound).
    pub async fn spawn_broker(binary: &Path) -> Result<Self> {
        let mut child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", "0"])
            // Request logs would cost the server CPU we are trying to measure.
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        let endpoint = listening_line(&mut child, "local-broker listening on ").await?;
        let pid = child.id().context("spawned broker has no pid")?;
        Ok(Self {
            name: "local-broker".into(),
            mode: "spawned",
            endpoint,
            server: Server::Process { child, pid },
        })
    }

    /// Runs kinesalite 3 under node, bound to 127.0.0.1 only (it binds every interface by
    /// default), installing it into `peers_dir` with npm first if it is not there.
    pub async fn spawn_kinesalite(peers_dir: &Path) -> Result<Self> {
        let module = peers_dir.join("node_modules").join("kinesalite");
        if !module.join("package.json").exists() {
            eprintln!("installing kinesalite@3 into {}", peers_dir.display());
            std::fs::create_dir_all(peers_dir)?;
            let status = Command::new("npm")
                .arg("install")
                .arg("--prefix")
                .arg(peers_dir)
                .args([
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "kinesalite@3",
                ])
                .stdin(Stdio::null())
                .status()
                .await
                .context("running npm (is Node.js installed?)")?;
            if !status.success() {
                bail!("npm install kinesalite@3 failed: {status}");
            }
        }
        let module = module
            .canonicalize()
            .with_context(|| format!("{} missing after npm install", module.display()))?;
        let wrapper = peers_dir.join("kinesalite-loopback.js");
        std::fs::write(&wrapper, KINESALITE_WRAPPER)
            .with_context(|| format!("writing {}", wrapper.display()))?;
        let mut child = Command::new("node")
            .arg(&wrapper)
            .arg(&module)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning node (is Node.js installed?)")?;
        let endpoint = listening_line(&mut child, "kinesalite listening on ").await?;
        let pid = child.id().context("spawned kinesalite has no pid")?;
        Ok(Self {
            name: "kinesalite".into(),
            mode: "node",
            endpoint,
            server: Server::Process { child, pid },
        })
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

/// Binds kinesalite to loopback on a free port and prints the URL, as local-broker does.
const KINESALITE_WRAPPER: &str = r#"// Written by kinesis-bench: kinesalite on 127.0.0.1 only, streams ACTIVE at once.
const kinesalite = require(process.argv[2]);
const server = kinesalite({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100});
server.listen(0, '127.0.0.1', () => {
  console.log('kinesalite listening on http://127.0.0.1:' + server.address().port);
});
"#;

/// Reads the child's stdout until the line with `prefix`, returns the rest of that line, and keeps
/// draining stdout in the background so a chatty server never blocks on a full pipe.
async fn listening_line(child: &mut Child, prefix: &str) -> Result<String> {
    let stdout: ChildStdout = child.stdout.take().context("child stdout not piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(START_TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok::<_, anyhow::Error>(Some(rest.trim().to_owned()));
            }
        }
        Ok(None)
    })
    .await
    .context("server did not print its endpoint in time")??;
    let endpoint = found.context("server exited before printing its endpoint")?;
    if !endpoint.starts_with("http://127.0.0.1:") {
        bail!("server listens on {endpoint}; only loopback endpoints are measured");
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(endpoint)
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
