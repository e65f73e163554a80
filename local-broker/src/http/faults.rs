//! Fault injection for consumer tests: throttles, internal failures, slow responses and dropped
//! connections, per operation, off by default.
//!
//! A [`FaultRule`] names the operations it applies to and how often each fault happens. The front
//! door asks [`Faults::roll`] once per request, after the signature check and before the
//! operation runs, so an injected fault never changes state: the client may simply retry.
//!
//! | fault | what the client sees |
//! |---|---|
//! | `throttle` | the operation's AWS throttling error (HTTP 400): Kinesis `ProvisionedThroughputExceededException` for PutRecord(s), GetRecords, GetShardIterator and `LimitExceededException` otherwise; DynamoDB `ProvisionedThroughputExceededException` for item operations, `LimitExceededException` for table changes and `ThrottlingException` otherwise |
//! | `error` | HTTP 500: Kinesis `InternalFailure`, DynamoDB `InternalServerError` |
//! | `drop` | the connection closes without a response |
//! | `slow` | the answer comes after the rule's latency (combines with the others) |
//!
//! The text form (`--fault`) is `OPERATION:KIND=P[,KIND=P...]`, where `OPERATION` is an operation
//! name (`GetRecords`, any service), a service-qualified one (`kinesis:GetRecords`,
//! `dynamodb:UpdateItem`), `kinesis:*`, `dynamodb:*` or `*`; `P` is a probability in `[0, 1]`;
//! `slow` takes `P@LATENCY` with the latency in `ms` or `s`:
//!
//! ```
//! use local_broker::FaultRule;
//! let rule: FaultRule = "GetRecords:throttle=0.2,error=0.1,slow=0.5@200ms".parse().unwrap();
//! assert_eq!(rule, FaultRule::new("GetRecords").throttle(0.2).internal_failure(0.1)
//!     .slow(0.5, std::time::Duration::from_millis(200)));
//! ```
//!
//! Every rule that matches a request is rolled, in order: the first fault drawn wins and the
//! latencies of all slow draws add up. With [`Faults::seed`] the draws are reproducible for a
//! client that sends one request at a time.

use super::Service;
use super::error::ApiError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The operations a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// `*`, or `kinesis:*` / `dynamodb:*` when a service is named.
    Any(Option<Service>),
    /// One operation, in one service or in any.
    Operation(Option<Service>, String),
}

impl Target {
    fn matches(&self, service: Service, operation: &str) -> bool {
        let service_matches = |s: &Option<Service>| s.is_none_or(|s| s == service);
        match self {
            Target::Any(s) => service_matches(s),
            Target::Operation(s, name) => service_matches(s) && name == operation,
        }
    }
}

/// Which faults one set of operations suffers, and how often.
///
/// ```
/// use local_broker::FaultRule;
/// use std::time::Duration;
/// let flaky_reads = FaultRule::new("GetRecords").throttle(0.2).drop_connection(0.05);
/// let slow_leases = FaultRule::new("dynamodb:UpdateItem").slow(0.3, Duration::from_millis(100));
/// # let _ = (flaky_reads, slow_leases);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    target: Target,
    throttle: f64,
    internal_failure: f64,
    drop_connection: f64,
    slow: f64,
    latency: Duration,
}

impl FaultRule {
    /// A rule that injects nothing yet, for the operations `target` names (`GetRecords`,
    /// `dynamodb:UpdateItem`, `kinesis:*`, `*`). An unknown service prefix matches nothing.
    pub fn new(target: &str) -> Self {
        Self {
            target: parse_target(target).unwrap_or(Target::Operation(None, target.to_owned())),
            throttle: 0.0,
            internal_failure: 0.0,
            drop_connection: 0.0,
            slow: 0.0,
            latency: Duration::ZERO,
        }
    }

    /// Answers the operation's throttling error with this probability (clamped to `[0, 1]`).
    pub fn throttle(mut self, probability: f64) -> Self {
        self.throttle = clamp(probability);
        self
    }

    /// Answers HTTP 500 with this probability.
    pub fn internal_failure(mut self, probability: f64) -> Self {
        self.internal_failure = clamp(probability);
        self
    }

