//! DynamoDB expressions: condition, filter, key-condition, update and projection expressions,
//! with `ExpressionAttributeNames` (`#n`) and `ExpressionAttributeValues` (`:v`) placeholders.
//!
//! | module | owns |
//! |---|---|
//! | [`lexer`] | tokens and their source spans |
//! | [`parser`] | grammar, syntax and semantic checks, AWS's error messages |
//! | [`ast`] | the resolved trees, shared with the legacy dialect |
//! | [`eval`] | condition evaluation and projection |
//! | [`update`](mod@update) | applying an update to an item |
//! | [`reserved`] | the reserved-word list |
//!
//! This module is the boundary the operations use: it turns request members into trees and
//! every failure into a `ValidationException` worded as AWS words it.

pub mod ast;
pub mod eval;
pub mod lexer;
pub mod parser;
pub mod reserved;
pub mod update;

use crate::dynamodb::value::{AttributeValue, RawItem};
use crate::http::error::{ApiError, ApiResult};
use ast::{Comparator, Condition, Operand, Path, Update};
use std::collections::{BTreeMap, BTreeSet};

/// Longest expression DynamoDB accepts, in bytes.
const MAX_EXPRESSION_BYTES: usize = 4096;

/// The placeholders of one request, and which of them the expressions used.
#[derive(Debug, Default)]
pub struct Placeholders {
    names: BTreeMap<String, String>,
    values: BTreeMap<String, AttributeValue>,
    used_names: BTreeSet<String>,
    used_values: BTreeSet<String>,
}

fn is_placeholder(key: &str, sigil: char) -> bool {
    let mut chars = key.chars();
    chars.next() == Some(sigil)
        && key.len() > 1
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Placeholders {
    /// Placeholders from already-validated maps.
    pub fn new(
        names: Option<BTreeMap<String, String>>,
        values: Option<BTreeMap<String, AttributeValue>>,
    ) -> Self {
        Self {
            names: names.unwrap_or_default(),
            values: values.unwrap_or_default(),
            ..Self::default()
        }
    }

    /// Validates a request's `ExpressionAttributeNames` and `ExpressionAttributeValues`.
    pub fn from_request(
        names: Option<BTreeMap<String, String>>,
        values: Option<RawItem>,
    ) -> ApiResult<Self> {
        if let Some(names) = &names {
            if names.is_empty() {
                return Err(ApiError::validation(
                    "ExpressionAttributeNames must not be empty",
                ));
            }
            if let Some(bad) = names.keys().find(|k| !is_placeholder(k, '#')) {
                return Err(ApiError::validation(format!(
                    "ExpressionAttributeNames contains invalid key: Syntax error; key: \"{bad}\""
                )));
            }
        }
        let values = match values {
            None => None,
            Some(values) => {
                if values.is_empty() {
                    return Err(ApiError::validation(
                        "ExpressionAttributeValues must not be empty",
                    ));
                }
                if let Some(bad) = values.keys().find(|k| !is_placeholder(k, ':')) {
                    return Err(ApiError::validation(format!(
                        "ExpressionAttributeValues contains invalid key: Syntax error; key: \"{bad}\""
                    )));
                }
                let mut validated = BTreeMap::new();
                for (key, raw) in values {
                    let value = raw.validate().map_err(|e| {
                        ApiError::validation(format!(
                            "ExpressionAttributeValues contains invalid value: {} for key {key}",
                            e.message
                        ))
                    })?;
                    validated.insert(key, value);
                }
                Some(validated)
            }
        };
        Ok(Self::new(names, values))
    }

    fn name(&mut self, placeholder: &str) -> Option<String> {
        let name = self.names.get(placeholder)?.clone();
        self.used_names.insert(placeholder.to_owned());
        Some(name)
    }

    fn value(&mut self, placeholder: &str) -> Option<AttributeValue> {
        let value = self.values.get(placeholder)?.clone();
        self.used_values.insert(placeholder.to_owned());
        Some(value)
    }

    /// Every placeholder must be used by some expression of the request.
    pub fn check_all_used(&self) -> ApiResult<()> {
        let unused = |all: Vec<&String>, used: &BTreeSet<String>| -> Vec<String> {
            all.into_iter()
                .filter(|k| !used.contains(*k))
                .cloned()
                .collect()
        };
        let names = unused(self.names.keys().collect(), &self.used_names);
        if !names.is_empty() {
            return Err(ApiError::validation(format!(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {{{}}}",
                names.join(", ")
            )));
        }
        let values = unused(self.values.keys().collect(), &self.used_values);
        if !values.is_empty() {
            return Err(ApiError::validation(format!(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {{{}}}",
                values.join(", ")
            )));
        }
        Ok(())
    }
}

/// The request members that decide which dialect a request speaks.
pub struct Dialect<'a> {
    /// Expression members present in the request, e.g. `ConditionExpression`.
    pub expressions: Vec<&'a str>,
    /// Legacy members present in the request, e.g. `Expected`.
    pub legacy: Vec<&'a str>,
    /// Expression members of this operation that can use `ExpressionAttributeValues` (all but
    /// `ProjectionExpression`), present or not.
    pub value_users: &'a [&'a str],
    /// Whether the value-using members among them are all absent.
    pub no_value_users: bool,
    /// Whether `ExpressionAttributeNames` is present.
    pub has_names: bool,
    /// Whether `ExpressionAttributeValues` is present.
    pub has_values: bool,
}

