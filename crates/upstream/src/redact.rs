//! The secret values in force, so that text from outside (a tool server's stderr, its
//! error messages) can be scrubbed of them before it is logged or shown to an operator.
//!
//! The gateway remembers every secret it resolves (client tokens, route credentials,
//! secret arguments and environment values); a child that prints its API key on a
//! failed login then has it replaced by `<redacted>` in the log, `/health` and the
//! status page. Clients never see a tool server's stderr at all.

use std::borrow::Cow;
use std::sync::{PoisonError, RwLock};

static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Values shorter than this are not scrubbed: they would match ordinary text.
const SHORTEST: usize = 4;

/// Remembers a secret value, to be scrubbed from text from now on.
pub fn remember(secret: &str) {
    if secret.len() < SHORTEST {
        return;
    }
    let mut known = KNOWN.write().unwrap_or_else(PoisonError::into_inner);
    if !known.iter().any(|k| k == secret) {
        known.push(secret.to_owned());
        // The longest first: a secret that contains another is replaced whole.
        known.sort_by_key(|k| std::cmp::Reverse(k.len()));
    }
}

/// `text` with every remembered secret replaced by `<redacted>`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let known = KNOWN.read().unwrap_or_else(PoisonError::into_inner);
    let mut out = Cow::Borrowed(text);
    for secret in known.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), "<redacted>"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_secrets_are_scrubbed_and_other_text_is_left_alone() {
        remember("sk-live-9f8e7d6c5b4a");
        remember("sk-live-9f8e7d6c5b4a-extended");
        remember("abc");
        assert_eq!(
            redact("login failed for key sk-live-9f8e7d6c5b4a-extended, then sk-live-9f8e7d6c5b4a"),
            "login failed for key <redacted>, then <redacted>"
        );
        assert!(matches!(redact("nothing here: abc"), Cow::Borrowed(_)));
    }
}
