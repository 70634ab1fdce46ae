//! A buyer's contact: where notifications reach them. Each part is optional; a part that is
//! given is checked here (an e-mail address must parse, a phone number must be E.164, a push
//! device token must be one word) and never written to a log in full: [`Contact`]'s `Debug`
//! masks every part, and [`mask_email`], [`mask_phone`] and [`mask_token`] are what logs,
//! traces and listings show.

use std::fmt;

/// The longest e-mail address (RFC 5321's path limit less its angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;
/// The longest push device token taken.
pub const MAX_PUSH_TOKEN_LEN: usize = 512;

/// Where a buyer's notifications go; `None` where the buyer gave nothing.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Contact {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub push_token: Option<String>,
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contact")
            .field("email", &self.email.as_deref().map(mask_email))
            .field("phone", &self.phone.as_deref().map(mask_phone))
            .field("push_token", &self.push_token.as_deref().map(mask_token))
            .finish()
    }
}

impl Contact {
    /// The contact a client gave (an empty string is a part not given), each part checked; an
    /// error is a sentence naming the part under `prefix` (`contact.email ...`).
    pub fn parse(
        prefix: &str,
        email_address: &str,
        phone_number: &str,
        push_token: &str,
    ) -> Result<Self, String> {
        let given = |value: &str| (!value.is_empty()).then(|| value.to_owned());
        Ok(Self {
            email: given(email_address)
                .map(|v| email(&v).map_err(|e| format!("{prefix}.email {e}")))
                .transpose()?,
            phone: given(phone_number)
                .map(|v| phone(&v).map_err(|e| format!("{prefix}.phone {e}")))
                .transpose()?,
            push_token: given(push_token)
                .map(|v| token(&v).map_err(|e| format!("{prefix}.push_token {e}")))
                .transpose()?,
        })
    }

    /// No part was given.
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.phone.is_none() && self.push_token.is_none()
    }
}

const ATEXT_SPECIALS: &str = "!#$%&'*+/=?^_`{|}~-";

