//! The broker's Docker image (see the workspace `Dockerfile`) as a testcontainers [`Image`], for
//! users who start their test dependencies as containers, the way they start LocalStack:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use testcontainers::runners::AsyncRunner;
//! let broker = integration_tests::container::LocalBrokerImage::default().start().await?;
//! let port = broker.get_host_port_ipv4(integration_tests::container::PORT).await?;
//! let endpoint = format!("http://127.0.0.1:{port}");
//! # Ok(()) }
//! ```
//!
//! Build the image first: `docker build -t kcl-rs/local-broker .` at the workspace root.

use testcontainers::Image;
use testcontainers::core::{ContainerPort, WaitFor};

/// The port the broker listens on inside the container.
pub const PORT: ContainerPort = ContainerPort::Tcp(4567);

/// `kcl-rs/local-broker:<tag>`, ready once it prints its listening line.
#[derive(Debug, Clone)]
pub struct LocalBrokerImage {
    tag: String,
    args: Vec<String>,
}

impl Default for LocalBrokerImage {
    /// `kcl-rs/local-broker:latest` with in-memory state.
    fn default() -> Self {
        Self {
            tag: "latest".into(),
            args: Vec::new(),
        }
    }
}

impl LocalBrokerImage {
    /// The image name, as the Dockerfile's usage line builds it.
    pub const NAME: &'static str = "kcl-rs/local-broker";

    /// Another tag of the image.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = tag.into();
        self
    }

    /// Extra broker flags (e.g. `--enforce-limits`, `--state-transition-delay-ms 500`).
    pub fn with_arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
}

impl Image for LocalBrokerImage {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn tag(&self) -> &str {
        &self.tag
    }

    fn ready_conditions(&self) -> Vec<WaitFor> {
        vec![WaitFor::message_on_stdout("local-broker listening on")]
    }

    fn cmd(&self) -> impl IntoIterator<Item = impl Into<std::borrow::Cow<'_, str>>> {
        let mut cmd: Vec<&str> = vec!["--host", "0.0.0.0", "--port", "4567"];
        cmd.extend(self.args.iter().map(String::as_str));
        cmd
    }

    fn expose_ports(&self) -> &[ContainerPort] {
        &[PORT]
    }
}

/// Why no Docker engine can be used, if none answers `GET /_ping` on `DOCKER_HOST` (a
/// `unix://` socket; default `/var/run/docker.sock`). Tests that need the engine skip with this
/// message instead of failing.
pub fn engine_unreachable() -> Option<String> {
    use std::io::{Read, Write};
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let socket = match host.strip_prefix("unix://") {
        Some(path) => path.to_owned(),
        None if host.is_empty() => "/var/run/docker.sock".to_owned(),
        None => return ping_tcp(&host),
    };
    let mut stream = match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(stream) => stream,
        Err(err) => return Some(format!("no Docker engine at {socket}: {err}")),
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let ping = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
    let mut answer = String::new();
    match stream
        .write_all(ping)
        .and_then(|()| stream.read_to_string(&mut answer))
    {
        Ok(_) if answer.ends_with("OK") => None,
        Ok(_) => Some(format!(
            "the Docker engine at {socket} did not answer its ping"
        )),
        Err(err) => Some(format!(
            "the Docker engine at {socket} did not answer: {err}"
        )),
    }
}

/// `DOCKER_HOST=tcp://host:port`: reachable if it accepts a connection.
fn ping_tcp(host: &str) -> Option<String> {
    let addr = host.strip_prefix("tcp://").unwrap_or(host);
    match std::net::TcpStream::connect(addr) {
        Ok(_) => None,
        Err(err) => Some(format!("no Docker engine at {host}: {err}")),
    }
}
