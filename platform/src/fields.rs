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

#[cfg(test)]
mod tests {
    use super::identifier;

    #[test]
    fn identifiers_are_short_words() {
        assert_eq!(identifier("order_no", "T1", 64), Ok("T1".to_owned()));
        assert!(identifier("order_no", "", 64).is_err_and(|e| e.contains("empty")));
        assert!(identifier("order_no", "a b", 64).is_err_and(|e| e.contains("spaces")));
        assert!(identifier("order_no", &"x".repeat(65), 64).is_err_and(|e| e.contains("64")));
    }
}
