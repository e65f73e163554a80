//! The legacy (pre-expression) parameters the Java KCL still sends: `Expected` +
//! `ConditionalOperator`, `AttributeUpdates`, and `ScanFilter`/`QueryFilter`/`KeyConditions`.
//!
//! Each is validated with AWS's messages and translated into the expression trees of
//! [`super::expression::ast`], so both dialects share one evaluator and one update engine.

use super::expression::KeyPredicate;
use super::expression::ast::{
    Comparator, Condition, Operand, Path, SetOperand, SetValue, Update, UpdateAction,
};
use super::value::{AttributeValue, RawValue};
use crate::http::error::{ApiError, ApiResult};
use crate::http::validation::Validator;
use serde::Deserialize;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// `ComparisonOperator` values, in the model's order.
const COMPARISON_OPERATORS: [&str; 13] = [
    "EQ",
    "NE",
    "IN",
    "LE",
    "LT",
    "GE",
    "GT",
    "BETWEEN",
    "NOT_NULL",
    "NULL",
    "CONTAINS",
    "NOT_CONTAINS",
    "BEGINS_WITH",
];

/// One entry of `Expected`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RawExpected {
    pub value: Option<RawValue>,
    pub exists: Option<bool>,
    pub comparison_operator: Option<String>,
    pub attribute_value_list: Option<Vec<RawValue>>,
}

/// One entry of `ScanFilter`, `QueryFilter` or `KeyConditions`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RawCondition {
    pub attribute_value_list: Option<Vec<RawValue>>,
    pub comparison_operator: Option<String>,
}

/// One entry of `AttributeUpdates`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RawAttributeUpdate {
    pub value: Option<RawValue>,
    pub action: Option<String>,
}

fn invalid(message: impl AsRef<str>) -> ApiError {
    ApiError::validation(format!(
        "One or more parameter values were invalid: {}",
        message.as_ref()
    ))
}

/// Combines per-attribute conditions with `ConditionalOperator` into a balanced tree, so even a
/// request with thousands of `Expected` entries evaluates without deep recursion.
fn combine(mut conditions: Vec<Condition>, operator: Option<&str>) -> Option<Condition> {
    let or = operator == Some("OR");
    if conditions.len() <= 1 {
        return conditions.pop();
    }
    let right = conditions.split_off(conditions.len() / 2);
    let (left, right) = (combine(conditions, operator)?, combine(right, operator)?);
    Some(if or {
        Condition::Or(Box::new(left), Box::new(right))
    } else {
        Condition::And(Box::new(left), Box::new(right))
    })
}

/// Validates `ConditionalOperator` when present.
pub fn check_conditional_operator(operator: Option<&str>, validator: &mut Validator) {
    if let Some(operator) = operator {
        validator.one_of(operator, "conditionalOperator", &["AND", "OR"]);
    }
}

/// The condition for an operator applied to `name` with already-validated values.
fn operator_condition(name: &str, operator: &str, values: Vec<AttributeValue>) -> Condition {
    let path = || Operand::Path(Path::attribute(name));
    let mut values = values.into_iter().map(Operand::Value);
    let mut next = || {
        values
            .next()
            .unwrap_or(Operand::Value(AttributeValue::Null))
    };
    let compare = |comparator, value| Condition::Compare(path(), comparator, value);
    match operator {
        "EQ" => compare(Comparator::Eq, next()),
        "NE" => compare(Comparator::Ne, next()),
        "LT" => compare(Comparator::Lt, next()),
        "LE" => compare(Comparator::Le, next()),
        "GT" => compare(Comparator::Gt, next()),
        "GE" => compare(Comparator::Ge, next()),
        "NOT_NULL" => Condition::AttributeExists(Path::attribute(name)),
        "NULL" => Condition::AttributeNotExists(Path::attribute(name)),
        "CONTAINS" => Condition::Contains(path(), next()),
        "NOT_CONTAINS" => Condition::Not(Box::new(Condition::Contains(path(), next()))),
        "BEGINS_WITH" => Condition::BeginsWith(path(), next()),
        "BETWEEN" => {
            let low = next();
            Condition::Between(path(), low, next())
        }
        _ => {
            let mut options = vec![next()];
            options.extend(values);
            Condition::In(path(), options)
        }
    }
}