    /// Closes the connection without a response with this probability.
    pub fn drop_connection(mut self, probability: f64) -> Self {
        self.drop_connection = clamp(probability);
        self
    }

    /// Delays the answer by `latency` with this probability.
    pub fn slow(mut self, probability: f64, latency: Duration) -> Self {
        self.slow = clamp(probability);
        self.latency = latency;
        self
    }

    fn roll(&self, rng: &mut StdRng, injection: &mut Injection) {
        if self.slow > 0.0 && rng.random::<f64>() < self.slow {
            injection.delay += self.latency;
        }
        if injection.fault.is_some() {
            return;
        }
        let draw = rng.random::<f64>();
        let mut bound = 0.0;
        for (probability, fault) in [
            (self.throttle, Fault::Throttle),
            (self.internal_failure, Fault::InternalFailure),
            (self.drop_connection, Fault::DropConnection),
        ] {
            bound += probability;
            if probability > 0.0 && draw < bound {
                injection.fault = Some(fault);
                return;
            }
        }
    }
}

fn clamp(probability: f64) -> f64 {
    if probability.is_nan() {
        0.0
    } else {
        probability.clamp(0.0, 1.0)
    }
}

/// Why a `--fault` spec was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultParseError {
    /// No `OPERATION:` before the faults.
    #[error("expected OPERATION:KIND=P[,KIND=P...], e.g. GetRecords:throttle=0.2, got {0:?}")]
    Shape(String),
    /// The operation part is not a name, `*`, or `kinesis:`/`dynamodb:` followed by one.
    #[error(
        "{0:?} is not an operation: use a name like GetRecords, kinesis:NAME, dynamodb:NAME, or *"
    )]
    Target(String),
    /// A fault kind other than throttle, error, drop, slow.
    #[error("unknown fault {0:?}: use throttle, error, drop or slow")]
    Kind(String),
    /// A probability that is not a number in `[0, 1]`.
    #[error("{0:?} is not a probability between 0 and 1")]
    Probability(String),
    /// `slow` without a well-formed `@LATENCY`.
    #[error("slow takes P@LATENCY, e.g. slow=0.5@200ms, got {0:?}")]
    Latency(String),
    /// The fault probabilities of one rule add up to more than 1.
    #[error("throttle, error and drop add up to {0}, more than 1")]
    Total(f64),
}

fn parse_target(text: &str) -> Result<Target, FaultParseError> {
    let (service, name) = match text.split_once(':') {
        Some(("kinesis", name)) => (Some(Service::Kinesis), name),
        Some(("dynamodb", name)) => (Some(Service::DynamoDb), name),
        Some(_) => return Err(FaultParseError::Target(text.to_owned())),
        None => (None, text),
    };
    if name == "*" {
        Ok(Target::Any(service))
    } else if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(Target::Operation(service, name.to_owned()))
    } else {
        Err(FaultParseError::Target(text.to_owned()))
    }
}

fn parse_probability(text: &str) -> Result<f64, FaultParseError> {
    text.parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| FaultParseError::Probability(text.to_owned()))
}

fn parse_latency(text: &str) -> Option<Duration> {
    if let Some(ms) = text.strip_suffix("ms") {
        ms.parse().ok().map(Duration::from_millis)
    } else {
        text.strip_suffix('s')?
            .parse()
            .ok()
            .map(Duration::from_secs)
    }
}

impl std::str::FromStr for FaultRule {
    type Err = FaultParseError;