impl Dialect<'_> {
    /// Mixing expression and legacy members, or placeholders without expressions, is invalid.
    pub fn check(&self) -> ApiResult<()> {
        if !self.expressions.is_empty() && !self.legacy.is_empty() {
            return Err(ApiError::validation(format!(
                "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {{{}}} Expression parameters: {{{}}}",
                self.legacy.join(", "),
                self.expressions.join(", ")
            )));
        }
        if self.has_names && self.expressions.is_empty() {
            return Err(ApiError::validation(
                "ExpressionAttributeNames can only be specified when using expressions",
            ));
        }
        if self.has_values && self.no_value_users && !self.value_users.is_empty() {
            let verb = if self.value_users.len() > 1 {
                "are"
            } else {
                "is"
            };
            return Err(ApiError::validation(format!(
                "ExpressionAttributeValues can only be specified when using expressions: {} {verb} null",
                self.value_users.join(" and ")
            )));
        }
        Ok(())
    }
}

fn check_source(member: &str, source: &str) -> ApiResult<()> {
    if source.is_empty() {
        return Err(ApiError::validation(format!(
            "Invalid {member}: The expression can not be empty;"
        )));
    }
    if source.len() > MAX_EXPRESSION_BYTES {
        return Err(ApiError::validation(format!(
            "Invalid {member}: Expression size has exceeded the maximum allowed size; expression size: {}",
            source.len()
        )));
    }
    Ok(())
}

fn invalid(member: &str, error: parser::ParseError) -> ApiError {
    ApiError::validation(format!("Invalid {member}: {error}"))
}

/// Parses a condition-shaped member (`ConditionExpression`, `FilterExpression`,
/// `KeyConditionExpression`).
pub fn condition(
    member: &str,
    source: &str,
    placeholders: &mut Placeholders,
) -> ApiResult<Condition> {
    check_source(member, source)?;
    parser::parse_condition(source, placeholders).map_err(|e| invalid(member, e))
}

/// Parses an `UpdateExpression`.
pub fn update(source: &str, placeholders: &mut Placeholders) -> ApiResult<Update> {
    check_source("UpdateExpression", source)?;
    parser::parse_update(source, placeholders).map_err(|e| invalid("UpdateExpression", e))
}

/// Parses a `ProjectionExpression`.
pub fn projection(source: &str, placeholders: &mut Placeholders) -> ApiResult<Vec<Path>> {
    check_source("ProjectionExpression", source)?;
    parser::parse_projection(source, placeholders).map_err(|e| invalid("ProjectionExpression", e))
}

/// One key attribute's predicate in a query.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyPredicate {
    Compare(Comparator, AttributeValue),
    Between(AttributeValue, AttributeValue),
    BeginsWith(AttributeValue),
}

impl KeyPredicate {
    /// The values the predicate compares with, for schema type checks.
    pub fn values(&self) -> Vec<&AttributeValue> {
        match self {
            KeyPredicate::Compare(_, v) | KeyPredicate::BeginsWith(v) => vec![v],
            KeyPredicate::Between(a, b) => vec![a, b],
        }
    }

