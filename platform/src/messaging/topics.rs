//! Topic and group names. Every name gets the deployment's namespace prefix, so several
//! deployments (or tests) share one broker without seeing each other's messages.

use super::MessagingError;

/// The topics of the purchase saga (DESIGN.md, "Messages"), before the namespace prefix.
pub mod topic {
    pub const ORDER: &str = "ORDER_TOPIC";
    pub const STOCK: &str = "STOCK_TOPIC";
    pub const ORDER_CMD: &str = "ORDER_CMD_TOPIC";
    pub const NOTIFICATION: &str = "NOTIFICATION_TOPIC";
    pub const SAGA_REPLY: &str = "SAGA_REPLY_TOPIC";
    pub const DEAD_LETTER: &str = "DEAD_LETTER_TOPIC";
}

/// The tags of each topic. A reply on `SAGA_REPLY_TOPIC` is tagged with its command's step.
pub mod tag {
    pub const ORDER_CREATED: &str = "ORDER_CREATED";
    pub const ORDER_PAID: &str = "ORDER_PAID";
    pub const ORDER_CANCELLED: &str = "ORDER_CANCELLED";
    pub const STOCK_DEDUCT: &str = "STOCK_DEDUCT";
    pub const STOCK_CONFIRM: &str = "STOCK_CONFIRM";
    pub const STOCK_ROLLBACK: &str = "STOCK_ROLLBACK";
    pub const STOCK_SYNC: &str = "STOCK_SYNC";
    pub const ORDER_RESERVE: &str = "ORDER_RESERVE";
    pub const ORDER_CONFIRM: &str = "ORDER_CONFIRM";
    pub const ORDER_CANCEL: &str = "ORDER_CANCEL";
    pub const SMS: &str = "SMS";
    pub const EMAIL: &str = "EMAIL";
    pub const PUSH: &str = "PUSH";
    /// `NOTIFICATION_TOPIC`: one notification on several channels.
    pub const NOTIFY: &str = "NOTIFY";
    /// `DEAD_LETTER_TOPIC`: a message a handler rejected.
    pub const REJECTED: &str = "REJECTED";
}

/// The broker's prefix of the dead-letter topic of a consumer group.
pub const DLQ_PREFIX: &str = "%DLQ%";
/// The prefix of a consumer group's retry topic, where the broker redelivers from.
pub const RETRY_PREFIX: &str = "%RETRY%";

/// A validated namespace prefix (letters, digits, `_` and `-`; may be empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespace(String);

impl Namespace {
    pub fn new(prefix: &str) -> Result<Self, MessagingError> {
        if prefix.len() > 64 {
            return Err(MessagingError::Invalid(format!(
                "namespace {prefix:?} is longer than 64 characters"
            )));
        }
        if let Some(bad) = prefix
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(MessagingError::Invalid(format!(
                "namespace {prefix:?} contains {bad:?}; use letters, digits, '_' and '-'"
            )));
        }
        Ok(Self(prefix.to_owned()))
    }

    pub fn prefix(&self) -> &str {
        &self.0
    }

    /// The broker's name of a topic or consumer group. A dead-letter topic, `%DLQ%<group>`,
    /// names a logical group: the prefix goes in front of the group.
    pub fn qualify(&self, name: &str) -> String {
        match name.strip_prefix(DLQ_PREFIX) {
            Some(group) => format!("{DLQ_PREFIX}{}{group}", self.0),
            None => format!("{}{name}", self.0),
        }
    }

    /// The logical name of a broker topic of this namespace: a group's dead-letter and retry
    /// topics (`%DLQ%<group>`, `%RETRY%<group>`) name the logical group.
    pub fn strip(&self, qualified: &str) -> String {
        for system in [DLQ_PREFIX, RETRY_PREFIX] {
            if let Some(group) = qualified.strip_prefix(system) {
                return format!(
                    "{system}{}",
                    group.strip_prefix(self.0.as_str()).unwrap_or(group)
                );
            }
        }
        qualified
            .strip_prefix(self.0.as_str())
            .unwrap_or(qualified)
            .to_owned()
    }
}

/// The broker's tag expression for a set of tags: `A||B`, never with spaces (a tag expression
/// with spaces makes the broker skip every message while the group's offsets still advance).
pub fn tag_expression(tags: &[&str]) -> Result<String, MessagingError> {
    if tags.is_empty() {
        return Err(MessagingError::Invalid(
            "a subscription needs at least one tag (or \"*\")".into(),
        ));
    }
    for tag in tags {
        if tag.is_empty() || tag.chars().any(|c| c.is_whitespace() || c == '|') {
            return Err(MessagingError::Invalid(format!(
                "tag {tag:?} must be non-empty, without spaces or '|'"
            )));
        }
    }
    if tags.len() > 1 && tags.contains(&"*") {
        return Err(MessagingError::Invalid(
            "\"*\" cannot be combined with other tags".into(),
        ));
    }
    Ok(tags.join("||"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_expressions_never_contain_spaces() {
        assert_eq!(
            tag_expression(&["STOCK_DEDUCT", "STOCK_CONFIRM"]).expect("valid"),
            "STOCK_DEDUCT||STOCK_CONFIRM"
        );
        assert_eq!(tag_expression(&["*"]).expect("valid"), "*");
        assert!(tag_expression(&["A B"]).is_err());
        assert!(tag_expression(&["A||B"]).is_err());
        assert!(tag_expression(&[]).is_err());
        assert!(tag_expression(&["*", "A"]).is_err());
    }

    #[test]
    fn namespaces_prefix_topics_and_groups() {
        let ns = Namespace::new("t42_").expect("valid");
        assert_eq!(ns.qualify(topic::ORDER), "t42_ORDER_TOPIC");
        assert_eq!(ns.qualify("%DLQ%orchestrator"), "%DLQ%t42_orchestrator");
        assert_eq!(ns.strip("t42_ORDER_TOPIC"), "ORDER_TOPIC");
        assert_eq!(ns.strip("%DLQ%t42_orchestrator"), "%DLQ%orchestrator");
        assert!(Namespace::new("bad space").is_err());
        assert!(Namespace::new("a%b").is_err());
    }
}
