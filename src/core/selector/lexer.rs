//! Tokenizer for label selector strings, with upstream's token rules: the
//! symbols `( ) , ! = == != > <` (longest match), the keywords `in` and
//! `notin`, whitespace (space, tab, CR, LF) as separator, and everything else
//! as identifier bytes. As upstream, a NUL byte ends the current token and, at
//! a token start, the input.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token {
    /// A symbol sequence that is not a token (unreachable with the current
    /// symbol set, kept for parity with upstream).
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn symbol_token(s: &[u8]) -> Option<Token> {
    Some(match s {
        b")" => Token::ClosedPar,
        b"," => Token::Comma,
        b"!" => Token::DoesNotExist,
        b"==" => Token::DoubleEquals,
        b"=" => Token::Equals,
        b">" => Token::GreaterThan,
        b"<" => Token::LessThan,
        b"!=" => Token::NotEquals,
        b"(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    /// The next byte, or 0 at the end (a NUL byte reads the same way).
    fn read(&mut self) -> u8 {
        match self.s.as_bytes().get(self.pos) {
            Some(b) => {
                self.pos += 1;
                *b
            }
            None => 0,
        }
    }

    fn unread(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    fn slice(&self, start: usize, end: usize) -> &'a str {
        // Token boundaries are ASCII bytes or the ends, so this never fails.
        self.s.get(start..end).unwrap_or_default()
    }

    fn identifier_or_keyword(&mut self) -> (Token, String) {
        let start = self.pos;
        let mut end = start;
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if is_special(ch) || is_whitespace(ch) {
                self.unread();
                break;
            }
            end = self.pos;
        }
        let lit = self.slice(start, end);
        let tok = match lit {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Identifier,
        };
        (tok, lit.to_string())
    }

    fn symbol(&mut self) -> (Token, String) {
        let start = self.pos;
        let mut last: Option<(Token, usize)> = None;
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if !is_special(ch) {
                self.unread();
                break;
            }
            let buf = self.s.as_bytes().get(start..self.pos).unwrap_or_default();
            match symbol_token(buf) {
                Some(tok) => last = Some((tok, self.pos)),
                None if last.is_some() => {
                    self.unread();
                    break;
                }
                None => {}
            }
        }
        match last {
            Some((tok, end)) => (tok, self.slice(start, end).to_string()),
            None => {
                let buf = self.slice(start, self.pos);
                (Token::Error, format!("error expected: keyword found '{buf}'"))
            }
        }
    }

    fn lex(&mut self) -> (Token, String) {
        let mut ch = self.read();
        while is_whitespace(ch) {
            ch = self.read();
        }
        if ch == 0 {
            return (Token::EndOfString, String::new());
        }
        self.unread();
        if is_special(ch) {
            self.symbol()
        } else {
            self.identifier_or_keyword()
        }
    }
}

/// All tokens of `s` with their literals, ending with `EndOfString`.
pub(super) fn tokenize(s: &str) -> Vec<(Token, String)> {
    let mut lexer = Lexer { s, pos: 0 };
    let mut out = Vec::new();
    loop {
        let item = lexer.lex();
        let done = item.0 == Token::EndOfString;
        out.push(item);
        if done {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Token::*;
    use super::*;

    fn toks(s: &str) -> Vec<Token> {
        tokenize(s).into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn single_tokens() {
        for (s, t) in [
            ("", EndOfString),
            (",", Comma),
            ("notin", NotIn),
            ("in", In),
            ("=", Equals),
            ("==", DoubleEquals),
            (">", GreaterThan),
            ("<", LessThan),
            ("!", DoesNotExist),
            ("!=", NotEquals),
            ("(", OpenPar),
            (")", ClosedPar),
            ("~", Identifier),
            ("||", Identifier),
        ] {
            let all = tokenize(s);
            assert_eq!(all[0].0, t, "{s}");
            assert_eq!(all[0].1, s, "{s}");
        }
    }

    #[test]
    fn sequences() {
        assert_eq!(toks("key in ( value )"), [Identifier, In, OpenPar, Identifier, ClosedPar, EndOfString]);
        assert_eq!(
            toks("key notin ( value1, value2 )"),
            [Identifier, NotIn, OpenPar, Identifier, Comma, Identifier, ClosedPar, EndOfString]
        );
        assert_eq!(toks("!key"), [DoesNotExist, Identifier, EndOfString]);
        assert_eq!(
            toks("== != (), = notin"),
            [DoubleEquals, NotEquals, OpenPar, ClosedPar, Comma, Equals, NotIn, EndOfString]
        );
        assert_eq!(toks("key>2"), [Identifier, GreaterThan, Identifier, EndOfString]);
        assert_eq!(toks("key<1"), [Identifier, LessThan, Identifier, EndOfString]);
        // Longest match, then a fresh token: "!==" is "!=" then "=".
        assert_eq!(toks("a!==b"), [Identifier, NotEquals, Equals, Identifier, EndOfString]);
        assert_eq!(toks("a>=1"), [Identifier, GreaterThan, Equals, Identifier, EndOfString]);
        assert_eq!(toks(" \t\r\n"), [EndOfString]);
    }

    #[test]
    fn nul_and_unicode() {
        // A NUL right after a token is swallowed with it; at a token start
        // (here after whitespace) it ends the input.
        assert_eq!(toks("a,\0b"), [Identifier, Comma, Identifier, EndOfString]);
        assert_eq!(toks("a, \0b"), [Identifier, Comma, EndOfString]);
        assert_eq!(toks("a\0b"), [Identifier, Identifier, EndOfString]);
        let t = tokenize("ключ=значение");
        assert_eq!(t[0].1, "ключ");
        assert_eq!(t[2].1, "значение");
    }
}