    /// Whether `value` satisfies the predicate.
    pub fn matches(&self, value: &AttributeValue) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            KeyPredicate::Compare(comparator, bound) => match value.compare(bound) {
                None => false,
                Some(ordering) => match comparator {
                    Comparator::Eq => ordering == Equal,
                    Comparator::Ne => ordering != Equal,
                    Comparator::Lt => ordering == Less,
                    Comparator::Le => ordering != Greater,
                    Comparator::Gt => ordering == Greater,
                    Comparator::Ge => ordering != Less,
                },
            },
            KeyPredicate::Between(low, high) => {
                value.compare(low).is_some_and(|o| o != Less)
                    && value.compare(high).is_some_and(|o| o != Greater)
            }
            KeyPredicate::BeginsWith(prefix) => match (value, prefix) {
                (AttributeValue::S(s), AttributeValue::S(p)) => s.starts_with(p.as_str()),
                (AttributeValue::B(b), AttributeValue::B(p)) => b.starts_with(p),
                _ => false,
            },
        }
    }
}

fn key_invalid(message: impl Into<String>) -> ApiError {
    ApiError::validation(message)
}

/// Splits a parsed `KeyConditionExpression` into one predicate per key attribute, refusing what
/// a key condition may not contain.
pub fn key_predicates(condition: &Condition) -> ApiResult<Vec<(String, KeyPredicate)>> {
    let mut out = Vec::new();
    collect_key_predicates(condition, &mut out)?;
    Ok(out)
}

fn key_attribute(operand: &Operand) -> ApiResult<Option<String>> {
    match operand {
        Operand::Path(path) if path.is_top_level() => Ok(Some(path.head().to_owned())),
        Operand::Path(_) => Err(key_invalid(
            "KeyConditionExpressions cannot have conditions on nested attributes",
        )),
        Operand::Size(_) => Err(key_invalid(
            "KeyConditionExpressions cannot contain nested operations",
        )),
        Operand::Value(_) => Ok(None),
    }
}

fn literal(operand: &Operand) -> ApiResult<AttributeValue> {
    match operand {
        Operand::Value(value) => Ok(value.clone()),
        _ => Err(key_invalid(
            "Invalid condition in KeyConditionExpression: Multiple attribute names used in one condition",
        )),
    }
}

