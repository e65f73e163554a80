//! The one error type every service returns, and its mapping to the wire.
//!
//! Services speak in AWS error codes (`ResourceNotFoundException`, ...); the front door decides how
//! the code is spelled on the wire for each protocol (DynamoDB prefixes it with its namespace).

use http::StatusCode;

/// An AWS-shaped error: the code a client switches on, a message a person reads, and the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The AWS error code, e.g. `ResourceNotFoundException`.
    pub code: &'static str,
    /// Human-readable detail.
    pub message: String,
    /// HTTP status: 400 for client errors, 500 for internal failures, 503 when unavailable.
    pub status: StatusCode,
    /// Extra members of the error body some errors carry, e.g. DynamoDB's `Item` for
    /// `ReturnValuesOnConditionCheckFailure`.
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    /// A client error (HTTP 400) with the given code.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            status: StatusCode::BAD_REQUEST,
            details: None,
        }
    }

    /// Adds a member to the error body.
    pub fn with_detail(mut self, name: &str, value: serde_json::Value) -> Self {
        self.details
            .get_or_insert_with(serde_json::Map::new)
            .insert(name.to_owned(), value);
        self
    }

    /// Replaces the HTTP status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The body could not be parsed into the operation's input shape.
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new("SerializationException", message)
    }

    /// A model constraint failed (length, range, pattern, required member).
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }

    /// The input is well-formed but makes no sense for the resource's state.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new("InvalidArgumentException", message)
    }

    /// The named resource does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("ResourceNotFoundException", message)
    }

    /// The resource exists but is busy (wrong status, already exists).
    pub fn in_use(message: impl Into<String>) -> Self {
        Self::new("ResourceInUseException", message)
    }

    /// A limit (count, rate) was reached.
    pub fn limit_exceeded(message: impl Into<String>) -> Self {
        Self::new("LimitExceededException", message)
    }

    /// The target names an operation this service does not know or does not serve yet.
    pub fn unknown_operation(target: &str) -> Self {
        Self::new(
            "UnknownOperationException",
            format!("Operation {target} is not supported by this server"),
        )
    }

    /// Something went wrong inside the broker; never caused by client input.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("InternalFailure", message).with_status(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// A change that could not be made as durable as the sync mode promises: never acknowledged.
    pub fn not_durable(err: crate::storage::StorageError) -> Self {
        tracing::error!(%err, "write not durable; answering InternalFailure");
        Self::internal("The change could not be made durable.")
    }
}

/// Result alias for service handlers.
pub type ApiResult<T> = Result<T, ApiError>;