/// An e-mail address `local@domain`, as mail is addressed in practice: the local part a
/// dot-atom (letters, digits, `!#$%&'*+/=?^_`{|}~-` and single inner dots, at most 64
/// characters), the domain a host name of at least two labels (letters, digits and inner
/// hyphens, at most 63 each) whose last label is not all digits. Otherwise says what is wrong.
pub fn email(value: &str) -> Result<String, String> {
    if value.len() > MAX_EMAIL_LEN {
        return Err(format!("is longer than {MAX_EMAIL_LEN} characters"));
    }
    let Some((local, domain)) = value.rsplit_once('@') else {
        return Err("is not an e-mail address: it has no @".into());
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || ATEXT_SPECIALS.contains(c);
    if local.is_empty()
        || local.len() > 64
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || !local.chars().all(|c| c == '.' || atext(c))
    {
        return Err(
            "is not an e-mail address: the part before @ must be 1 to 64 letters, digits or \
             !#$%&'*+/=?^_`{|}~- with single dots between them"
                .into(),
        );
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let top_ok = labels
        .last()
        .is_some_and(|top| !top.chars().all(|c| c.is_ascii_digit()));
    if labels.len() < 2 || !labels.iter().all(label_ok) || !top_ok {
        return Err(format!(
            "is not an e-mail address: {domain:?} is not a domain name like example.com"
        ));
    }
    Ok(value.to_owned())
}

/// A phone number in E.164: `+`, a country code and number of 7 to 15 digits in all, the first
/// not 0, nothing else (no spaces or dashes). Otherwise says what is wrong.
pub fn phone(value: &str) -> Result<String, String> {
    let digits = value.strip_prefix('+').unwrap_or_default();
    if !value.starts_with('+')
        || !(7..=15).contains(&digits.len())
        || digits.starts_with('0')
        || !digits.chars().all(|c| c.is_ascii_digit())
    {
        return Err(
            "is not an E.164 phone number: + then 7 to 15 digits, the first not 0, no spaces \
             (like +14155550123)"
                .into(),
        );
    }
    Ok(value.to_owned())
}

/// A push device token: one word of visible ASCII, at most [`MAX_PUSH_TOKEN_LEN`] characters.
pub fn token(value: &str) -> Result<String, String> {
    if value.len() > MAX_PUSH_TOKEN_LEN {
        return Err(format!("is longer than {MAX_PUSH_TOKEN_LEN} characters"));
    }
    if !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err("must be one word of visible ASCII characters".into());
    }
    Ok(value.to_owned())
}

/// `a***@example.com`: the first character of the local part and the domain.
pub fn mask_email(value: &str) -> String {
    match value.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// `+41*******23`: the first two digits and the last two.
pub fn mask_phone(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= 5 {
        return "***".into();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 5))
}

/// `abcd…(152)`: the first four characters and the length.
pub fn mask_token(value: &str) -> String {
    let head: String = value.chars().take(4).collect();
    format!("{head}…({})", value.chars().count())
}

/// `text` (a provider's error, say) with every form of `address` in it replaced by `masked`:
/// in any ASCII case, and a phone number also without its `+`.
pub fn mask_in(text: &str, address: &str, masked: &str) -> String {
    let mut text = text.to_owned();
    for form in [address, address.trim_start_matches('+')] {
        if form.len() >= 3 {
            text = replace_ignoring_case(&text, form, masked);
        }
    }
    text
}

/// `text` with every `form` in it, in any ASCII case, replaced by `with`. (ASCII lower-casing
/// keeps every byte where it was, so the positions found in the lower-cased text are those of
/// `text`.)
fn replace_ignoring_case(text: &str, form: &str, with: &str) -> String {
    let haystack = text.to_ascii_lowercase();
    let needle = form.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, _) in haystack.match_indices(&needle) {
        out.push_str(&text[last..at]);
        out.push_str(with);
        last = at + needle.len();
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e_mail_addresses_as_mail_is_addressed() {
        for good in [
            "alice@example.com",
            "a.b+tickets@mail.example.co.uk",
            "o'brien@example.ie",
            "x@xn--bcher-kva.example",
        ] {
            assert_eq!(email(good), Ok(good.to_owned()), "{good}");
        }
        for bad in [
            "alice",
            "@example.com",
            "alice@",
            "alice@localhost",
            "alice@example..com",
            "alice@-example.com",
            "alice@example.123",
            ".alice@example.com",
            "al..ice@example.com",
            "al ice@example.com",
            "alice@exa mple.com",
            "a\"b@example.com",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
        assert!(email(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(email(&format!("a@{}.com", "b".repeat(250))).is_err_and(|e| e.contains("254")));
    }

    #[test]
    fn phone_numbers_are_e164() {
        assert_eq!(phone("+14155550123"), Ok("+14155550123".to_owned()));
        assert_eq!(phone("+4915112345678"), Ok("+4915112345678".to_owned()));
        for bad in [
            "14155550123",
            "+0415555012",
            "+1 415 555 0123",
            "+1-415-555-0123",
            "+123456",
            "+1234567890123456",
            "+",
            "",
        ] {
            assert!(phone(bad).is_err_and(|e| e.contains("E.164")), "{bad}");
        }
    }

    #[test]
    fn a_contact_names_the_part_that_is_wrong() {
        let contact =
            Contact::parse("contact", "a@example.com", "", "tok-1").expect("a good contact");
        assert_eq!(contact.email.as_deref(), Some("a@example.com"));
        assert_eq!(contact.phone, None);
        assert_eq!(contact.push_token.as_deref(), Some("tok-1"));
        assert!(
            Contact::parse("contact", "", "", "")
                .expect("none")
                .is_empty()
        );
        assert!(
            Contact::parse("contact", "nope", "", "")
                .is_err_and(|e| e.starts_with("contact.email is not an e-mail address"))
        );
        assert!(
            Contact::parse("contact", "", "555-0123", "")
                .is_err_and(|e| e.starts_with("contact.phone is not an E.164"))
        );
        assert!(
            Contact::parse("contact", "", "", "two words")
                .is_err_and(|e| e.starts_with("contact.push_token must be one word"))
        );
    }

    #[test]
    fn a_contact_is_never_printed_in_full() {
        let contact = Contact {
            email: Some("alice@example.com".into()),
            phone: Some("+4915112345678".into()),
            push_token: Some("abcdefghijklmnop".into()),
        };
        let printed = format!("{contact:?}");
        assert_eq!(
            printed,
            r#"Contact { email: Some("a***@example.com"), phone: Some("+49*********78"), push_token: Some("abcd…(16)") }"#
        );
        assert!(
            !printed.contains("alice") && !printed.contains("12345") && !printed.contains("efgh")
        );
    }
}