/// Checks the number and types of an operator's values, as DynamoDB does for filters.
fn check_operator_values(operator: &str, values: &[AttributeValue]) -> ApiResult<()> {
    let count_ok = match operator {
        "NULL" | "NOT_NULL" => values.is_empty(),
        "IN" => !values.is_empty(),
        "BETWEEN" => values.len() == 2,
        _ => values.len() == 1,
    };
    if !count_ok {
        return Err(invalid(format!(
            "Invalid number of argument(s) for the {operator} ComparisonOperator"
        )));
    }
    if let Some(first) = values.first()
        && values.iter().any(|v| v.type_tag() != first.type_tag())
    {
        return Err(invalid(
            "AttributeValues inside AttributeValueList must be of same type",
        ));
    }
    let allowed: &[&str] = match operator {
        "EQ" | "NE" => &["S", "N", "B", "SS", "NS", "BS", "BOOL", "NULL", "L", "M"],
        "BEGINS_WITH" => &["S", "B"],
        _ => &["S", "N", "B"],
    };
    if let Some(bad) = values.iter().find(|v| !allowed.contains(&v.type_tag())) {
        return Err(invalid(format!(
            "ComparisonOperator {operator} is not valid for {} AttributeValue type",
            bad.type_tag()
        )));
    }
    if let [low, high] = values
        && operator == "BETWEEN"
        && low.compare(high) == Some(Ordering::Greater)
    {
        return Err(ApiError::validation(
            "The BETWEEN condition was provided a range where the lower bound is greater than the upper bound",
        ));
    }
    Ok(())
}

fn validate_list(list: Option<Vec<RawValue>>) -> ApiResult<Vec<AttributeValue>> {
    list.unwrap_or_default()
        .into_iter()
        .map(RawValue::validate)
        .collect()
}

/// Translates `Expected` (+ `ConditionalOperator`) into a condition.
pub fn expected(
    expected: BTreeMap<String, RawExpected>,
    operator: Option<&str>,
) -> ApiResult<Option<Condition>> {
    let mut validator = Validator::new();
    for (name, entry) in &expected {
        if let Some(op) = &entry.comparison_operator {
            validator.one_of(
                op,
                &format!("expected.{name}.member.comparisonOperator"),
                &COMPARISON_OPERATORS,
            );
        }
    }
    check_conditional_operator(operator, &mut validator);
    validator.finish()?;
    let mut conditions = Vec::new();
    for (name, entry) in expected {
        if entry.attribute_value_list.is_some() && entry.value.is_some() {
            return Err(invalid(format!(
                "Value and AttributeValueList cannot be used together for Attribute: {name}"
            )));
        }
        if let Some(op) = entry.comparison_operator {
            if entry.exists.is_some() {
                return Err(invalid(format!(
                    "Exists and ComparisonOperator cannot be used together for Attribute: {name}"
                )));
            }
            if op != "NULL"
                && op != "NOT_NULL"
                && entry.attribute_value_list.is_none()
                && entry.value.is_none()
            {
                return Err(invalid(format!(
                    "Value or AttributeValueList must be used with ComparisonOperator: {op} for Attribute: {name}"
                )));
            }
            let values = match entry.value {
                Some(value) => vec![value.validate()?],
                None => validate_list(entry.attribute_value_list)?,
            };
            check_operator_values(&op, &values)?;
            conditions.push(operator_condition(&name, &op, values));
        } else if entry.attribute_value_list.is_some() {
            return Err(invalid(format!(
                "AttributeValueList can only be used with a ComparisonOperator for Attribute: {name}"
            )));
        } else {
            match (entry.exists, entry.value) {
                (Some(false), Some(_)) => {
                    return Err(invalid(format!(
                        "Value cannot be used when Exists is false for Attribute: {name}"
                    )));
                }
                (Some(false), None) => {
                    conditions.push(Condition::AttributeNotExists(Path::attribute(&name)));
                }
                (exists, None) => {
                    let exists = if exists.is_some() { "true" } else { "null" };
                    return Err(invalid(format!(
                        "Value must be provided when Exists is {exists} for Attribute: {name}"
                    )));
                }
                (_, Some(value)) => {
                    let value = value.validate()?;
                    conditions.push(operator_condition(&name, "EQ", vec![value]));
                }
            }
        }
    }
    Ok(combine(conditions, operator))
}

fn validate_conditions(
    conditions: BTreeMap<String, RawCondition>,
    member: &str,
) -> ApiResult<Vec<(String, String, Vec<AttributeValue>)>> {
    let mut validator = Validator::new();
    for (name, entry) in &conditions {
        let field = format!("{member}.{name}.member.comparisonOperator");
        if let Some(op) = validator.required(&entry.comparison_operator, &field) {
            validator.one_of(op, &field, &COMPARISON_OPERATORS);
        }
    }
    validator.finish()?;
    let mut out = Vec::new();
    for (name, entry) in conditions {
        let op = entry.comparison_operator.unwrap_or_default();
        let values = validate_list(entry.attribute_value_list)?;
        check_operator_values(&op, &values)?;
        out.push((name, op, values));
    }
    Ok(out)
}

