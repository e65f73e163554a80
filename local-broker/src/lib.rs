//! A Kinesis-compatible local server for tests and self-hosting.
//!
//! One endpoint serves the Kinesis Data Streams API (AWS JSON 1.1 and CBOR) and the slice of
//! DynamoDB that KCL lease tables need (AWS JSON 1.0), so one `endpoint_url` serves both SDK
//! clients. Embed it in a test, or run the `local-broker` binary.
//!
//! ```no_run
//! # async fn demo() -> Result<(), local_broker::BrokerError> {
//! let broker = local_broker::LocalBroker::builder().start().await?;
//! println!("Kinesis and DynamoDB at {}", broker.endpoint());
//! // point aws-sdk-kinesis / aws-sdk-dynamodb at broker.endpoint() ...
//! broker.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`http`] | routing by `X-Amz-Target`, wire protocols, AWS error encoding, validation, SigV4, fault injection |
//! | [`kinesis`] | streams, shards, records, iterators, resharding |
//! | [`dynamodb`] | tables, items, condition and update expressions |
//! | [`storage`] | the data directory: record log, hot tail cache, metadata log, sync modes |
//! | [`observe`] | `/metrics`, `/health`, the status page at `/`, request logs |
//! | [`firehose`] | delivery streams: buffering, processing, delivery to S3 and HTTP endpoints |
//! | [`video`] | Kinesis Video Streams: control plane, PutMedia, GetMedia, clips, HLS |

pub mod clock;
pub mod config;
pub mod dynamodb;
pub mod firehose;
pub mod http;
pub mod kinesis;
pub mod observe;
pub mod storage;
pub mod tls;
pub mod video;

pub use clock::{Clock, ShiftableClock, SystemClock};
pub use config::BrokerConfig;
pub use http::faults::{FaultParseError, FaultRule, Faults};
pub use http::sigv4::Credentials;
pub use storage::SyncMode;
pub use tls::TlsSettings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded or generated.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The data directory could not be opened or recovered.
    #[error("data directory {dir}: {source}")]
    Storage {
        dir: String,
        #[source]
        source: storage::StorageError,
    },
    /// The data directory holds a Firehose delivery stream this broker cannot deliver for.
    #[error(transparent)]
    Firehose(#[from] firehose::UnservableStream),
}

/// Entry point: `LocalBroker::builder()`.
pub struct LocalBroker;

impl LocalBroker {
    /// A builder listening on `127.0.0.1:0` (an ephemeral port) with in-memory state.
    pub fn builder() -> LocalBrokerBuilder {
        LocalBrokerBuilder {
            host: "127.0.0.1".to_owned(),
            port: 0,
            config: BrokerConfig::default(),
            tls: None,
            faults: Faults::default(),
        }
    }
}

/// Configures and starts a broker.
pub struct LocalBrokerBuilder {
    host: String,
    port: u16,
    config: BrokerConfig,
    tls: Option<TlsSettings>,
    faults: Faults,
}

