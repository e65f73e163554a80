//! A hand-written recursive-descent parser for condition, key-condition, filter, update and
//! projection expressions.
//!
//! Syntax errors stop parsing at once and quote the offending token. Semantic problems (an
//! undefined placeholder, a reserved word, a misused function, overlapping paths) are collected
//! while parsing continues, and the most important one is reported once the syntax is known to be
//! good — the order DynamoDB reports them in.

use super::Placeholders;
use super::ast::{
    Comparator, Condition, Operand, Path, PathElement, SetOperand, SetValue, Update, UpdateAction,
};
use super::lexer::{Token, TokenKind, tokenize};
use super::reserved::is_reserved;
use crate::dynamodb::value::AttributeValue;
use std::cmp::Ordering;

/// Deepest document path DynamoDB accepts.
const MAX_PATH_DEPTH: usize = 32;
/// Deepest nesting of parentheses, `NOT`s and function calls we parse; far beyond anything a
/// real expression uses, and low enough that hostile input cannot exhaust the stack.
const MAX_NESTING: usize = 64;
/// Most operands of `IN`.
const MAX_IN_OPERANDS: usize = 100;

/// Why an expression was refused; the message is AWS's, without the `Invalid XExpression: `
/// prefix the caller adds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

type PResult<T> = Result<T, ParseError>;

/// Semantic problems in the order DynamoDB reports them when several are present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Problem {
    RedundantParens,
    Reserved,
    UnknownFunction,
    Section,
    MisusedFunction,
    UndefinedPlaceholder,
    Nesting,
    PathOverlap,
    Operands,
    Distinct,
    OperandType,
}

struct Parser<'a> {
    source: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    placeholders: &'a mut Placeholders,
    problems: Vec<(Problem, String)>,
    depth: usize,
}

/// Parses a condition (`ConditionExpression`, `FilterExpression`, `KeyConditionExpression`).
pub fn parse_condition(source: &str, placeholders: &mut Placeholders) -> PResult<Condition> {
    let mut parser = Parser::new(source, placeholders);
    let (condition, _) = parser.parse_or()?;
    parser.expect_end()?;
    parser.finish(condition)
}

/// Parses an `UpdateExpression`.
pub fn parse_update(source: &str, placeholders: &mut Placeholders) -> PResult<Update> {
    let mut parser = Parser::new(source, placeholders);
    let update = parser.parse_update()?;
    parser.check_overlaps(update.actions.iter().map(UpdateAction::path));
    parser.finish(update)
}

/// Parses a `ProjectionExpression` into its paths.
pub fn parse_projection(source: &str, placeholders: &mut Placeholders) -> PResult<Vec<Path>> {
    let mut parser = Parser::new(source, placeholders);
    let mut paths = vec![parser.parse_path()?];
    while parser.eat(&TokenKind::Comma) {
        paths.push(parser.parse_path()?);
    }
    parser.expect_end()?;
    parser.check_overlaps(paths.iter());
    parser.finish(paths)
}

/// The long type names `ADD`/`DELETE` errors use.
fn long_type_name(value: &AttributeValue) -> &'static str {
    match value {
        AttributeValue::S(_) => "STRING",
        AttributeValue::N(_) => "NUMBER",
        AttributeValue::B(_) => "BINARY",
        AttributeValue::Null => "NULL",
        AttributeValue::Bool(_) => "BOOLEAN",
        AttributeValue::L(_) => "LIST",
        AttributeValue::M(_) => "MAP",
        AttributeValue::Ss(_) => "SS",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Bs(_) => "BS",
    }
}

const ATTRIBUTE_TYPES: [&str; 10] = ["S", "SS", "N", "NS", "B", "BS", "BOOL", "NULL", "L", "M"];

impl<'a> Parser<'a> {
    fn new(source: &'a str, placeholders: &'a mut Placeholders) -> Self {
        Self {
            source,
            tokens: tokenize(source),
            pos: 0,
            placeholders,
            problems: Vec::new(),
            depth: 0,
        }
    }

    fn finish<T>(self, value: T) -> PResult<T> {
        match self
            .problems
            .into_iter()
            .min_by_key(|(problem, _)| *problem)
        {
            Some((_, message)) => Err(ParseError(message)),
            None => Ok(value),
        }
    }

    fn problem(&mut self, problem: Problem, message: impl Into<String>) {
        if !self.problems.iter().any(|(p, _)| *p == problem) {
            self.problems.push((problem, message.into()));
        }
    }

