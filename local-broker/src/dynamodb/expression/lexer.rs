//! Splits an expression into tokens, remembering where each came from so syntax errors can quote
//! the offending token and its neighbourhood as AWS does.

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// A bare word: an attribute name, a keyword (`AND`, `SET`, ...) or a function name.
    Word(String),
    /// `#name`, an `ExpressionAttributeNames` placeholder.
    NamePlaceholder(String),
    /// `:value`, an `ExpressionAttributeValues` placeholder.
    ValuePlaceholder(String),
    /// A run of digits (list indexes).
    Integer(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    /// A character no token starts with; the parser reports it as a syntax error.
    Unknown(char),
    Eof,
}

/// One token and its byte span in the source.
#[derive(Debug, Clone)]
pub struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Tokenizes the whole source; always ends with [`TokenKind::Eof`].
pub fn tokenize(source: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = source.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        chars.next();
        let simple = match c {
            '(' => Some(TokenKind::LParen),
            ')' => Some(TokenKind::RParen),
            '[' => Some(TokenKind::LBracket),
            ']' => Some(TokenKind::RBracket),
            ',' => Some(TokenKind::Comma),
            '.' => Some(TokenKind::Dot),
            '=' => Some(TokenKind::Eq),
            '+' => Some(TokenKind::Plus),
            '-' => Some(TokenKind::Minus),
            _ => None,
        };
        let kind = if let Some(kind) = simple {
            kind
        } else {
            match c {
                '<' => match chars.peek() {
                    Some(&(_, '>')) => {
                        chars.next();
                        TokenKind::Ne
                    }
                    Some(&(_, '=')) => {
                        chars.next();
                        TokenKind::Le
                    }
                    _ => TokenKind::Lt,
                },
                '>' => match chars.peek() {
                    Some(&(_, '=')) => {
                        chars.next();
                        TokenKind::Ge
                    }
                    _ => TokenKind::Gt,
                },
                '#' | ':' => {
                    let mut name = String::from(c);
                    while let Some(&(_, next)) = chars.peek().filter(|(_, n)| is_word_char(*n)) {
                        name.push(next);
                        chars.next();
                    }
                    if name.len() == 1 {
                        TokenKind::Unknown(c)
                    } else if c == '#' {
                        TokenKind::NamePlaceholder(name)
                    } else {
                        TokenKind::ValuePlaceholder(name)
                    }
                }
                c if c.is_ascii_digit() => {
                    let mut digits = String::from(c);
                    while let Some(&(_, next)) = chars.peek().filter(|(_, n)| n.is_ascii_digit()) {
                        digits.push(next);
                        chars.next();
                    }
                    // `1abc` is not a name; let the parser see a bad word rather than two tokens.
                    if chars.peek().is_some_and(|(_, n)| is_word_char(*n)) {
                        while let Some(&(_, next)) = chars.peek().filter(|(_, n)| is_word_char(*n))
                        {
                            digits.push(next);
                            chars.next();
                        }
                        TokenKind::Unknown(c)
                    } else {
                        TokenKind::Integer(digits)
                    }
                }
                c if is_word_char(c) => {
                    let mut word = String::from(c);
                    while let Some(&(_, next)) = chars.peek().filter(|(_, n)| is_word_char(*n)) {
                        word.push(next);
                        chars.next();
                    }
                    TokenKind::Word(word)
                }
                other => TokenKind::Unknown(other),
            }
        };
        let end = chars.peek().map_or(source.len(), |&(i, _)| i);
        tokens.push(Token { kind, start, end });
    }
    tokens.push(Token {
        kind: TokenKind::Eof,
        start: source.len(),
        end: source.len(),
    });
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<TokenKind> {
        tokenize(source).into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn recognises_placeholders_operators_and_paths() {
        assert_eq!(
            kinds("#n.a[10] <> :v"),
            vec![
                TokenKind::NamePlaceholder("#n".into()),
                TokenKind::Dot,
                TokenKind::Word("a".into()),
                TokenKind::LBracket,
                TokenKind::Integer("10".into()),
                TokenKind::RBracket,
                TokenKind::Ne,
                TokenKind::ValuePlaceholder(":v".into()),
                TokenKind::Eof,
            ]
        );
        assert_eq!(
            kinds("a<=b>=c<d>e"),
            vec![
                TokenKind::Word("a".into()),
                TokenKind::Le,
                TokenKind::Word("b".into()),
                TokenKind::Ge,
                TokenKind::Word("c".into()),
                TokenKind::Lt,
                TokenKind::Word("d".into()),
                TokenKind::Gt,
                TokenKind::Word("e".into()),
                TokenKind::Eof,
            ]
        );
    }

    #[test]
    fn spans_cover_multibyte_characters() {
        let tokens = tokenize("é = :v");
        assert_eq!(tokens[0].kind, TokenKind::Unknown('é'));
        assert_eq!((tokens[0].start, tokens[0].end), (0, 2));
    }
}