fn collect_key_predicates(
    condition: &Condition,
    out: &mut Vec<(String, KeyPredicate)>,
) -> ApiResult<()> {
    let (name, predicate) = match condition {
        Condition::And(a, b) => {
            collect_key_predicates(a, out)?;
            return collect_key_predicates(b, out);
        }
        Condition::Or(..) => {
            return Err(key_invalid(
                "Invalid operator used in KeyConditionExpression: OR",
            ));
        }
        Condition::Not(..) => {
            return Err(key_invalid(
                "Invalid operator used in KeyConditionExpression: NOT",
            ));
        }
        Condition::In(..) => {
            return Err(key_invalid(
                "Invalid operator used in KeyConditionExpression: IN",
            ));
        }
        Condition::AttributeExists(_) => {
            return Err(key_invalid(
                "Invalid operator used in KeyConditionExpression: attribute_exists",
            ));
        }
        Condition::AttributeNotExists(_) => {
            return Err(key_invalid(
                "Invalid operator used in KeyConditionExpression: attribute_not_exists",
            ));
        }
        Condition::AttributeType(..) => {
            return Err(key_invalid(
                "Invalid operator used in KeyConditionExpression: attribute_type",
            ));
        }
        Condition::Contains(..) => {
            return Err(key_invalid(
                "Invalid operator used in KeyConditionExpression: contains",
            ));
        }
        Condition::Compare(left, comparator, right) => {
            if *comparator == Comparator::Ne {
                return Err(key_invalid(
                    "Invalid operator used in KeyConditionExpression: <>",
                ));
            }
            match (key_attribute(left)?, key_attribute(right)?) {
                (Some(_), Some(_)) => {
                    return Err(key_invalid(
                        "Invalid condition in KeyConditionExpression: Multiple attribute names used in one condition",
                    ));
                }
                (None, None) => {
                    return Err(key_invalid(
                        "Invalid condition in KeyConditionExpression: No key attribute specified",
                    ));
                }
                (Some(name), None) => (name, KeyPredicate::Compare(*comparator, literal(right)?)),
                (None, Some(name)) => (
                    name,
                    KeyPredicate::Compare(comparator.flipped(), literal(left)?),
                ),
            }
        }
        Condition::Between(value, low, high) => {
            let Some(name) = key_attribute(value)? else {
                return Err(key_invalid(
                    "Invalid condition in KeyConditionExpression: BETWEEN operator must have the key attribute as its first operand",
                ));
            };
            (name, KeyPredicate::Between(literal(low)?, literal(high)?))
        }
        Condition::BeginsWith(value, prefix) => {
            let Some(name) = key_attribute(value)? else {
                return Err(key_invalid(
                    "Invalid condition in KeyConditionExpression: begins_with operator must have the key attribute as its first operand",
                ));
            };
            (name, KeyPredicate::BeginsWith(literal(prefix)?))
        }
    };
    if out.iter().any(|(existing, _)| *existing == name) {
        return Err(key_invalid(
            "KeyConditionExpressions must only contain one condition per key",
        ));
    }
    out.push((name, predicate));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamodb::value::RawValue;

    fn raw_values(json: &str) -> RawItem {
        serde_json::from_str::<BTreeMap<String, RawValue>>(json).unwrap()
    }

    #[test]
    fn unused_placeholders_are_named() {
        let mut placeholders = Placeholders::from_request(
            None,
            Some(raw_values(r#"{":x":{"N":"1"},":y":{"N":"2"}}"#)),
        )
        .unwrap();
        condition("ConditionExpression", "a = :y", &mut placeholders).unwrap();
        assert_eq!(
            placeholders.check_all_used().unwrap_err().message,
            "Value provided in ExpressionAttributeValues unused in expressions: keys: {:x}"
        );
    }

    #[test]
    fn placeholder_maps_are_validated() {
        let err = Placeholders::from_request(Some(BTreeMap::new()), None).unwrap_err();
        assert_eq!(err.message, "ExpressionAttributeNames must not be empty");
        let err =
            Placeholders::from_request(None, Some(raw_values(r#"{"x":{"N":"1"}}"#))).unwrap_err();
        assert!(
            err.message
                .contains("invalid key: Syntax error; key: \"x\"")
        );
        let err = Placeholders::from_request(None, Some(raw_values(r#"{":x":{"N":"abc"}}"#)))
            .unwrap_err();
        assert!(
            err.message
                .starts_with("ExpressionAttributeValues contains invalid value:")
        );
    }

    #[test]
    fn errors_name_the_member() {
        let mut placeholders = Placeholders::default();
        let err = update("SET", &mut placeholders).unwrap_err();
        assert_eq!(
            err.message,
            "Invalid UpdateExpression: Syntax error; token: \"<EOF>\", near: \"SET\""
        );
        let err = condition("ConditionExpression", "", &mut placeholders).unwrap_err();
        assert_eq!(
            err.message,
            "Invalid ConditionExpression: The expression can not be empty;"
        );
        let long = format!("a = :v{}", " ".repeat(5000));
        assert!(
            condition("FilterExpression", &long, &mut placeholders)
                .unwrap_err()
                .message
                .contains("maximum allowed size")
        );
    }

    #[test]
    fn mixing_dialects_is_refused() {
        let dialect = Dialect {
            expressions: vec!["ConditionExpression"],
            legacy: vec!["Expected"],
            value_users: &["ConditionExpression"],
            no_value_users: false,
            has_names: false,
            has_values: false,
        };
        assert!(
            dialect
                .check()
                .unwrap_err()
                .message
                .starts_with("Can not use both expression and non-expression parameters")
        );
    }

    #[test]
    fn key_conditions_split_per_attribute() {
        let mut placeholders = Placeholders::from_request(
            None,
            Some(raw_values(
                r#"{":o":{"S":"w"},":k":{"S":"a"},":z":{"S":"z"}}"#,
            )),
        )
        .unwrap();
        let parsed = condition(
            "KeyConditionExpression",
            "leaseOwner = :o AND leaseKey BETWEEN :k AND :z",
            &mut placeholders,
        )
        .unwrap();
        let predicates = key_predicates(&parsed).unwrap();
        assert_eq!(predicates.len(), 2);
        assert_eq!(predicates[0].0, "leaseOwner");
        let flipped =
            condition("KeyConditionExpression", ":k < leaseKey", &mut placeholders).unwrap();
        assert_eq!(
            key_predicates(&flipped).unwrap()[0].1,
            KeyPredicate::Compare(Comparator::Gt, AttributeValue::S("a".into()))
        );
        let or = condition(
            "KeyConditionExpression",
            "a = :o OR b = :k",
            &mut placeholders,
        )
        .unwrap();
        assert!(key_predicates(&or).unwrap_err().message.contains("OR"));
        let twice = condition(
            "KeyConditionExpression",
            "a = :o AND a = :k",
            &mut placeholders,
        )
        .unwrap();
        assert!(
            key_predicates(&twice)
                .unwrap_err()
                .message
                .contains("one condition per key")
        );
    }
}
