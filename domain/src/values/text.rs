/// `value` trimmed, if it then has 1 to `max` characters.
pub fn bounded_text(value: &str, max: usize) -> Option<String> {
    let trimmed = value.trim();
    let printable = !trimmed
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'));
    (printable && !trimmed.is_empty() && trimmed.chars().count() <= max).then(|| trimmed.to_owned())
}

/// Whether `value` can be an e-mail address: it has an `@` and at most 254 characters.
/// Characters, not bytes, as the API document's `maxLength` counts them: an address with
/// umlauts that the document admits is not refused for its encoding.
pub fn is_email(value: &str) -> bool {
    value.contains('@') && value.chars().count() <= 254
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(bounded_text("  Anna ", 10).as_deref(), Some("Anna"));
        assert_eq!(bounded_text("   ", 10), None);
        assert_eq!(bounded_text("abcdef", 5), None);
        // Control characters (Postgres cannot store NUL in JSON at all) are refused; line
        // breaks and tabs in free text are not.
        assert_eq!(bounded_text("An\u{0}na", 10), None);
        assert_eq!(bounded_text("An\u{19}na", 10), None);
        assert_eq!(
            bounded_text("line\nnext", 10).as_deref(),
            Some("line\nnext")
        );
    }

    #[test]
    fn an_email_needs_an_at_sign() {
        assert!(is_email("a@b.de"));
        assert!(!is_email("ab.de"));
        let umlauts = format!("{}@b.de", "ü".repeat(249));
        assert_eq!((umlauts.chars().count(), umlauts.len()), (254, 503));
        assert!(is_email(&umlauts));
        assert!(!is_email(&format!("ü{umlauts}")));
    }
}