    /// `OPERATION:KIND=P[,KIND=P...]`; see the module docs.
    fn from_str(text: &str) -> Result<Self, FaultParseError> {
        let (target, faults) = text
            .rsplit_once(':')
            .filter(|(_, faults)| faults.contains('='))
            .ok_or_else(|| FaultParseError::Shape(text.to_owned()))?;
        let mut rule = FaultRule::new("*");
        rule.target = parse_target(target)?;
        for fault in faults.split(',') {
            let (kind, value) = fault
                .split_once('=')
                .ok_or_else(|| FaultParseError::Shape(text.to_owned()))?;
            match kind {
                "throttle" => rule.throttle = parse_probability(value)?,
                "error" => rule.internal_failure = parse_probability(value)?,
                "drop" => rule.drop_connection = parse_probability(value)?,
                "slow" => {
                    let (probability, latency) = value
                        .split_once('@')
                        .ok_or_else(|| FaultParseError::Latency(value.to_owned()))?;
                    rule.slow = parse_probability(probability)?;
                    rule.latency = parse_latency(latency)
                        .ok_or_else(|| FaultParseError::Latency(value.to_owned()))?;
                }
                _ => return Err(FaultParseError::Kind(kind.to_owned())),
            }
        }
        let total = rule.throttle + rule.internal_failure + rule.drop_connection;
        if total > 1.0 {
            return Err(FaultParseError::Total(total));
        }
        Ok(rule)
    }
}

/// A fault that replaces the operation's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operation's throttling error.
    Throttle,
    /// HTTP 500.
    InternalFailure,
    /// No response: the connection is closed.
    DropConnection,
}

impl Fault {
    /// The error a client sees for this fault (for [`Fault::DropConnection`], what is answered
    /// when the connection cannot be closed).
    pub fn error(self, service: Service, operation: &str) -> ApiError {
        match (self, service) {
            (Fault::Throttle, Service::Kinesis) => kinesis_throttle(operation),
            (Fault::Throttle, Service::DynamoDb) => dynamodb_throttle(operation),
            (_, Service::Kinesis) => ApiError::internal("Injected fault: internal failure."),
            (_, Service::DynamoDb) => ApiError::new(
                "InternalServerError",
                "Injected fault: internal server error.",
            )
            .with_status(http::StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

fn kinesis_throttle(operation: &str) -> ApiError {
    match operation {
        "PutRecord" | "PutRecords" | "GetRecords" | "GetShardIterator" => ApiError::new(
            "ProvisionedThroughputExceededException",
            "Injected fault: rate exceeded for shard.",
        ),
        _ => ApiError::limit_exceeded("Injected fault: rate exceeded."),
    }
}

fn dynamodb_throttle(operation: &str) -> ApiError {
    const ITEM_OPERATIONS: [&str; 10] = [
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "BatchGetItem",
        "BatchWriteItem",
        "TransactGetItems",
        "TransactWriteItems",
    ];
    const TABLE_CHANGES: [&str; 6] = [
        "CreateTable",
        "DeleteTable",
        "UpdateTable",
        "UpdateTimeToLive",
        "TagResource",
        "UntagResource",
    ];
    if ITEM_OPERATIONS.contains(&operation) {
        ApiError::new(
            "ProvisionedThroughputExceededException",
            "Injected fault: the level of configured provisioned throughput for the table was exceeded.",
        )
    } else if TABLE_CHANGES.contains(&operation) {
        ApiError::limit_exceeded("Injected fault: too many operations for a given subscriber.")
    } else {
        ApiError::new(
            "ThrottlingException",
            "Injected fault: rate of requests exceeds the allowed throughput.",
        )
    }
}

/// What to do to one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Injection {
    /// Wait this long before answering.
    pub delay: Duration,
    /// Answer with this fault instead of running the operation.
    pub fault: Option<Fault>,
}

struct State {
    rules: Vec<FaultRule>,
    rng: StdRng,
}

/// The broker's fault rules; a cheap handle, shared with the running broker so a test can change
/// them while it runs ([`crate::RunningBroker::faults`]).
#[derive(Clone)]
pub struct Faults {
    state: Arc<Mutex<State>>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                rules: Vec::new(),
                rng: StdRng::from_os_rng(),
            })),
        }
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults")
            .field("rules", &self.lock().rules)
            .finish()
    }
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Rules and the generator are valid in every state a panicking holder could leave.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a rule after the existing ones.
    pub fn add(&self, rule: FaultRule) {
        self.lock().rules.push(rule);
    }

    /// Replaces every rule.
    pub fn set(&self, rules: impl IntoIterator<Item = FaultRule>) {
        self.lock().rules = rules.into_iter().collect();
    }

    /// Removes every rule: no more faults.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// Restarts the draws from `seed`, so a run can be repeated.
    pub fn seed(&self, seed: u64) {
        self.lock().rng = StdRng::seed_from_u64(seed);
    }

    /// Draws what happens to one request.
    pub fn roll(&self, service: Service, operation: &str) -> Injection {
        let mut injection = Injection::default();
        let mut state = self.lock();
        let State { rules, rng } = &mut *state;
        for rule in rules
            .iter()
            .filter(|r| r.target.matches(service, operation))
        {
            rule.roll(rng, &mut injection);
        }
        injection
    }
}