/// Translates `ScanFilter` or `QueryFilter` (+ `ConditionalOperator`) into a condition.
pub fn filter(
    filter: BTreeMap<String, RawCondition>,
    member: &str,
    operator: Option<&str>,
) -> ApiResult<Option<Condition>> {
    let mut validator = Validator::new();
    check_conditional_operator(operator, &mut validator);
    validator.finish()?;
    let conditions = validate_conditions(filter, member)?
        .into_iter()
        .map(|(name, op, values)| operator_condition(&name, &op, values))
        .collect();
    Ok(combine(conditions, operator))
}

/// Translates `KeyConditions` into per-attribute key predicates.
pub fn key_conditions(
    conditions: BTreeMap<String, RawCondition>,
) -> ApiResult<Vec<(String, KeyPredicate)>> {
    if conditions.len() > 2 {
        return Err(ApiError::validation(
            "Conditions can be of length 1 or 2 only",
        ));
    }
    validate_conditions(conditions, "keyConditions")?
        .into_iter()
        .map(|(name, op, values)| {
            let mut values = values.into_iter();
            let mut next = || values.next().unwrap_or(AttributeValue::Null);
            let predicate = match op.as_str() {
                "EQ" => KeyPredicate::Compare(Comparator::Eq, next()),
                "LT" => KeyPredicate::Compare(Comparator::Lt, next()),
                "LE" => KeyPredicate::Compare(Comparator::Le, next()),
                "GT" => KeyPredicate::Compare(Comparator::Gt, next()),
                "GE" => KeyPredicate::Compare(Comparator::Ge, next()),
                "BEGINS_WITH" => KeyPredicate::BeginsWith(next()),
                "BETWEEN" => {
                    let low = next();
                    KeyPredicate::Between(low, next())
                }
                _ => {
                    return Err(ApiError::validation(
                        "Attempted conditional constraint is not an indexable operation",
                    ));
                }
            };
            Ok((name, predicate))
        })
        .collect()
}

