//! Model constraint checks that report like AWS does.
//!
//! AWS collects every violated constraint of a request into one `ValidationException`:
//! `2 validation errors detected: Value 'x' at 'streamName' failed to satisfy constraint: ...; ...`.
//! Handlers feed a [`Validator`] with each member they read and call [`Validator::finish`].

use super::error::{ApiError, ApiResult};
use std::fmt::Display;

/// Collects constraint violations for one request.
#[derive(Default)]
pub struct Validator {
    errors: Vec<String>,
}

impl Validator {
    /// A validator with no violations yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn fail(&mut self, value: impl Display, member: &str, constraint: impl Display) {
        self.errors.push(format!(
            "Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
        ));
    }

    /// Records a violation for a member that is present but wrong in a way no helper covers.
    pub fn violation(&mut self, value: impl Display, member: &str, constraint: impl Display) {
        self.fail(value, member, constraint);
    }

    /// A required member must be present; returns it for convenience.
    pub fn required<'a, T>(&mut self, value: &'a Option<T>, member: &str) -> Option<&'a T> {
        if value.is_none() {
            self.errors.push(format!(
                "Value null at '{member}' failed to satisfy constraint: Member must not be null"
            ));
        }
        value.as_ref()
    }

    /// String length in characters within `[min, max]`.
    pub fn length(&mut self, value: &str, member: &str, min: usize, max: usize) {
        let len = value.chars().count();
        if len < min {
            self.fail(
                value,
                member,
                format_args!("Member must have length greater than or equal to {min}"),
            );
        } else if len > max {
            self.fail(
                value,
                member,
                format_args!("Member must have length less than or equal to {max}"),
            );
        }
    }

    /// Every character satisfies `allowed`; `pattern` is the model's pattern, quoted in the message.
    pub fn chars(
        &mut self,
        value: &str,
        member: &str,
        pattern: &str,
        allowed: impl Fn(char) -> bool,
    ) {
        if !value.chars().all(allowed) {
            self.fail(
                value,
                member,
                format_args!("Member must satisfy regular expression pattern: {pattern}"),
            );
        }
    }

    /// Integer within `[min, max]`.
    pub fn range(&mut self, value: i64, member: &str, min: i64, max: i64) {
        if value < min {
            self.fail(
                value,
                member,
                format_args!("Member must have value greater than or equal to {min}"),
            );
        } else if value > max {
            self.fail(
                value,
                member,
                format_args!("Member must have value less than or equal to {max}"),
            );
        }
    }

    /// Collection size within `[min, max]`.
    pub fn count(&mut self, len: usize, member: &str, min: usize, max: usize) {
        if len < min {
            self.errors.push(format!(
                "Value at '{member}' failed to satisfy constraint: Member must have length greater than or equal to {min}"
            ));
        } else if len > max {
            self.errors.push(format!(
                "Value at '{member}' failed to satisfy constraint: Member must have length less than or equal to {max}"
            ));
        }
    }

    /// Value is one of the model's enum members.
    pub fn one_of(&mut self, value: &str, member: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            self.fail(
                value,
                member,
                format_args!(
                    "Member must satisfy enum value set: [{}]",
                    allowed.join(", ")
                ),
            );
        }
    }

    /// Ends validation: `Ok` when nothing failed, else one `ValidationException` listing all.
    pub fn finish(self) -> ApiResult<()> {
        match self.errors.len() {
            0 => Ok(()),
            1 => Err(ApiError::validation(format!(
                "1 validation error detected: {}",
                self.errors[0]
            ))),
            n => Err(ApiError::validation(format!(
                "{n} validation errors detected: {}",
                self.errors.join("; ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_violation_in_one_message() {
        let mut v = Validator::new();
        v.length("", "streamName", 1, 128);
        v.range(0, "shardCount", 1, 10);
        let err = v.finish().unwrap_err();
        assert_eq!(err.code, "ValidationException");
        assert!(err.message.starts_with("2 validation errors detected: "));
        assert!(err.message.contains("'streamName'"));
        assert!(err.message.contains("'shardCount'"));
    }

    #[test]
    fn missing_required_member_is_null() {
        let mut v = Validator::new();
        let none: Option<String> = None;
        assert!(v.required(&none, "streamName").is_none());
        let err = v.finish().unwrap_err();
        assert!(err.message.contains("Value null at 'streamName'"));
    }
}