/// Lets the front door close a connection without answering: set by the request handler, seen by
/// the connection's IO, which then fails every write so the server drops the connection.
#[derive(Clone, Debug, Default)]
pub struct Severance(Arc<AtomicBool>);

impl Severance {
    /// Closes the connection instead of sending the response being prepared.
    pub fn sever(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn is_severed(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A connection that can be severed by a request on it.
pub struct Severable<S> {
    inner: S,
    severance: Severance,
}

impl<S> Severable<S> {
    /// Wraps an accepted connection.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            severance: Severance::default(),
        }
    }

    /// The handle requests on this connection use to sever it.
    pub fn severance(&self) -> Severance {
        self.severance.clone()
    }

    fn severed() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "connection dropped by fault injection",
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Severable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.severance.is_severed() {
            return Poll::Ready(Err(Self::severed()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Severable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.severance.is_severed() {
            return Poll::Ready(Err(Self::severed()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.severance.is_severed() {
            return Poll::Ready(Err(Self::severed()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TCP listener whose connections requests can sever (see [`Severance`]).
pub struct SeverableListener(pub tokio::net::TcpListener);

impl axum::serve::Listener for SeverableListener {
    type Io = Severable<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (Severable::new(tcp), addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, SeverableListener>>
    for Severance
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, SeverableListener>) -> Self {
        stream.io().severance()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_kind() {
        let rule: FaultRule = "dynamodb:UpdateItem:throttle=0.1,error=0.2,drop=0.3,slow=1@2s"
            .parse()
            .unwrap();
        assert_eq!(
            rule,
            FaultRule::new("dynamodb:UpdateItem")
                .throttle(0.1)
                .internal_failure(0.2)
                .drop_connection(0.3)
                .slow(1.0, Duration::from_secs(2))
        );
        assert_eq!(
            rule.target,
            Target::Operation(Some(Service::DynamoDb), "UpdateItem".into())
        );
        let any: FaultRule = "*:drop=1".parse().unwrap();
        assert_eq!(any.target, Target::Any(None));
        let kinesis: FaultRule = "kinesis:*:throttle=0.5".parse().unwrap();
        assert_eq!(kinesis.target, Target::Any(Some(Service::Kinesis)));
    }

    #[test]
    fn refuses_malformed_specs_with_the_reason() {
        let err = |s: &str| s.parse::<FaultRule>().unwrap_err();
        assert!(matches!(err("GetRecords"), FaultParseError::Shape(_)));
        assert!(matches!(
            err("s3:GetObject:throttle=0.1"),
            FaultParseError::Target(_)
        ));
        assert!(matches!(
            err("Get-Records:throttle=0.1"),
            FaultParseError::Target(_)
        ));
        assert!(matches!(
            err("GetRecords:explode=0.1"),
            FaultParseError::Kind(_)
        ));
        assert!(matches!(
            err("GetRecords:throttle=1.5"),
            FaultParseError::Probability(_)
        ));
        assert!(matches!(
            err("GetRecords:throttle=NaN"),
            FaultParseError::Probability(_)
        ));
        assert!(matches!(
            err("GetRecords:slow=0.5"),
            FaultParseError::Latency(_)
        ));
        assert!(matches!(
            err("GetRecords:slow=0.5@fast"),
            FaultParseError::Latency(_)
        ));
        assert!(matches!(
            err("GetRecords:throttle=0.6,drop=0.6"),
            FaultParseError::Total(_)
        ));
    }

    #[test]
    fn rules_apply_only_to_their_operations() {
        let faults = Faults::default();
        faults.add(FaultRule::new("dynamodb:UpdateItem").throttle(1.0));
        assert_eq!(faults.roll(Service::Kinesis, "UpdateItem").fault, None);
        assert_eq!(faults.roll(Service::DynamoDb, "GetItem").fault, None);
        assert_eq!(
            faults.roll(Service::DynamoDb, "UpdateItem").fault,
            Some(Fault::Throttle)
        );
        faults.clear();
        assert_eq!(
            faults.roll(Service::DynamoDb, "UpdateItem"),
            Injection::default()
        );
    }

    #[test]
    fn the_first_fault_drawn_wins_and_latencies_add_up() {
        let faults = Faults::default();
        faults.set([
            FaultRule::new("*").slow(1.0, Duration::from_millis(5)),
            FaultRule::new("GetRecords").drop_connection(1.0),
            FaultRule::new("GetRecords")
                .throttle(1.0)
                .slow(1.0, Duration::from_millis(7)),
        ]);
        let injection = faults.roll(Service::Kinesis, "GetRecords");
        assert_eq!(injection.fault, Some(Fault::DropConnection));
        assert_eq!(injection.delay, Duration::from_millis(12));
    }

    #[test]
    fn a_seed_repeats_the_draws() {
        let faults = Faults::default();
        faults.add(FaultRule::new("*").throttle(0.3).internal_failure(0.3));
        let draws = |faults: &Faults| {
            faults.seed(42);
            (0..100)
                .map(|_| faults.roll(Service::Kinesis, "PutRecords").fault)
                .collect::<Vec<_>>()
        };
        let first = draws(&faults);
        assert_eq!(first, draws(&faults));
        assert!(first.contains(&Some(Fault::Throttle)));
        assert!(first.contains(&Some(Fault::InternalFailure)));
        assert!(first.contains(&None));
    }

    #[test]
    fn throttles_use_each_operations_error_code() {
        let code = |service, op| Fault::Throttle.error(service, op).code;
        assert_eq!(
            code(Service::Kinesis, "GetRecords"),
            "ProvisionedThroughputExceededException"
        );
        assert_eq!(
            code(Service::Kinesis, "ListShards"),
            "LimitExceededException"
        );
        assert_eq!(
            code(Service::DynamoDb, "UpdateItem"),
            "ProvisionedThroughputExceededException"
        );
        assert_eq!(
            code(Service::DynamoDb, "CreateTable"),
            "LimitExceededException"
        );
        assert_eq!(
            code(Service::DynamoDb, "DescribeTable"),
            "ThrottlingException"
        );
        let internal = Fault::InternalFailure.error(Service::DynamoDb, "GetItem");
        assert_eq!(
            (internal.code, internal.status.as_u16()),
            ("InternalServerError", 500)
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,60}") {
            let _ = text.parse::<FaultRule>();
        }

        #[test]
        fn well_formed_specs_round_trip_their_probabilities(
            throttle in 0.0f64..0.3, error in 0.0f64..0.3, drop in 0.0f64..0.3,
            slow in 0.0f64..=1.0, ms in 0u64..10_000,
        ) {
            let spec = format!("PutRecords:throttle={throttle},error={error},drop={drop},slow={slow}@{ms}ms");
            let rule: FaultRule = spec.parse().unwrap();
            prop_assert_eq!(rule, FaultRule::new("PutRecords").throttle(throttle)
                .internal_failure(error).drop_connection(drop)
                .slow(slow, Duration::from_millis(ms)));
        }

        #[test]
        fn structured_garbage_is_refused_not_panicked_on(
            target in "(\\*|[a-z]{0,8}:)?[A-Za-z*]{0,10}",
            kinds in proptest::collection::vec("[a-z]{0,8}=[-0-9.e@msNa]{0,8}", 0..4),
        ) {
            let _ = format!("{target}:{}", kinds.join(",")).parse::<FaultRule>();
        }
    }
}
