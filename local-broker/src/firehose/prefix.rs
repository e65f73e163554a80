//! S3 key prefixes: the `!{namespace:value}` expressions of `Prefix` and `ErrorOutputPrefix`,
//! their rules, and the object name Firehose appends.
//!
//! Namespaces: `timestamp` (a Java `DateTimeFormatter` pattern, UTC), `firehose`
//! (`random-string`, `error-output-type`), `partitionKeyFromQuery` and `partitionKeyFromLambda`.
//! Every timestamp in one prefix uses the same instant: the arrival time of the oldest record in
//! the object.

use crate::clock::civil_from_days;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What a prefix falls back to when it has no timestamp expression (and for the default
/// error prefix).
pub const DEFAULT_TIME_PATTERN: &str = "yyyy/MM/dd/HH/";
/// The timestamp part of every object name.
const OBJECT_TIME_PATTERN: &str = "yyyy-MM-dd-HH-mm-ss";

/// One part of a parsed prefix.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Timestamp(TimePattern),
    RandomString,
    ErrorOutputType,
    PartitionKeyFromQuery(String),
    PartitionKeyFromLambda(String),
}

/// A parsed `Prefix` or `ErrorOutputPrefix`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prefix {
    parts: Vec<Part>,
}

/// What a prefix is evaluated with.
pub struct PrefixValues<'a> {
    /// Epoch milliseconds of the oldest record in the object.
    pub at_ms: i64,
    /// `processing-failed`, `http-endpoint-failed`, ... (error prefixes only).
    pub error_output_type: Option<&'a str>,
    /// Keys from MetadataExtraction (`partitionKeyFromQuery`).
    pub query_keys: &'a BTreeMap<String, String>,
    /// Keys from a transformation's `metadata.partitionKeys` (`partitionKeyFromLambda`).
    pub lambda_keys: &'a BTreeMap<String, String>,
}

impl Prefix {
    /// Parses a prefix; the error says what is wrong, for an `InvalidArgumentException`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("!{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("Unterminated expression in prefix '{text}'."))?;
            parts.push(parse_expression(&after[..end])?);
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// A prefix that is only a timestamp expression with `pattern`.
    fn timestamp(pattern: &str) -> Self {
        let pattern = TimePattern::parse(pattern).unwrap_or_default();
        Self {
            parts: vec![Part::Timestamp(pattern)],
        }
    }

    /// True when the prefix has any `!{...}` expression.
    pub fn has_expressions(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Literal(_)))
    }

    /// True when the prefix has a `timestamp` expression.
    pub fn has_timestamp(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Timestamp(_)))
    }

    /// True when the prefix has `!{firehose:error-output-type}`.
    pub fn has_error_output_type(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::ErrorOutputType))
    }

    /// True when the prefix uses a dynamic-partitioning key.
    pub fn has_partition_keys(&self) -> bool {
        self.parts.iter().any(|p| {
            matches!(
                p,
                Part::PartitionKeyFromQuery(_) | Part::PartitionKeyFromLambda(_)
            )
        })
    }

    /// The same prefix followed by `other`.
    fn then(mut self, other: Prefix) -> Self {
        self.parts.extend(other.parts);
        self
    }

    /// Evaluates the prefix. A partition key the record does not have evaluates to an error
    /// naming it (such records go to the error prefix).
    pub fn render(&self, values: &PrefixValues) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Timestamp(pattern) => pattern.format(values.at_ms, &mut out),
                Part::RandomString => out.push_str(&random_string()),
                Part::ErrorOutputType => out.push_str(values.error_output_type.unwrap_or("")),
                Part::PartitionKeyFromQuery(key) => match values.query_keys.get(key) {
                    Some(value) => out.push_str(value),
                    None => return Err(format!("partitionKeyFromQuery:{key} is not present")),
                },
                Part::PartitionKeyFromLambda(key) => match values.lambda_keys.get(key) {
                    Some(value) => out.push_str(value),
                    None => return Err(format!("partitionKeyFromLambda:{key} is not present")),
                },
            }
        }
        Ok(out)
    }
}

