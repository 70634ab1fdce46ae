//! Checks of the identifiers every service takes from clients (order numbers, user ids,
//! request ids, payment references): the same rule and the same words everywhere.

/// A non-empty identifier of at most `max` characters, without spaces or control characters;
/// otherwise a sentence saying what is wrong with `field`.
pub fn identifier(field: &str, value: &str, max: usize) -> Result<String, String> {
    if value.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if value.chars().count() > max {
        return Err(format!("{field} is longer than {max} characters"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{field} must not contain spaces or control characters"
        ));
    }
    Ok(value.to_owned())
}

/// A person's text (a title, a venue, a reason) of at most `max` characters, trimmed: no
/// control characters but line breaks and tabs (Postgres takes no NUL in text). Empty when
/// `required` is false and nothing was given.
pub fn text(field: &str, value: &str, max: usize, required: bool) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() && required {
        return Err(format!("{field} must not be empty"));
    }
    if value.chars().count() > max {
        return Err(format!("{field} is longer than {max} characters"));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::{identifier, text};

    #[test]
    fn texts_are_trimmed_and_without_control_characters() {
        assert_eq!(text("title", " Gala ", 10, true), Ok("Gala".to_owned()));
        assert_eq!(text("reason", "", 10, false), Ok(String::new()));
        assert!(text("title", " ", 10, true).is_err_and(|e| e.contains("empty")));
        assert!(text("title", "Ga\0la", 10, true).is_err_and(|e| e.contains("control")));
        assert!(text("title", "Gala Night", 5, true).is_err_and(|e| e.contains("5")));
        assert_eq!(text("reason", "a\nb", 10, false), Ok("a\nb".to_owned()));
    }

    #[test]
    fn identifiers_are_short_words() {
        assert_eq!(identifier("order_no", "T1", 64), Ok("T1".to_owned()));
        assert!(identifier("order_no", "", 64).is_err_and(|e| e.contains("empty")));
        assert!(identifier("order_no", "a b", 64).is_err_and(|e| e.contains("spaces")));
        assert!(identifier("order_no", &"x".repeat(65), 64).is_err_and(|e| e.contains("64")));
    }
}