    fn peek(&self) -> &TokenKind {
        self.peek_at(0)
    }

    fn peek_at(&self, offset: usize) -> &TokenKind {
        let index = (self.pos + offset).min(self.tokens.len() - 1);
        &self.tokens[index].kind
    }

    fn advance(&mut self) -> TokenKind {
        let kind = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        kind
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        if self.peek() == kind {
            self.advance();
            true
        } else {
            false
        }
    }

    /// True when the next token is the keyword `word` (any case).
    fn at_keyword(&self, word: &str) -> bool {
        matches!(self.peek(), TokenKind::Word(w) if w.eq_ignore_ascii_case(word))
    }

    /// AWS's syntax error: `Syntax error; token: "<tok>", near: "<prev tok next>"`.
    fn syntax_error(&self) -> ParseError {
        let index = self.pos.min(self.tokens.len() - 1);
        let token = &self.tokens[index];
        let text = if token.kind == TokenKind::Eof {
            "<EOF>".to_owned()
        } else {
            self.source[token.start..token.end].to_owned()
        };
        let from = index
            .checked_sub(1)
            .map_or(token.start, |i| self.tokens[i].start);
        let to = self
            .tokens
            .get(index + 1)
            .filter(|t| t.kind != TokenKind::Eof)
            .map_or(token.end, |t| t.end);
        let near = self.source.get(from..to).unwrap_or("");
        ParseError(format!("Syntax error; token: \"{text}\", near: \"{near}\""))
    }

    fn expect(&mut self, kind: &TokenKind) -> PResult<()> {
        if self.eat(kind) {
            Ok(())
        } else {
            Err(self.syntax_error())
        }
    }