fn parse_expression(expression: &str) -> Result<Part, String> {
    let (namespace, value) = expression
        .split_once(':')
        .ok_or_else(|| format!("Expression '!{{{expression}}}' must be namespace:value."))?;
    match (namespace, value) {
        ("timestamp", pattern) => TimePattern::parse(pattern).map(Part::Timestamp),
        ("firehose", "random-string") => Ok(Part::RandomString),
        ("firehose", "error-output-type") => Ok(Part::ErrorOutputType),
        ("partitionKeyFromQuery", key) if !key.is_empty() => {
            Ok(Part::PartitionKeyFromQuery(key.to_owned()))
        }
        ("partitionKeyFromLambda", key) if !key.is_empty() => {
            Ok(Part::PartitionKeyFromLambda(key.to_owned()))
        }
        _ => Err(format!(
            "The expression '!{{{expression}}}' is not valid: use timestamp, firehose:random-string, firehose:error-output-type, partitionKeyFromQuery or partitionKeyFromLambda."
        )),
    }
}

/// The prefixes of one S3 destination, checked against Firehose's rules.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPrefixes {
    data: Prefix,
    /// `None`: the default `<Prefix><error-output-type>/yyyy/MM/dd/HH/`.
    error: Prefix,
}

impl KeyPrefixes {
    /// Checks `Prefix` and `ErrorOutputPrefix` as CreateDeliveryStream does.
    pub fn new(
        prefix: Option<&str>,
        error_prefix: Option<&str>,
        dynamic_partitioning: bool,
    ) -> Result<Self, String> {
        let prefix_text = prefix.unwrap_or("");
        let data = Prefix::parse(prefix_text)?;
        if data.has_error_output_type() {
            return Err(
                "The Prefix must not contain the expression !{firehose:error-output-type}."
                    .to_owned(),
            );
        }
        if dynamic_partitioning && !data.has_partition_keys() {
            return Err("When dynamic partitioning is enabled, the Prefix must use at least one of !{partitionKeyFromQuery:key} or !{partitionKeyFromLambda:key}.".to_owned());
        }
        if !dynamic_partitioning && data.has_partition_keys() {
            return Err("partitionKeyFromQuery and partitionKeyFromLambda expressions can only be used when dynamic partitioning is enabled.".to_owned());
        }
        let error = match error_prefix.filter(|p| !p.is_empty()) {
            Some(text) => {
                let error = Prefix::parse(text)?;
                if !error.has_error_output_type() {
                    return Err("The ErrorOutputPrefix must contain the expression !{firehose:error-output-type}.".to_owned());
                }
                if error.has_partition_keys() {
                    return Err("The ErrorOutputPrefix must not use partitionKeyFromQuery or partitionKeyFromLambda.".to_owned());
                }
                error
            }
            None if data.has_expressions() || dynamic_partitioning => {
                return Err("An ErrorOutputPrefix is required when the Prefix contains expressions or dynamic partitioning is enabled.".to_owned());
            }
            None => Prefix {
                parts: vec![
                    Part::Literal(prefix_text.to_owned()),
                    Part::ErrorOutputType,
                    Part::Literal("/".to_owned()),
                ],
            }
            .then(Prefix::timestamp(DEFAULT_TIME_PATTERN)),
        };
        // Without a timestamp Firehose files objects by hour; partitioned keys stand alone.
        let data = if data.has_timestamp() || dynamic_partitioning {
            data
        } else {
            data.then(Prefix::timestamp(DEFAULT_TIME_PATTERN))
        };
        Ok(Self { data, error })
    }

    /// The prefix for delivered data.
    pub fn data(&self) -> &Prefix {
        &self.data
    }

    /// The prefix for failed records.
    pub fn error(&self) -> &Prefix {
        &self.error
    }
}

/// The unchangeable part of an object key:
/// `<stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid><extension>`.
pub fn object_name(stream: &str, version: u64, at_ms: i64, extension: &str) -> String {
    let mut time = String::new();
    TimePattern::parse(OBJECT_TIME_PATTERN)
        .unwrap_or_default()
        .format(at_ms, &mut time);
    format!(
        "{stream}-{version}-{time}-{}{extension}",
        uuid::Uuid::new_v4()
    )
}