impl LocalBrokerBuilder {
    /// Interface to bind (default `127.0.0.1`).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Port to bind (default 0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Region used in ARNs (default `us-east-1`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.config.region = region.into();
        self
    }

    /// Account id used in ARNs (default `000000000000`).
    pub fn account_id(mut self, account_id: impl Into<String>) -> Self {
        self.config.account_id = account_id.into();
        self
    }

    /// How long resources stay in CREATING/UPDATING/DELETING (default 0).
    pub fn state_transition_delay(mut self, delay: Duration) -> Self {
        self.config.state_transition_delay = delay;
        self
    }

    /// How long a SubscribeToShard stream lasts before the server ends it (default 5 minutes).
    pub fn subscription_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.subscription_lifetime = lifetime;
        self
    }

    /// The time source (default the system clock); tests pass a [`ShiftableClock`].
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.config.clock = Arc::new(clock);
        self
    }

    /// Requires every request to be SigV4-signed by one of these credentials (default: any
    /// signature is accepted).
    pub fn auth(mut self, credentials: http::sigv4::Credentials) -> Self {
        self.config.auth = Some(credentials);
        self
    }

    /// Enforces AWS's per-shard throughput limits (default off): writes beyond 1 MiB/s or
    /// 1,000 records/s and reads beyond 5 calls/s or 2 MiB/s get
    /// `ProvisionedThroughputExceededException`. ON_DEMAND streams then add shards like AWS:
    /// a shard whose writes stay throttled for a second is split.
    pub fn enforce_limits(mut self, enforce: bool) -> Self {
        self.config.enforce_limits = enforce;
        self
    }

    /// Keeps streams, records, consumers, tags, policies and DynamoDB tables in `dir`, so they
    /// survive restarts (default: in memory only). See [`storage`] for the layout.
    pub fn data_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.config.data_dir = Some(dir.into());
        self
    }

    /// When writes reach the disk with a data directory (default [`SyncMode::Always`]); see
    /// [`storage`] for what each mode promises.
    pub fn sync(mut self, mode: SyncMode) -> Self {
        self.config.sync = mode;
        self
    }

    /// With a data directory, how many bytes of recently appended record bodies stay in memory
    /// across all shards (default [`storage::DEFAULT_CACHE_BYTES`], 64 MiB). Older records are
    /// read from disk, so the broker's memory does not grow with the data it holds: per record it
    /// keeps a 24-byte index entry.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), local_broker::BrokerError> {
    /// let broker = local_broker::LocalBroker::builder()
    ///     .data_dir("/var/lib/local-broker")
    ///     .cache_size(256 * 1024 * 1024)
    ///     .start()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.config.cache_bytes = bytes;
        self
    }

    /// Injects faults into the requests `rule` names (default: none); see [`FaultRule`]. Rules
    /// can be changed while the broker runs through [`RunningBroker::faults`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), local_broker::BrokerError> {
    /// use local_broker::{FaultRule, LocalBroker};
    /// let broker = LocalBroker::builder()
    ///     .fault(FaultRule::new("GetRecords").throttle(0.2).drop_connection(0.05))
    ///     .fault_seed(7)
    ///     .start()
    ///     .await?;
    /// broker.faults().clear(); // healthy again
    /// # Ok(()) }
    /// ```
    pub fn fault(self, rule: FaultRule) -> Self {
        self.faults.add(rule);
        self
    }

    /// Makes the injected faults reproducible (default: a random seed).
    pub fn fault_seed(self, seed: u64) -> Self {
        self.faults.seed(seed);
        self
    }

    /// Where Firehose S3 destinations write objects: `<dir>/<bucket>/<key>` (default: nowhere,
    /// and S3 destinations are refused).
    pub fn s3_root(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.config.s3_root = Some(dir.into());
        self
    }

    /// Sends Firehose S3 destinations' objects to an S3-compatible endpoint (path-style;
    /// credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`) instead of a directory.
    /// Takes precedence over [`Self::s3_root`].
    pub fn s3_endpoint(mut self, url: impl Into<String>) -> Self {
        self.config.s3_endpoint = Some(url.into());
        self
    }

    /// Serves the Lambda function `arn` for Firehose transforms from `url`: an HTTP server that
    /// takes the Firehose transform event as a JSON POST and answers with the records
    /// (`Ok` / `Dropped` / `ProcessingFailed`), as a Lambda function would.
    pub fn lambda_function(mut self, arn: impl Into<String>, url: impl Into<String>) -> Self {
        self.config.lambda_functions.insert(arn.into(), url.into());
        self
    }

    /// Serves HTTPS (HTTP/1.1 and HTTP/2 by ALPN) instead of cleartext HTTP.
    pub fn tls(mut self, tls: TlsSettings) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Binds the socket and starts serving in the background.
    pub async fn start(self) -> Result<RunningBroker, BrokerError> {
        let addr = format!("{}:{}", self.host, self.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| BrokerError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| BrokerError::Bind { addr, source })?;
        // Everything that can fail comes before any task starts: a failed start leaves nothing
        // running and releases the data directory.
        let tls = self.tls.as_ref().map(TlsSettings::load).transpose()?;
        let services = Arc::new(self.services()?);
        services.firehose.start(Arc::clone(&services.observer));
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        if services.storage.is_durable() {
            tokio::spawn(sweep_retention(Arc::clone(&services), shutdown.clone()));
        }
        tokio::spawn(metrics_upkeep(
            Arc::clone(&services.observer),
            shutdown.clone(),
        ));
        let storage = services.storage.clone();
        let app = http::router(Arc::clone(&services));
        let (scheme, certificate_pem) = match &tls {
            Some(tls) => ("https", Some(tls.certificate_pem.clone())),
            None => ("http", None),
        };
        let server = match tls {
            None => tokio::spawn(async move {
                // Cleartext: HTTP/1.1, and HTTP/2 with prior knowledge (h2c), detected per connection.
                let listener = http::faults::SeverableListener(listener);
                let app = app.into_make_service_with_connect_info::<http::faults::Severance>();
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
                if let Err(err) = served {
                    tracing::error!(%err, "broker stopped with an error");
                }
            }),
            Some(tls) => tokio::spawn(serve_tls(listener, tls.acceptor, app, stop)),
        };
        tracing::info!(endpoint = %format!("{scheme}://{local_addr}"), "local broker listening");
        Ok(RunningBroker {
            local_addr,
            scheme,
            certificate_pem,
            shutdown,
            server,
            storage,
            services,
        })
    }

    /// The services, fresh in memory or recovered from the data directory.
    fn services(&self) -> Result<http::Services, BrokerError> {
        let (kinesis, dynamodb, storage, meta) = match &self.config.data_dir {
            None => (
                kinesis::Kinesis::new(self.config.clone()),
                dynamodb::DynamoDb::new(self.config.clone()),
                storage::Storage::memory(),
                Default::default(),
            ),
            Some(dir) => {
                let failed = |source| BrokerError::Storage {
                    dir: dir.display().to_string(),
                    source,
                };
                let started = std::time::Instant::now();
                let mut replay = kinesis::store::Replay::new(self.config.clock.now_millis());
                let (storage, recovered) = storage::Storage::open(
                    dir,
                    self.config.sync,
                    self.config.cache_bytes,
                    &mut replay,
                )
                .map_err(failed)?;
                let kinesis = kinesis::Kinesis::restore(
                    self.config.clone(),
                    storage.clone(),
                    &recovered,
                    replay,
                )
                .map_err(failed)?;
                let dynamodb =
                    dynamodb::DynamoDb::restore(self.config.clone(), storage.clone(), &recovered)
                        .map_err(failed)?;
                tracing::info!(
                    dir = %dir.display(),
                    sync = ?self.config.sync,
                    elapsed = ?started.elapsed(),
                    "recovered the data directory"
                );
                (kinesis, dynamodb, storage, recovered.meta)
            }
        };
        let objects = match (&self.config.s3_endpoint, &self.config.s3_root) {
            (Some(url), _) => firehose::objects::ObjectStore::endpoint(url, &self.config.region),
            (None, Some(dir)) => firehose::objects::ObjectStore::Directory(dir.clone()),
            (None, None) => firehose::objects::ObjectStore::None,
        };
        let kinesis = Arc::new(kinesis);
        let dir = || {
            self.config
                .data_dir
                .as_ref()
                .map(|dir| dir.display().to_string())
                .unwrap_or_default()
        };
        // A failure releases the data directory (its LOCK) for the next attempt.
        let firehose = firehose::Firehose::new(
            self.config.clone(),
            objects,
            Arc::clone(&kinesis),
            &storage,
            &meta,
        )
        .map_err(|err| {
            storage.close();
            match err {
                firehose::RestoreError::Storage(source) => {
                    BrokerError::Storage { dir: dir(), source }
                }
                firehose::RestoreError::Unservable(unservable) => BrokerError::Firehose(unservable),
            }
        })?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let video = video::Video::restore(self.config.clone(), scheme, &storage, &meta).map_err(
            |source| {
                storage.close();
                BrokerError::Storage { dir: dir(), source }
            },
        )?;
        Ok(http::Services {
            firehose,
            kinesis,
            dynamodb,
            auth: self.config.auth.clone(),
            clock: Arc::clone(&self.config.clock),
            storage,
            faults: self.faults.clone(),
            observer: Arc::default(),
            video,
        })
    }
}