    fn expect_end(&self) -> PResult<()> {
        if *self.peek() == TokenKind::Eof {
            Ok(())
        } else {
            Err(self.syntax_error())
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(ParseError(format!(
                "The expression is nested too deeply; maximum nesting: {MAX_NESTING}"
            )));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    // ---- paths and operands ----

    fn parse_name(&mut self) -> PResult<String> {
        match self.peek().clone() {
            TokenKind::Word(word) => {
                self.advance();
                if is_reserved(&word) {
                    self.problem(
                        Problem::Reserved,
                        format!("Attribute name is a reserved keyword; reserved keyword: {word}"),
                    );
                }
                Ok(word)
            }
            TokenKind::NamePlaceholder(placeholder) => {
                self.advance();
                match self.placeholders.name(&placeholder) {
                    Some(name) => Ok(name),
                    None => {
                        self.problem(
                            Problem::UndefinedPlaceholder,
                            format!(
                                "An expression attribute name used in the document path is not defined; attribute name: {placeholder}"
                            ),
                        );
                        Ok(placeholder)
                    }
                }
            }
            _ => Err(self.syntax_error()),
        }
    }

    fn parse_path(&mut self) -> PResult<Path> {
        let mut elements = vec![PathElement::Attribute(self.parse_name()?)];
        loop {
            match self.peek() {
                TokenKind::Dot => {
                    self.advance();
                    elements.push(PathElement::Attribute(self.parse_name()?));
                }
                TokenKind::LBracket => {
                    self.advance();
                    let index = match self.peek().clone() {
                        TokenKind::Integer(digits) => match digits.parse::<usize>() {
                            Ok(index) => index,
                            Err(_) => return Err(self.syntax_error()),
                        },
                        _ => return Err(self.syntax_error()),
                    };
                    self.advance();
                    self.expect(&TokenKind::RBracket)?;
                    elements.push(PathElement::Index(index));
                }
                _ => break,
            }
        }
        if elements.len() > MAX_PATH_DEPTH {
            self.problem(
                Problem::Nesting,
                format!(
                    "The document path has too many nesting levels; nesting levels: {}",
                    elements.len()
                ),
            );
        }
        Ok(Path(elements))
    }

    /// The value behind `:placeholder`, recording a problem when it is not defined.
    fn lookup_value(&mut self, placeholder: &str) -> Option<AttributeValue> {
        let value = self.placeholders.value(placeholder);
        if value.is_none() {
            self.problem(
                Problem::UndefinedPlaceholder,
                format!(
                    "An expression attribute value used in expression is not defined; attribute value: {placeholder}"
                ),
            );
        }
        value
    }

    /// Like [`Self::lookup_value`], with a stand-in when undefined (the parse fails anyway).
    fn parse_value(&mut self, placeholder: &str) -> AttributeValue {
        self.lookup_value(placeholder)
            .unwrap_or(AttributeValue::Null)
    }

    /// Function name and raw argument operands of `name(arg, ...)`; the cursor is on the name.
    fn parse_call(&mut self) -> PResult<(String, Vec<Operand>)> {
        let TokenKind::Word(name) = self.advance() else {
            return Err(self.syntax_error());
        };
        self.expect(&TokenKind::LParen)?;
        self.enter()?;
        let mut args = Vec::new();
        if *self.peek() != TokenKind::RParen {
            args.push(self.parse_operand()?);
            while self.eat(&TokenKind::Comma) {
                args.push(self.parse_operand()?);
            }
        }
        self.expect(&TokenKind::RParen)?;
        self.leave();
        Ok((name, args))
    }

    fn is_call(&self) -> bool {
        matches!(self.peek(), TokenKind::Word(_)) && *self.peek_at(1) == TokenKind::LParen
    }

    /// An operand of a comparison or function: path, `:value`, or `size(path)`.
    fn parse_operand(&mut self) -> PResult<Operand> {
        if self.is_call() {
            let (name, args) = self.parse_call()?;
            return Ok(match self.condition_function(&name, args) {
                FunctionOutcome::Operand(operand) => operand,
                FunctionOutcome::Condition(_) => {
                    self.problem(
                        Problem::MisusedFunction,
                        format!(
                            "The function is not allowed to be used this way in an expression; function: {name}"
                        ),
                    );
                    Operand::Value(AttributeValue::Null)
                }
            });
        }
        match self.peek().clone() {
            TokenKind::ValuePlaceholder(placeholder) => {
                self.advance();
                Ok(Operand::Value(self.parse_value(&placeholder)))
            }
            TokenKind::Word(_) | TokenKind::NamePlaceholder(_) => {
                Ok(Operand::Path(self.parse_path()?))
            }
            _ => Err(self.syntax_error()),
        }
    }

    // ---- conditions ----

    /// Returns the condition and whether it was wholly wrapped in parentheses.
    fn parse_or(&mut self) -> PResult<(Condition, bool)> {
        let (mut left, mut wrapped) = self.parse_and()?;
        while self.at_keyword("OR") {
            self.advance();
            let (right, _) = self.parse_and()?;
            left = Condition::Or(Box::new(left), Box::new(right));
            wrapped = false;
        }
        Ok((left, wrapped))
    }

    fn parse_and(&mut self) -> PResult<(Condition, bool)> {
        let (mut left, mut wrapped) = self.parse_not()?;
        while self.at_keyword("AND") {
            self.advance();
            let (right, _) = self.parse_not()?;
            left = Condition::And(Box::new(left), Box::new(right));
            wrapped = false;
        }
        Ok((left, wrapped))
    }

    fn parse_not(&mut self) -> PResult<(Condition, bool)> {
        if self.at_keyword("NOT") {
            self.advance();
            self.enter()?;
            let (inner, _) = self.parse_not()?;
            self.leave();
            return Ok((Condition::Not(Box::new(inner)), false));
        }
        self.parse_primary()
    }

    fn parse_primary(&mut self) -> PResult<(Condition, bool)> {
        if self.eat(&TokenKind::LParen) {
            self.enter()?;
            let (inner, wrapped) = self.parse_or()?;
            self.expect(&TokenKind::RParen)?;
            self.leave();
            if wrapped {
                self.problem(
                    Problem::RedundantParens,
                    "The expression has redundant parentheses;",
                );
            }
            return Ok((inner, true));
        }
        if self.is_call() {
            let (name, args) = self.parse_call()?;
            match self.condition_function(&name, args) {
                FunctionOutcome::Condition(condition) => {
                    if self.at_comparison() {
                        self.problem(
                            Problem::MisusedFunction,
                            format!(
                                "The function is not allowed to be used this way in an expression; function: {name}"
                            ),
                        );
                        // Parse the rest so syntax errors still win.
                        self.parse_comparison(Operand::Value(AttributeValue::Null))?;
                    }
                    return Ok((condition, false));
                }
                FunctionOutcome::Operand(operand) => {
                    if !self.at_comparison() {
                        self.problem(
                            Problem::MisusedFunction,
                            "The function is not allowed to be used this way in an expression; function: size",
                        );
                        return Ok((dummy_condition(), false));
                    }
                    return Ok((self.parse_comparison(operand)?, false));
                }
            }
        }
        let left = self.parse_operand()?;
        Ok((self.parse_comparison(left)?, false))
    }

    fn at_comparison(&self) -> bool {
        matches!(
            self.peek(),
            TokenKind::Eq
                | TokenKind::Ne
                | TokenKind::Lt
                | TokenKind::Le
                | TokenKind::Gt
                | TokenKind::Ge
        ) || self.at_keyword("BETWEEN")
            || self.at_keyword("IN")
    }

    /// The rest of `left <op> ...`, `left BETWEEN a AND b` or `left IN (...)`.
    fn parse_comparison(&mut self, left: Operand) -> PResult<Condition> {
        let comparator = match self.peek() {
            TokenKind::Eq => Some(Comparator::Eq),
            TokenKind::Ne => Some(Comparator::Ne),
            TokenKind::Lt => Some(Comparator::Lt),
            TokenKind::Le => Some(Comparator::Le),
            TokenKind::Gt => Some(Comparator::Gt),
            TokenKind::Ge => Some(Comparator::Ge),
            _ => None,
        };
        if let Some(comparator) = comparator {
            let symbol =
                self.source[self.tokens[self.pos].start..self.tokens[self.pos].end].to_owned();
            self.advance();
            let right = self.parse_operand()?;
            if let (Operand::Path(a), Operand::Path(b)) = (&left, &right)
                && a == b
            {
                self.problem(
                    Problem::Distinct,
                    format!(
                        "The first operand must be distinct from the remaining operands for this operator or function; operator: {symbol}, first operand: {a}"
                    ),
                );
            }
            return Ok(Condition::Compare(left, comparator, right));
        }
        if self.at_keyword("BETWEEN") {
            self.advance();
            let low = self.parse_operand()?;
            if !self.at_keyword("AND") {
                return Err(self.syntax_error());
            }
            self.advance();
            let high = self.parse_operand()?;
            self.check_between_bounds(&low, &high);
            return Ok(Condition::Between(left, low, high));
        }
        if self.at_keyword("IN") {
            self.advance();
            self.expect(&TokenKind::LParen)?;
            let mut options = vec![self.parse_operand()?];
            while self.eat(&TokenKind::Comma) {
                options.push(self.parse_operand()?);
            }
            self.expect(&TokenKind::RParen)?;
            if options.len() > MAX_IN_OPERANDS {
                self.problem(
                    Problem::Operands,
                    format!(
                        "Incorrect number of operands for operator or function; operator or function: IN, number of operands: {}",
                        options.len()
                    ),
                );
            }
            return Ok(Condition::In(left, options));
        }
        Err(self.syntax_error())
    }

    fn check_between_bounds(&mut self, low: &Operand, high: &Operand) {
        let (Operand::Value(low), Operand::Value(high)) = (low, high) else {
            return;
        };
        let describe = |v: &AttributeValue| match v {
            AttributeValue::S(s) => format!("{{S:{s}}}"),
            AttributeValue::N(n) => format!("{{N:{n}}}"),
            other => format!("{{{}}}", other.type_tag()),
        };
        if low.type_tag() != high.type_tag() {
            self.problem(
                Problem::OperandType,
                format!(
                    "The BETWEEN operator requires same data type for lower and upper bounds; lower bound operand: AttributeValue: {}, upper bound operand: AttributeValue: {}",
                    describe(low),
                    describe(high)
                ),
            );
        } else if low.compare(high) == Some(Ordering::Greater) {
            self.problem(
                Problem::OperandType,
                format!(
                    "The BETWEEN operator requires upper bound to be greater than or equal to lower bound; lower bound operand: AttributeValue: {}, upper bound operand: AttributeValue: {}",
                    describe(low),
                    describe(high)
                ),
            );
        }
    }

    /// Checks a condition-expression function call and builds its node.
    fn condition_function(&mut self, name: &str, args: Vec<Operand>) -> FunctionOutcome {
        let arity = match name {
            "attribute_exists" | "attribute_not_exists" | "size" => 1,
            "attribute_type" | "begins_with" | "contains" => 2,
            _ => {
                self.problem(
                    Problem::UnknownFunction,
                    format!("Invalid function name; function: {name}"),
                );
                return FunctionOutcome::Condition(dummy_condition());
            }
        };
        if args.len() != arity {
            self.problem(
                Problem::Operands,
                format!(
                    "Incorrect number of operands for operator or function; operator or function: {name}, number of operands: {}",
                    args.len()
                ),
            );
            return if name == "size" {
                FunctionOutcome::Operand(Operand::Value(AttributeValue::Null))
            } else {
                FunctionOutcome::Condition(dummy_condition())
            };
        }
        let mut args = args.into_iter();
        let (Some(first), second) = (args.next(), args.next()) else {
            return FunctionOutcome::Condition(dummy_condition());
        };
        let requires_path = |parser: &mut Self, operand: Operand| -> Path {
            match operand {
                Operand::Path(path) => path,
                _ => {
                    parser.problem(
                        Problem::OperandType,
                        format!("Operator or function requires a document path; operator or function: {name}"),
                    );
                    Path::attribute("")
                }
            }
        };
        if name == "size" {
            return FunctionOutcome::Operand(Operand::Size(requires_path(self, first)));
        }
        let second = second.unwrap_or(Operand::Value(AttributeValue::Null));
        let condition = match name {
            "attribute_exists" => Condition::AttributeExists(requires_path(self, first)),
            "attribute_not_exists" => Condition::AttributeNotExists(requires_path(self, first)),
            "attribute_type" => {
                let path = requires_path(self, first);
                match &second {
                    Operand::Value(AttributeValue::S(type_name)) => {
                        if !ATTRIBUTE_TYPES.contains(&type_name.as_str()) {
                            self.problem(
                                Problem::OperandType,
                                format!(
                                    "Invalid attribute type name found; type: {type_name}, valid types: {{B,NULL,SS,BOOL,L,BS,N,NS,S,M}}"
                                ),
                            );
                        }
                    }
                    Operand::Value(other) => {
                        let type_name = other.type_tag();
                        self.problem(
                            Problem::OperandType,
                            format!(
                                "Incorrect operand type for operator or function; operator or function: attribute_type, operand type: {type_name}"
                            ),
                        );
                    }
                    _ => self.problem(
                        Problem::OperandType,
                        "Incorrect operand type for operator or function; operator or function: attribute_type, operand type: {NS,SS,L,BS,N,M,B,BOOL,NULL,S}",
                    ),
                }
                Condition::AttributeType(path, second)
            }
            "begins_with" => {
                for operand in [&first, &second] {
                    if let Operand::Value(value) = operand
                        && !matches!(value, AttributeValue::S(_) | AttributeValue::B(_))
                    {
                        let type_name = value.type_tag();
                        self.problem(
                            Problem::OperandType,
                            format!(
                                "Incorrect operand type for operator or function; operator or function: begins_with, operand type: {type_name}"
                            ),
                        );
                    }
                }
                Condition::BeginsWith(first, second)
            }
            _ => Condition::Contains(first, second),
        };
        FunctionOutcome::Condition(condition)
    }

    // ---- updates ----

    fn parse_update(&mut self) -> PResult<Update> {
        let mut update = Update::default();
        let mut seen: Vec<String> = Vec::new();
        while let TokenKind::Word(word) = self.peek().clone() {
            let section = word.to_ascii_uppercase();
            if !["SET", "REMOVE", "ADD", "DELETE"].contains(&section.as_str()) {
                return Err(self.syntax_error());
            }
            self.advance();
            if seen.contains(&section) {
                self.problem(
                    Problem::Section,
                    format!(
                        "The \"{section}\" section can only be used once in an update expression;"
                    ),
                );
            }
            seen.push(section.clone());
            loop {
                let action = match section.as_str() {
                    "SET" => self.parse_set_action()?,
                    "REMOVE" => UpdateAction::Remove(self.parse_path()?),
                    _ => self.parse_add_or_delete(&section)?,
                };
                update.actions.push(action);
                if !self.eat(&TokenKind::Comma) {
                    break;
                }
            }
        }
        if seen.is_empty() {
            return Err(self.syntax_error());
        }
        self.expect_end()?;
        Ok(update)
    }

    fn parse_set_action(&mut self) -> PResult<UpdateAction> {
        let path = self.parse_path()?;
        self.expect(&TokenKind::Eq)?;
        let left = self.parse_set_operand()?;
        let value = match self.peek() {
            TokenKind::Plus | TokenKind::Minus => {
                let plus = self.advance() == TokenKind::Plus;
                let right = self.parse_set_operand()?;
                let symbol = if plus { "+" } else { "-" };
                for operand in [&left, &right] {
                    if let SetOperand::Value(value) = operand
                        && !matches!(value, AttributeValue::N(_))
                    {
                        let type_name = value.type_tag();
                        self.problem(
                            Problem::OperandType,
                            format!(
                                "Incorrect operand type for operator or function; operator or function: {symbol}, operand type: {type_name}"
                            ),
                        );
                    }
                }
                if plus {
                    SetValue::Plus(left, right)
                } else {
                    SetValue::Minus(left, right)
                }
            }
            _ => SetValue::Operand(left),
        };
        Ok(UpdateAction::Set(path, value))
    }

    fn parse_set_operand(&mut self) -> PResult<SetOperand> {
        if !self.is_call() {
            return match self.peek().clone() {
                TokenKind::ValuePlaceholder(placeholder) => {
                    self.advance();
                    Ok(SetOperand::Value(self.parse_value(&placeholder)))
                }
                _ => Ok(SetOperand::Path(self.parse_path()?)),
            };
        }
        let TokenKind::Word(name) = self.advance() else {
            return Err(self.syntax_error());
        };
        self.expect(&TokenKind::LParen)?;
        self.enter()?;
        let mut args = vec![self.parse_set_operand()?];
        while self.eat(&TokenKind::Comma) {
            args.push(self.parse_set_operand()?);
        }
        self.expect(&TokenKind::RParen)?;
        self.leave();
        if name != "if_not_exists" && name != "list_append" {
            self.problem(
                Problem::UnknownFunction,
                format!("Invalid function name; function: {name}"),
            );
            return Ok(SetOperand::Value(AttributeValue::Null));
        }
        if args.len() != 2 {
            self.problem(
                Problem::Operands,
                format!(
                    "Incorrect number of operands for operator or function; operator or function: {name}, number of operands: {}",
                    args.len()
                ),
            );
            return Ok(SetOperand::Value(AttributeValue::Null));
        }
        let mut args = args.into_iter();
        let (Some(first), Some(second)) = (args.next(), args.next()) else {
            return Ok(SetOperand::Value(AttributeValue::Null));
        };
        if name == "if_not_exists" {
            return Ok(match first {
                SetOperand::Path(path) => SetOperand::IfNotExists(path, Box::new(second)),
                _ => {
                    self.problem(
                        Problem::OperandType,
                        "Operator or function requires a document path; operator or function: if_not_exists",
                    );
                    SetOperand::Value(AttributeValue::Null)
                }
            });
        }
        for operand in [&first, &second] {
            if let SetOperand::Value(value) = operand
                && !matches!(value, AttributeValue::L(_))
            {
                let type_name = value.type_tag();
                self.problem(
                    Problem::OperandType,
                    format!(
                        "Incorrect operand type for operator or function; operator or function: list_append, operand type: {type_name}"
                    ),
                );
            }
        }
        Ok(SetOperand::ListAppend(Box::new(first), Box::new(second)))
    }

    fn parse_add_or_delete(&mut self, section: &str) -> PResult<UpdateAction> {
        let path = self.parse_path()?;
        let TokenKind::ValuePlaceholder(placeholder) = self.peek().clone() else {
            return Err(self.syntax_error());
        };
        self.advance();
        // An undefined placeholder is already a problem with a better message.
        let value = self
            .lookup_value(&placeholder)
            .unwrap_or(AttributeValue::Ss(Vec::new()));
        let allowed = match &value {
            AttributeValue::Ss(_) | AttributeValue::Ns(_) | AttributeValue::Bs(_) => true,
            AttributeValue::N(_) => section == "ADD",
            _ => false,
        };
        if !allowed {
            self.problem(
                Problem::OperandType,
                format!(
                    "Incorrect operand type for operator or function; operator: {section}, operand type: {}",
                    long_type_name(&value)
                ),
            );
        }
        Ok(if section == "ADD" {
            UpdateAction::Add(path, value)
        } else {
            UpdateAction::Delete(path, value)
        })
    }

    /// Two paths of one update or projection may not overlap (`a` and `a.b`) or disagree on
    /// whether a step is a map key or a list index.
    fn check_overlaps<'p>(&mut self, paths: impl Iterator<Item = &'p Path>) {
        let paths: Vec<&Path> = paths.collect();
        for (i, first) in paths.iter().enumerate() {
            for second in &paths[i + 1..] {
                if let Some(message) = overlap(first, second) {
                    self.problem(Problem::PathOverlap, message);
                    return;
                }
            }
        }
    }
}

enum FunctionOutcome {
    Condition(Condition),
    Operand(Operand),
}

/// A placeholder node for a function that was already reported as a problem; it is never
/// evaluated because the parse fails.
fn dummy_condition() -> Condition {
    Condition::AttributeExists(Path::attribute(""))
}

fn overlap(first: &Path, second: &Path) -> Option<String> {
    for (a, b) in first.0.iter().zip(&second.0) {
        match (a, b) {
            (PathElement::Attribute(x), PathElement::Attribute(y)) if x == y => {}
            (PathElement::Index(x), PathElement::Index(y)) if x == y => {}
            (PathElement::Attribute(_), PathElement::Attribute(_))
            | (PathElement::Index(_), PathElement::Index(_)) => return None,
            _ => {
                return Some(format!(
                    "Two document paths conflict with each other; must remove or rewrite one of these paths; path one: {first}, path two: {second}"
                ));
            }
        }
    }
    Some(format!(
        "Two document paths overlap with each other; must remove or rewrite one of these paths; path one: {first}, path two: {second}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamodb::number::Number;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn placeholders() -> Placeholders {
        let names = BTreeMap::from([("#s".to_owned(), "status".to_owned())]);
        let values = BTreeMap::from([
            (":one".to_owned(), AttributeValue::N(Number::from(1))),
            (":s".to_owned(), AttributeValue::S("x".into())),
            (":l".to_owned(), AttributeValue::L(vec![])),
            (":ss".to_owned(), AttributeValue::Ss(vec!["a".into()])),
        ]);
        Placeholders::new(Some(names), Some(values))
    }

    fn condition(source: &str) -> Result<Condition, String> {
        parse_condition(source, &mut placeholders()).map_err(|e| e.0)
    }

    fn update(source: &str) -> Result<Update, String> {
        parse_update(source, &mut placeholders()).map_err(|e| e.0)
    }

    #[test]
    fn and_binds_tighter_than_or_and_not_tighter_than_and() {
        let parsed = condition("a = :one OR NOT b = :one AND c = :one").unwrap();
        let Condition::Or(_, right) = parsed else {
            panic!("expected OR at the top: {parsed:?}")
        };
        let Condition::And(left, _) = *right else {
            panic!("expected AND under OR")
        };
        assert!(matches!(*left, Condition::Not(_)));
    }

    #[test]
    fn keywords_are_case_insensitive_and_functions_parse() {
        condition("attribute_exists(a) and begins_with(b, :s) or not contains(c, :s)").unwrap();
        condition("size(a.b[2]) > :one AND a BETWEEN :one AND :one AND b IN (:s, :s)").unwrap();
        condition("attribute_type(#s, :s)").unwrap_err();
    }

    #[test]
    fn nested_paths_resolve_placeholders() {
        let Condition::AttributeExists(path) = condition("attribute_exists(a.#s[3].c)").unwrap()
        else {
            panic!("expected attribute_exists")
        };
        assert_eq!(path.to_string(), "[a, status, [3], c]");
    }

    #[test]
    fn reserved_words_must_use_placeholders() {
        assert_eq!(
            condition("status = :s").unwrap_err(),
            "Attribute name is a reserved keyword; reserved keyword: status"
        );
        condition("#s = :s").unwrap();
    }

    #[test]
    fn syntax_errors_quote_the_token_and_its_neighbourhood() {
        assert_eq!(
            update("SET a = ").unwrap_err(),
            "Syntax error; token: \"<EOF>\", near: \"= \""
        );
        assert_eq!(
            condition("a = = :s").unwrap_err(),
            "Syntax error; token: \"=\", near: \"= = :s\""
        );
        assert!(
            condition("")
                .unwrap_err()
                .starts_with("Syntax error; token: \"<EOF>\"")
        );
    }

    #[test]
    fn undefined_placeholders_are_named() {
        assert_eq!(
            condition("a = :y").unwrap_err(),
            "An expression attribute value used in expression is not defined; attribute value: :y"
        );
        assert_eq!(
            condition("#zz = :s").unwrap_err(),
            "An expression attribute name used in the document path is not defined; attribute name: #zz"
        );
    }

    #[test]
    fn misused_functions_and_parentheses_are_reported() {
        assert!(condition("size(a)").unwrap_err().contains("function: size"));
        assert!(
            condition("attribute_exists(a) = :s")
                .unwrap_err()
                .contains("function: attribute_exists")
        );
        assert_eq!(
            condition("((a = :s))").unwrap_err(),
            "The expression has redundant parentheses;"
        );
        condition("(a = :s) AND (b = :s)").unwrap();
        assert!(
            condition("foo(a)")
                .unwrap_err()
                .contains("Invalid function name; function: foo")
        );
        assert!(
            condition("attribute_exists(:s)")
                .unwrap_err()
                .contains("requires a document path")
        );
        assert!(
            condition("begins_with(a, :one)")
                .unwrap_err()
                .contains("operand type: N")
        );
        assert!(condition("a = a").unwrap_err().contains("must be distinct"));
    }

    #[test]
    fn update_sections_parse_in_any_order() {
        let parsed =
            update("remove x add n :one set a = a + :one, b = if_not_exists(b, :l) delete s :ss")
                .unwrap();
        assert_eq!(parsed.actions.len(), 5);
        assert!(matches!(
            parsed.actions[2],
            UpdateAction::Set(_, SetValue::Plus(..))
        ));
        update("SET l = list_append(l, :l)").unwrap();
    }

    #[test]
    fn update_rejects_repeated_sections_overlaps_and_bad_operands() {
        assert_eq!(
            update("SET a = :one SET b = :one").unwrap_err(),
            "The \"SET\" section can only be used once in an update expression;"
        );
        assert_eq!(
            update("SET a = :one REMOVE a").unwrap_err(),
            "Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [a], path two: [a]"
        );
        assert!(
            update("SET a.b = :one REMOVE a[0]")
                .unwrap_err()
                .contains("conflict")
        );
        assert_eq!(
            update("ADD a :s").unwrap_err(),
            "Incorrect operand type for operator or function; operator: ADD, operand type: STRING"
        );
        assert!(
            update("DELETE a :one")
                .unwrap_err()
                .contains("operator: DELETE, operand type: NUMBER")
        );
        assert!(
            update("SET a = :s + :one")
                .unwrap_err()
                .contains("operator or function: +")
        );
        assert!(
            update("SET a = list_append(:one, a)")
                .unwrap_err()
                .contains("list_append")
        );
        assert!(
            update("SET a = nope(b)")
                .unwrap_err()
                .contains("Invalid function name")
        );
        assert!(
            update("SET a = :one,")
                .unwrap_err()
                .starts_with("Syntax error")
        );
        assert!(update("a = :one").unwrap_err().starts_with("Syntax error"));
    }

    #[test]
    fn projection_lists_paths() {
        let paths = parse_projection("a, b.c, #s[1]", &mut placeholders()).unwrap();
        assert_eq!(paths.len(), 3);
        assert!(
            parse_projection("a, a.b", &mut placeholders())
                .unwrap_err()
                .0
                .contains("overlap")
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let source = format!("{}a = :s{}", "(".repeat(3000), ")".repeat(3000));
        assert!(condition(&source).is_err());
        let source = format!("{}a = :s", "NOT ".repeat(3000));
        assert!(condition(&source).is_err());
        let source = format!(
            "SET a = {}b{}",
            "if_not_exists(b, ".repeat(3000),
            ")".repeat(3000)
        );
        assert!(update(&source).is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(source in "\\PC{0,80}") {
            let _ = parse_condition(&source, &mut placeholders());
            let _ = parse_update(&source, &mut placeholders());
            let _ = parse_projection(&source, &mut placeholders());
        }

        #[test]
        fn parsers_never_panic_on_expression_like_input(
            tokens in proptest::collection::vec(
                prop_oneof![
                    Just("a"), Just("#s"), Just(":one"), Just(":s"), Just("("), Just(")"), Just("["),
                    Just("]"), Just("1"), Just(","), Just("."), Just("="), Just("<>"), Just("<"),
                    Just(">="), Just("+"), Just("-"), Just("AND"), Just("OR"), Just("NOT"),
                    Just("BETWEEN"), Just("IN"), Just("SET"), Just("REMOVE"), Just("ADD"),
                    Just("DELETE"), Just("size"), Just("attribute_exists"), Just("if_not_exists"),
                    Just("list_append"), Just("begins_with"),
                ],
                0..30,
            )
        ) {
            let source = tokens.join(" ");
            let _ = parse_condition(&source, &mut placeholders());
            let _ = parse_update(&source, &mut placeholders());
            let _ = parse_projection(&source, &mut placeholders());
        }
    }
}