/// `firehose:random-string`: 11 characters, fresh per occurrence.
fn random_string() -> String {
    let id = uuid::Uuid::new_v4().to_string();
    id[..11].to_owned()
}

/// A `java.time.format.DateTimeFormatter` pattern, restricted to the numeric fields that make
/// sense in a key: `y`, `M`, `d`, `H`, `m`, `s`, `S`, with quoted literals.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TimePattern {
    tokens: Vec<TimeToken>,
}

#[derive(Debug, Clone, PartialEq)]
enum TimeToken {
    Literal(String),
    Field(char, usize),
}

impl TimePattern {
    /// Parses a pattern; letters other than the supported fields are an error.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    let mut literal = String::new();
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                        literal.push('\'');
                    } else {
                        loop {
                            match chars.next() {
                                None => {
                                    return Err(format!(
                                        "Unterminated quote in timestamp pattern '{pattern}'."
                                    ));
                                }
                                Some('\'') if chars.peek() == Some(&'\'') => {
                                    chars.next();
                                    literal.push('\'');
                                }
                                Some('\'') => break,
                                Some(c) => literal.push(c),
                            }
                        }
                    }
                    tokens.push(TimeToken::Literal(literal));
                }
                'y' | 'M' | 'd' | 'H' | 'm' | 's' | 'S' => {
                    let mut count = 1;
                    while chars.peek() == Some(&c) {
                        chars.next();
                        count += 1;
                    }
                    if c == 'M' && count > 2 {
                        return Err(format!(
                            "Month names are not supported in timestamp pattern '{pattern}'; use MM."
                        ));
                    }
                    tokens.push(TimeToken::Field(c, count));
                }
                c if c.is_ascii_alphabetic() => {
                    return Err(format!(
                        "The letter '{c}' in timestamp pattern '{pattern}' is not supported; use y, M, d, H, m, s, S or quoted text."
                    ));
                }
                c => tokens.push(TimeToken::Literal(c.to_string())),
            }
        }
        Ok(Self { tokens })
    }

    /// Appends `at_ms` (UTC) formatted with this pattern.
    pub fn format(&self, at_ms: i64, out: &mut String) {
        let time = CivilTime::from_millis(at_ms);
        for token in &self.tokens {
            match token {
                TimeToken::Literal(text) => out.push_str(text),
                TimeToken::Field(field, width) => {
                    let value = match field {
                        'y' if *width == 2 => time.year.rem_euclid(100),
                        'y' => time.year,
                        'M' => time.month,
                        'd' => time.day,
                        'H' => time.hour,
                        'm' => time.minute,
                        's' => time.second,
                        _ => {
                            // Fraction of a second, to as many digits as letters.
                            let millis = format!("{:03}", time.millis);
                            let digits: String = millis
                                .chars()
                                .chain(std::iter::repeat('0'))
                                .take(*width)
                                .collect();
                            out.push_str(&digits);
                            continue;
                        }
                    };
                    let _ = write!(out, "{value:0width$}");
                }
            }
        }
    }
}

/// A UTC calendar time.
struct CivilTime {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    millis: i64,
}

