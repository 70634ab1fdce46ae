//! The notification templates (`notify-svc/templates/`, MiniJinja): per event
//! (`purchase_confirmed`, `order_cancelled`) an e-mail subject, a plain-text and an HTML part,
//! an SMS text and a push text, rendered when a notification is sent from what it is about
//! (the order, its show, session and tier). A value a template names that is not given is an
//! error, never an empty gap in a buyer's message; HTML parts escape every value.

use chrono::{DateTime, Utc};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// Every template's name (`<event>.<part>`) and source.
const SOURCES: &[(&str, &str)] = &[
    (
        "details.email.txt",
        include_str!("../templates/details.email.txt"),
    ),
    (
        "details.email.html",
        include_str!("../templates/details.email.html"),
    ),
    (
        "purchase_confirmed.subject.txt",
        include_str!("../templates/purchase_confirmed.subject.txt"),
    ),
    (
        "purchase_confirmed.email.txt",
        include_str!("../templates/purchase_confirmed.email.txt"),
    ),
    (
        "purchase_confirmed.email.html",
        include_str!("../templates/purchase_confirmed.email.html"),
    ),
    (
        "purchase_confirmed.sms.txt",
        include_str!("../templates/purchase_confirmed.sms.txt"),
    ),
    (
        "purchase_confirmed.push.txt",
        include_str!("../templates/purchase_confirmed.push.txt"),
    ),
    (
        "order_cancelled.subject.txt",
        include_str!("../templates/order_cancelled.subject.txt"),
    ),
    (
        "order_cancelled.email.txt",
        include_str!("../templates/order_cancelled.email.txt"),
    ),
    (
        "order_cancelled.email.html",
        include_str!("../templates/order_cancelled.email.html"),
    ),
    (
        "order_cancelled.sms.txt",
        include_str!("../templates/order_cancelled.sms.txt"),
    ),
    (
        "order_cancelled.push.txt",
        include_str!("../templates/order_cancelled.push.txt"),
    ),
];

/// What a notification is about: the values its templates may use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub order_no: String,
    pub show: String,
    pub venue: String,
    /// The session's start, in words (`Sat 12 Dec 2026, 19:30 UTC`).
    pub session_time: String,
    pub tier: String,
    pub quantity: i32,
    /// The order's total (`240.00`).
    pub amount: String,
    /// Why the order was cancelled, in words; absent unless it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A session's start, in words.
pub fn session_time(starts_at: DateTime<Utc>) -> String {
    starts_at.format("%a %-d %b %Y, %H:%M UTC").to_string()
}

/// An amount in cents, in units (`24000` → `240.00`).
pub fn amount(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

/// A notification rendered for one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The e-mail's subject (empty on other channels).
    pub subject: String,
    /// The text: the e-mail's plain-text part, the SMS, the push text.
    pub text: String,
    /// The e-mail's HTML part.
    pub html: Option<String>,
}

/// The templates, parsed once.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Templates {
    /// Parses every template; a template that does not parse is a fault of this build.
    pub fn new() -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Values are HTML-escaped in `.html` templates (MiniJinja's default by name).
        for (name, source) in SOURCES {
            env.add_template(name, source)
                .map_err(|err| format!("template {name}: {err}"))?;
        }
        Ok(Self { env })
    }

    fn one(&self, name: &str, facts: &Facts) -> Result<String, String> {
        let template = self
            .env
            .get_template(name)
            .map_err(|err| format!("template {name}: {err}"))?;
        template
            .render(facts)
            .map(|text| text.trim_end().to_owned())
            .map_err(|err| format!("template {name}: {err}"))
    }

    /// `event`'s notification for `channel` (`SMS`, `EMAIL`, `PUSH`).
    pub fn render(&self, event: &str, channel: &str, facts: &Facts) -> Result<Rendered, String> {
        if self
            .env
            .get_template(&format!("{event}.subject.txt"))
            .is_err()
        {
            return Err(format!("no templates for {event:?}"));
        }
        Ok(match channel {
            "EMAIL" => Rendered {
                subject: self.one(&format!("{event}.subject.txt"), facts)?,
                text: self.one(&format!("{event}.email.txt"), facts)?,
                html: Some(self.one(&format!("{event}.email.html"), facts)?),
            },
            "SMS" => Rendered {
                subject: String::new(),
                text: self.one(&format!("{event}.sms.txt"), facts)?,
                html: None,
            },
            "PUSH" => Rendered {
                subject: String::new(),
                text: self.one(&format!("{event}.push.txt"), facts)?,
                html: None,
            },
            other => return Err(format!("no templates for channel {other:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn facts() -> Facts {
        Facts {
            order_no: "T1".into(),
            show: "Tom & Jerry <Live>".into(),
            venue: "Arena 1".into(),
            session_time: session_time(Utc.with_ymd_and_hms(2026, 12, 12, 19, 30, 0).unwrap()),
            tier: "Floor".into(),
            quantity: 2,
            amount: amount(24_000),
            reason: None,
        }
    }

    #[test]
    fn a_confirmation_names_the_show_the_session_the_tier_and_the_amount() {
        let templates = Templates::new().expect("the templates parse");
        let email = templates
            .render("purchase_confirmed", "EMAIL", &facts())
            .expect("rendered");
        assert_eq!(
            email.subject,
            "Your tickets for Tom & Jerry <Live>: order T1"
        );
        for part in [&email.text, email.html.as_ref().expect("an HTML part")] {
            for value in [
                "Arena 1",
                "Sat 12 Dec 2026, 19:30 UTC",
                "Floor",
                "240.00",
                "T1",
            ] {
                assert!(part.contains(value), "{value} missing from {part}");
            }
        }
        assert!(email.text.contains("Tom & Jerry <Live>"));
        let html = email.html.expect("html");
        assert!(html.contains("Tom &amp; Jerry &lt;Live&gt;"), "{html}");
        let sms = templates
            .render("purchase_confirmed", "SMS", &facts())
            .expect("rendered");
        assert_eq!(
            sms.text,
            "2 x Floor for Tom & Jerry <Live>, Sat 12 Dec 2026, 19:30 UTC: confirmed (240.00). \
             Order T1."
        );
        assert!(sms.text.chars().count() <= 160);
        assert_eq!(sms.html, None);
    }

    #[test]
    fn a_cancellation_says_why_and_cannot_be_rendered_without_a_reason() {
        let templates = Templates::new().expect("the templates parse");
        let mut facts = facts();
        let err = templates
            .render("order_cancelled", "PUSH", &facts)
            .expect_err("no reason");
        assert!(err.contains("order_cancelled.push.txt"), "{err}");
        facts.reason = Some("the payment was not made before its deadline".into());
        for channel in ["EMAIL", "SMS", "PUSH"] {
            let rendered = templates
                .render("order_cancelled", channel, &facts)
                .expect("rendered");
            assert!(
                rendered
                    .text
                    .contains("cancelled: the payment was not made before its deadline"),
                "{channel}: {}",
                rendered.text
            );
        }
        assert!(templates.render("welcome", "SMS", &facts).is_err());
        assert!(templates.render("order_cancelled", "FAX", &facts).is_err());
    }

    #[test]
    fn amounts_are_written_in_units() {
        assert_eq!(amount(24_000), "240.00");
        assert_eq!(amount(5), "0.05");
        assert_eq!(amount(-150), "-1.50");
    }
}