/// Translates `AttributeUpdates` into an update.
pub fn attribute_updates(updates: BTreeMap<String, RawAttributeUpdate>) -> ApiResult<Update> {
    let mut validator = Validator::new();
    for (name, entry) in &updates {
        if let Some(action) = &entry.action {
            validator.one_of(
                action,
                &format!("attributeUpdates.{name}.member.action"),
                &["ADD", "PUT", "DELETE"],
            );
        }
    }
    validator.finish()?;
    let mut update = Update::default();
    for (name, entry) in updates {
        let action = entry.action.as_deref().unwrap_or("PUT");
        let value = entry.value.map(RawValue::validate).transpose()?;
        let path = Path::attribute(&name);
        let action = match (action, value) {
            ("DELETE", None) => UpdateAction::Remove(path),
            (_, None) => {
                return Err(invalid(
                    "Only DELETE action is allowed when no attribute value is specified",
                ));
            }
            ("PUT", Some(value)) => {
                UpdateAction::Set(path, SetValue::Operand(SetOperand::Value(value)))
            }
            ("DELETE", Some(value)) => match value {
                AttributeValue::Ss(_) | AttributeValue::Ns(_) | AttributeValue::Bs(_) => {
                    UpdateAction::Delete(path, value)
                }
                other => {
                    return Err(invalid(format!(
                        "DELETE action with value is not supported for the type {}",
                        other.type_tag()
                    )));
                }
            },
            (_, Some(value)) => match value {
                AttributeValue::N(_)
                | AttributeValue::Ss(_)
                | AttributeValue::Ns(_)
                | AttributeValue::Bs(_) => UpdateAction::Add(path, value),
                // ADD of a list appends to it (creating it when missing).
                AttributeValue::L(_) => UpdateAction::Set(
                    path.clone(),
                    SetValue::Operand(SetOperand::ListAppend(
                        Box::new(SetOperand::IfNotExists(
                            path,
                            Box::new(SetOperand::Value(AttributeValue::L(Vec::new()))),
                        )),
                        Box::new(SetOperand::Value(value)),
                    )),
                ),
                other => {
                    return Err(invalid(format!(
                        "ADD action is not supported for the type {}",
                        other.type_tag()
                    )));
                }
            },
        };
        update.actions.push(action);
    }
    Ok(update)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamodb::expression::eval::evaluate;
    use crate::dynamodb::expression::update::apply;
    use crate::dynamodb::value::{Item, validate_item};

    fn item(json: &str) -> Item {
        validate_item(serde_json::from_str(json).unwrap()).unwrap()
    }

    fn expected_condition(json: &str, operator: Option<&str>) -> ApiResult<Option<Condition>> {
        expected(serde_json::from_str(json).unwrap(), operator)
    }

    #[test]
    fn exists_false_means_attribute_not_exists() {
        let condition = expected_condition(r#"{"leaseKey":{"Exists":false}}"#, None)
            .unwrap()
            .unwrap();
        assert!(evaluate(&condition, &Item::new()));
        assert!(!evaluate(
            &condition,
            &item(r#"{"leaseKey":{"S":"shard-0"}}"#)
        ));
    }

    #[test]
    fn value_with_exists_true_is_equality() {
        let condition = expected_condition(
            r#"{"leaseCounter":{"Value":{"N":"3"},"Exists":true}}"#,
            None,
        )
        .unwrap()
        .unwrap();
        assert!(evaluate(
            &condition,
            &item(r#"{"leaseCounter":{"N":"3.0"}}"#)
        ));
        assert!(!evaluate(
            &condition,
            &item(r#"{"leaseCounter":{"N":"4"}}"#)
        ));
        assert!(!evaluate(&condition, &Item::new()));
    }

    #[test]
    fn comparison_operators_and_conditional_operator_combine() {
        let json = r#"{"a":{"ComparisonOperator":"GT","AttributeValueList":[{"N":"5"}]},"b":{"ComparisonOperator":"NULL"}}"#;
        let and = expected_condition(json, None).unwrap().unwrap();
        let or = expected_condition(json, Some("OR")).unwrap().unwrap();
        let target = item(r#"{"a":{"N":"1"}}"#);
        assert!(!evaluate(&and, &target));
        assert!(evaluate(&or, &target));
    }

    #[test]
    fn malformed_expected_entries_are_refused_with_aws_messages() {
        let message = |json: &str| expected_condition(json, None).unwrap_err().message;
        assert!(
            message(r#"{"a":{"Exists":true}}"#)
                .contains("Value must be provided when Exists is true for Attribute: a")
        );
        assert!(
            message(r#"{"a":{}}"#)
                .contains("Value must be provided when Exists is null for Attribute: a")
        );
        assert!(
            message(r#"{"a":{"Exists":false,"Value":{"S":"x"}}}"#)
                .contains("Value cannot be used when Exists is false")
        );
        assert!(
            message(r#"{"a":{"ComparisonOperator":"EQ"}}"#)
                .contains("Value or AttributeValueList must be used")
        );
        assert!(
            message(r#"{"a":{"ComparisonOperator":"BETWEEN","AttributeValueList":[{"N":"1"}]}}"#)
                .contains("Invalid number of argument(s) for the BETWEEN ComparisonOperator")
        );
        assert!(
            message(r#"{"a":{"ComparisonOperator":"NOPE"}}"#)
                .contains("Member must satisfy enum value set")
        );
        assert!(
            message(r#"{"a":{"ComparisonOperator":"LT","AttributeValueList":[{"SS":["x"]}]}}"#)
                .contains("ComparisonOperator LT is not valid for SS AttributeValue type")
        );
    }

    #[test]
    fn thousands_of_expected_entries_make_a_shallow_tree() {
        fn depth(condition: &Condition) -> usize {
            match condition {
                Condition::And(a, b) | Condition::Or(a, b) => 1 + depth(a).max(depth(b)),
                _ => 1,
            }
        }
        let conditions = (0..5000)
            .map(|i| Condition::AttributeExists(Path::attribute(format!("a{i}"))))
            .collect();
        let combined = combine(conditions, Some("AND")).unwrap();
        assert!(depth(&combined) <= 14);
    }

    #[test]
    fn attribute_updates_put_add_and_delete() {
        let updates = attribute_updates(
            serde_json::from_str(
                r#"{"leaseCounter":{"Action":"ADD","Value":{"N":"1"}},"leaseOwner":{"Action":"PUT","Value":{"S":"w2"}},
                    "checkpointOwner":{"Action":"DELETE"},"l":{"Action":"ADD","Value":{"L":[{"S":"x"}]}}}"#,
            )
            .unwrap(),
        )
        .unwrap();
        let mut target = item(
            r#"{"leaseCounter":{"N":"41"},"leaseOwner":{"S":"w1"},"checkpointOwner":{"S":"w1"}}"#,
        );
        apply(&updates, &mut target).unwrap();
        assert_eq!(
            serde_json::to_string(&target).unwrap(),
            r#"{"l":{"L":[{"S":"x"}]},"leaseCounter":{"N":"42"},"leaseOwner":{"S":"w2"}}"#
        );
    }

    #[test]
    fn attribute_updates_without_value_must_delete() {
        let err = attribute_updates(serde_json::from_str(r#"{"a":{"Action":"PUT"}}"#).unwrap())
            .unwrap_err();
        assert!(err.message.contains("Only DELETE action is allowed"));
        let err = attribute_updates(
            serde_json::from_str(r#"{"a":{"Action":"ADD","Value":{"S":"x"}}}"#).unwrap(),
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("ADD action is not supported for the type S")
        );
    }
}
