//! Enhanced fan-out consumers registered on a stream.

/// Lifecycle status of a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerStatus {
    Creating,
    Active,
    Deleting,
}

impl ConsumerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerStatus::Creating => "CREATING",
            ConsumerStatus::Active => "ACTIVE",
            ConsumerStatus::Deleting => "DELETING",
        }
    }
}

/// A registered consumer.
#[derive(Debug, Clone)]
pub struct Consumer {
    pub name: String,
    /// `<stream ARN>/consumer/<name>:<creation epoch seconds>`.
    pub arn: String,
    pub status: ConsumerStatus,
    pub created_ms: i64,
    pub tags: std::collections::BTreeMap<String, String>,
    /// Resource policy document (JSON), if one was put.
    pub policy: Option<String>,
}

/// Most consumers one stream may have.
pub const MAX_CONSUMERS_PER_STREAM: usize = 20;

/// The ARN of a consumer registered at `created_ms`.
pub fn consumer_arn(stream_arn: &str, name: &str, created_ms: i64) -> String {
    format!("{stream_arn}/consumer/{name}:{}", created_ms / 1000)
}

/// Splits a consumer ARN into the stream ARN and the consumer name.
pub fn parse_consumer_arn(arn: &str) -> Option<(&str, &str)> {
    let (stream_arn, rest) = arn.split_once("/consumer/")?;
    let (name, epoch) = rest.rsplit_once(':')?;
    (!name.is_empty() && !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()))
        .then_some((stream_arn, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_arns_round_trip() {
        let stream = "arn:aws:kinesis:us-east-1:000000000000:stream/orders";
        let arn = consumer_arn(stream, "app", 1_700_000_000_123);
        assert_eq!(arn, format!("{stream}/consumer/app:1700000000"));
        assert_eq!(parse_consumer_arn(&arn), Some((stream, "app")));
        assert_eq!(parse_consumer_arn(stream), None);
        assert_eq!(
            parse_consumer_arn(&format!("{stream}/consumer/app:x")),
            None
        );
    }
}
