//! Join tokens in k3s's format: `K10<sha256 of the CA certificate PEM, hex>::<user>:<secret>`. The hash
//! lets a joining node check the CA it fetched without trusting it first; a short token (the secret
//! alone) still works but cannot do that check. A bootstrap token (`tug token create`) takes the place of
//! `<user>:<secret>`: `K10<hash>::<id>.<secret>`.

use std::path::Path;

use sha2::{Digest, Sha256};

const PREFIX: &str = "K10";
/// The user of server tokens, which agents and servers both join with.
pub const SERVER_USER: &str = "server";
/// The user of bootstrap tokens (`K10<hash>::<id>.<secret>`), which only agents join with.
pub const NODE_USER: &str = "node";

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The CA hash (lowercase hex); None for a short token.
    pub ca_hash: Option<String>,
    pub user: String,
    pub secret: String,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is empty")]
    Empty,
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
}

/// The lowercase hex sha256 of `ca_pem`, as a token carries it.
pub fn ca_hash(ca_pem: &[u8]) -> String {
    hex(&Sha256::digest(ca_pem))
}

impl Token {
    /// A full server token for the CA `ca_pem` and `secret`.
    pub fn for_ca(ca_pem: &str, secret: &str) -> Token {
        Token { ca_hash: Some(ca_hash(ca_pem.as_bytes())), user: SERVER_USER.into(), secret: secret.into() }
    }

    /// A full bootstrap token for the CA `ca_pem`.
    pub fn for_bootstrap(ca_pem: &str, token: &super::bootstrap::BootstrapToken) -> Token {
        Token { ca_hash: Some(ca_hash(ca_pem.as_bytes())), user: NODE_USER.into(), secret: token.to_string() }
    }

    /// Parses a full (`K10…::user:secret`) or short (secret only) token.
    pub fn parse(text: &str) -> Result<Token, TokenError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TokenError::Empty);
        }
        let Some(rest) = text.strip_prefix(PREFIX).filter(|_| text.contains("::")) else {
            return Ok(Token { ca_hash: None, user: SERVER_USER.into(), secret: text.into() });
        };
        let (hash, credentials) = rest.split_once("::").ok_or(TokenError::Malformed("no '::' after the CA hash"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Malformed("the CA hash after K10 is not 64 hex digits"));
        }
        if super::bootstrap::BootstrapToken::parse(credentials).is_some() {
            return Ok(Token {
                ca_hash: Some(hash.to_ascii_lowercase()),
                user: NODE_USER.into(),
                secret: credentials.into(),
            });
        }
        let (user, secret) =
            credentials.split_once(':').ok_or(TokenError::Malformed("no ':' between user and secret"))?;
        if user.is_empty() || secret.is_empty() {
            return Err(TokenError::Malformed("the user or the secret is empty"));
        }
        Ok(Token { ca_hash: Some(hash.to_ascii_lowercase()), user: user.into(), secret: secret.into() })
    }

    /// Reads a token from a file (`--token-file`), ignoring surrounding whitespace.
    pub fn read(path: &Path) -> Result<Token, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Token::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bootstrap = self.user == NODE_USER && super::bootstrap::BootstrapToken::parse(&self.secret).is_some();
        match &self.ca_hash {
            Some(hash) if bootstrap => write!(f, "{PREFIX}{hash}::{}", self.secret),
            Some(hash) => write!(f, "{PREFIX}{hash}::{}:{}", self.user, self.secret),
            None => f.write_str(&self.secret),
        }
    }
}

/// A new random secret: 32 hex digits from the OS's random source.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source");
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_token_round_trips_and_carries_the_ca_hash() {
        let token = Token::for_ca("-----BEGIN CERTIFICATE-----\n", "s3cret");
        let text = token.to_string();
        assert!(text.starts_with("K10") && text.ends_with("::server:s3cret"), "{text}");
        assert_eq!(Token::parse(&format!(" {text}\n")), Ok(token));
    }

    #[test]
    fn a_bootstrap_token_is_the_nodes() {
        let text = format!("K10{}::abcdef.0123456789abcdef", "a".repeat(64));
        let token = Token::parse(&text).unwrap();
        assert_eq!((token.user.as_str(), token.secret.as_str()), ("node", "abcdef.0123456789abcdef"));
        assert_eq!(token.to_string(), text);
    }

    #[test]
    fn a_short_token_is_the_secret_alone() {
        let token = Token::parse("abc:def").unwrap();
        assert_eq!((token.ca_hash, token.secret.as_str()), (None, "abc:def"));
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        assert_eq!(Token::parse("  "), Err(TokenError::Empty));
        assert!(matches!(Token::parse("K10abc::server:x"), Err(TokenError::Malformed(m)) if m.contains("64 hex")));
        let hash = "a".repeat(64);
        assert!(Token::parse(&format!("K10{hash}::server")).is_err());
        assert!(Token::parse(&format!("K10{hash}::server:")).is_err());
    }

    #[test]
    fn random_secrets_differ() {
        assert_ne!(random_secret(), random_secret());
        assert_eq!(random_secret().len(), 32);
    }
}