/// Deletes record segments past retention, every [`config::RETENTION_SWEEP_INTERVAL`], so disk
/// use stays bounded under a steady load.
async fn sweep_retention(services: Arc<http::Services>, stop: CancellationToken) {
    let mut every = tokio::time::interval(config::RETENTION_SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.cancelled() => return,
        }
        match services.kinesis.expire_records() {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted expired record segments"),
            Err(err) => tracing::warn!(%err, "cannot delete expired record segments"),
        }
        match services.video.expire_fragments() {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted expired video fragment segments"),
            Err(err) => tracing::warn!(%err, "cannot delete expired video fragment segments"),
        }
    }
}

/// Folds request-latency samples into their summaries every [`observe::UPKEEP_INTERVAL`], so a
/// broker nobody scrapes does not keep every sample.
async fn metrics_upkeep(observer: Arc<observe::Observer>, stop: CancellationToken) {
    let mut every = tokio::time::interval(observe::UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = every.tick() => observer.upkeep(),
            _ = stop.cancelled() => return,
        }
    }
}

/// Accepts TLS connections and serves each with HTTP/1.1 or HTTP/2 as ALPN chose, until `stop`;
/// then waits for open connections to finish their requests.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
    stop: CancellationToken,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "accept failed");
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let acceptor = acceptor.clone();
        let tcp = http::faults::Severable::new(tcp);
        let app = app
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(tcp.severance())));
        let service = hyper_util::service::TowerToHyperService::new(app);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::debug!(%peer, %err, "TLS handshake failed");
                    return;
                }
            };
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(err) = watcher.watch(connection).await {
                tracing::debug!(%peer, %err, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}

/// A broker serving in the background. Dropping it leaves the server running until the runtime
/// ends; call [`RunningBroker::shutdown`] to stop it gracefully.
pub struct RunningBroker {
    local_addr: SocketAddr,
    scheme: &'static str,
    certificate_pem: Option<String>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    storage: storage::Storage,
    services: Arc<http::Services>,
}

impl RunningBroker {
    /// The base URL to give SDK clients as `endpoint_url`, e.g. `http://127.0.0.1:40321`
    /// (`https://` when serving TLS).
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.local_addr)
    }

    /// The PEM certificate presented when serving TLS, for clients to trust.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.certificate_pem.as_deref()
    }

    /// The fault rules in force, to change while the broker runs (e.g. turn faults off to let
    /// a consumer catch up).
    pub fn faults(&self) -> &Faults {
        &self.services.faults
    }

    /// The bound socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Bytes of record bodies held in memory with a data directory: the hot tail, never more
    /// than [`LocalBrokerBuilder::cache_size`]. 0 without a data directory, where every record
    /// is in memory anyway.
    pub fn cached_record_bytes(&self) -> usize {
        self.storage.cached_bytes()
    }

    /// Stops accepting connections, lets in-flight requests finish, waits for the server,
    /// delivers what Firehose streams still buffer (with a data directory they stay there for the
    /// next start instead), and flushes the data directory.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        if let Err(err) = self.server.await {
            tracing::error!(%err, "broker task ended abnormally");
        }
        self.services.firehose.shutdown().await;
        self.storage.close();
    }
}