impl CivilTime {
    fn from_millis(ms: i64) -> Self {
        let days = ms.div_euclid(86_400_000);
        let in_day = ms.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: in_day / 3_600_000,
            minute: in_day / 60_000 % 60,
            second: in_day / 1000 % 60,
            millis: in_day % 1000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2018-08-27T10:30:05.123Z, the AWS documentation's example instant.
    const AT: i64 = 1_535_365_805_123;

    fn render(prefix: &Prefix, error: Option<&str>) -> String {
        let none = BTreeMap::new();
        prefix
            .render(&PrefixValues {
                at_ms: AT,
                error_output_type: error,
                query_keys: &none,
                lambda_keys: &none,
            })
            .unwrap()
    }

    #[test]
    fn no_prefix_files_objects_by_hour() {
        let prefixes = KeyPrefixes::new(None, None, false).unwrap();
        assert_eq!(render(prefixes.data(), None), "2018/08/27/10/");
        assert_eq!(
            render(prefixes.error(), Some("processing-failed")),
            "processing-failed/2018/08/27/10/"
        );
    }

    #[test]
    fn literal_prefix_gets_the_hourly_folders_appended() {
        let prefixes = KeyPrefixes::new(Some("logs/"), None, false).unwrap();
        assert_eq!(render(prefixes.data(), None), "logs/2018/08/27/10/");
    }

    #[test]
    fn timestamp_expressions_with_quoted_literals() {
        let prefixes = KeyPrefixes::new(
            Some("year=!{timestamp:yyyy}/month=!{timestamp:MM}/'x'!{timestamp:'at'HH}/"),
            Some("err/!{firehose:error-output-type}/"),
            false,
        )
        .unwrap();
        assert_eq!(render(prefixes.data(), None), "year=2018/month=08/'x'at10/");
        assert_eq!(
            render(prefixes.error(), Some("http-endpoint-failed")),
            "err/http-endpoint-failed/"
        );
    }

    #[test]
    fn random_string_is_eleven_characters() {
        let prefix = Prefix::parse("!{firehose:random-string}").unwrap();
        assert_eq!(render(&prefix, None).len(), 11);
    }

    #[test]
    fn rules_are_enforced() {
        assert!(KeyPrefixes::new(Some("!{timestamp:yyyy}"), None, false).is_err());
        assert!(KeyPrefixes::new(Some("a/"), Some("errors/"), false).is_err());
        assert!(KeyPrefixes::new(Some("!{firehose:error-output-type}"), None, false).is_err());
        assert!(KeyPrefixes::new(Some("!{nope:x}"), None, false).is_err());
        assert!(KeyPrefixes::new(Some("!{timestamp:yyyy"), None, false).is_err());
        assert!(
            KeyPrefixes::new(
                Some("!{timestamp:EEE}"),
                Some("e/!{firehose:error-output-type}"),
                false
            )
            .is_err()
        );
        assert!(
            KeyPrefixes::new(
                Some("k=!{partitionKeyFromQuery:k}/"),
                Some("e/!{firehose:error-output-type}/"),
                false
            )
            .is_err()
        );
        assert!(
            KeyPrefixes::new(
                Some("plain/"),
                Some("e/!{firehose:error-output-type}/"),
                true
            )
            .is_err()
        );
    }

    #[test]
    fn partition_keys_render_and_missing_ones_fail() {
        let prefixes = KeyPrefixes::new(
            Some("customer=!{partitionKeyFromQuery:customer}/"),
            Some("e/!{firehose:error-output-type}/"),
            true,
        )
        .unwrap();
        let keys = BTreeMap::from([("customer".to_owned(), "42".to_owned())]);
        let none = BTreeMap::new();
        let values = |query_keys| PrefixValues {
            at_ms: AT,
            error_output_type: None,
            query_keys,
            lambda_keys: &none,
        };
        assert_eq!(
            prefixes.data().render(&values(&keys)).unwrap(),
            "customer=42/"
        );
        assert!(prefixes.data().render(&values(&none)).is_err());
    }

    #[test]
    fn object_names_follow_firehose() {
        let name = object_name("mystream", 1, AT, ".gz");
        assert!(
            name.starts_with("mystream-1-2018-08-27-10-30-05-"),
            "{name}"
        );
        assert!(name.ends_with(".gz"));
        assert_eq!(name.len(), "mystream-1-2018-08-27-10-30-05-".len() + 36 + 3);
    }

    #[test]
    fn civil_time_handles_leap_days_and_fractions() {
        let mut out = String::new();
        // 2024-02-29T23:59:59.987Z
        TimePattern::parse("yyyy-MM-dd HH:mm:ss.SSS yy")
            .unwrap()
            .format(1_709_251_199_987, &mut out);
        assert_eq!(out, "2024-02-29 23:59:59.987 24");
    }
}
