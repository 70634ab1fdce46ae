//! Typed configuration: values come from an optional TOML file and from environment variables
//! with a prefix (the environment wins). Every problem is collected and reported together, so an
//! operator fixes a broken deployment in one pass instead of one error per restart.
//!
//! Keys are dotted paths (`database.url`); the environment spells them upper-case with `__` for
//! the dot: `TICKET_ORDER_DATABASE__URL`. `<PREFIX>_CONFIG_FILE` names the optional file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Every problem found while loading a configuration.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration error(s):", self.0.len())?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

/// Raw key/value pairs from the file and the environment, read by typed getters that collect
/// their errors instead of stopping at the first.
pub struct ConfigSource {
    prefix: String,
    values: BTreeMap<String, (String, String)>,
    errors: Vec<String>,
    /// Every key asked for, with its default as text.
    asked: BTreeMap<String, String>,
}

/// A setting a service read: its environment variable and its default.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Setting {
    pub env: String,
    pub default: String,
}

/// What the configurations loaded in this process asked for, and the variables of their
/// prefixes that no one asked for (a misspelt setting).
#[derive(Clone, Debug, Default)]
pub struct SettingsRead {
    pub settings: Vec<Setting>,
    pub unknown: Vec<String>,
}

/// Every finished source's asked settings and given values, by environment variable.
#[derive(Default)]
struct Seen {
    asked: BTreeMap<String, String>,
    given: BTreeMap<String, String>,
}

static SEEN: std::sync::Mutex<Option<Seen>> = std::sync::Mutex::new(None);

/// The settings the configurations loaded so far in this process read ([`ConfigSource::finish`]
/// records them): `<service> settings` prints them, the start-up log warns of the values given
/// that none of them read.
pub fn settings_read() -> SettingsRead {
    let seen = SEEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(seen) = seen.as_ref() else {
        return SettingsRead::default();
    };
    SettingsRead {
        settings: seen
            .asked
            .iter()
            .map(|(env, default)| Setting {
                env: env.clone(),
                default: default.clone(),
            })
            .collect(),
        unknown: seen
            .given
            .iter()
            .filter(|(env, _)| !seen.asked.contains_key(*env))
            .map(|(env, origin)| format!("{env} (from {origin})"))
            .collect(),
    }
}

impl ConfigSource {
    /// Reads `<prefix>_CONFIG_FILE` (if set) and every `<prefix>_*` environment variable.
    pub fn from_env(prefix: &str) -> Self {
        Self::from_pairs(prefix, std::env::vars())
    }

    /// Like [`ConfigSource::from_env`] over the given variables; tests pass their own.
    pub fn from_pairs(prefix: &str, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut source = Self {
            prefix: prefix.to_owned(),
            values: BTreeMap::new(),
            errors: Vec::new(),
            asked: BTreeMap::new(),
        };
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let file_var = format!("{prefix}_CONFIG_FILE");
        if let Some((_, path)) = vars.iter().find(|(k, _)| *k == file_var) {
            source.read_file(Path::new(path));
        }
        let env_prefix = format!("{prefix}_");
        for (name, value) in vars {
            if name == file_var {
                continue;
            }
            if let Some(rest) = name.strip_prefix(&env_prefix) {
                let key = rest.to_ascii_lowercase().replace("__", ".");
                source
                    .values
                    .insert(key, (value, format!("environment variable {name}")));
            }
        }
        source
    }

    fn read_file(&mut self, path: &Path) {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) => {
                self.errors
                    .push(format!("cannot read config file {}: {err}", path.display()));
                return;
            }
        };
        let table: toml::Table = match text.parse() {
            Ok(table) => table,
            Err(err) => {
                self.errors.push(format!(
                    "config file {} is not valid TOML: {err}",
                    path.display()
                ));
                return;
            }
        };
        let origin = format!("config file {}", path.display());
        flatten("", &toml::Value::Table(table), &origin, &mut self.values);
    }

    /// The environment variable that sets `key`, for error messages and docs.
    pub fn env_name(&self, key: &str) -> String {
        format!(
            "{}_{}",
            self.prefix,
            key.replace('.', "__").to_ascii_uppercase()
        )
    }

    /// A typed value, or `default` when absent; a value that does not parse is recorded.
    pub fn get<T>(&mut self, key: &str, default: T) -> T
    where
        T: FromStr + fmt::Display,
        T::Err: fmt::Display,
    {
        self.asked.insert(key.to_owned(), default.to_string());
        match self.values.get(key) {
            None => default,
            Some((raw, origin)) => match raw.trim().parse() {
                Ok(value) => value,
                Err(err) => {
                    self.errors
                        .push(format!("{key} = {raw:?} (from {origin}): {err}"));
                    default
                }
            },
        }
    }

    /// A string value, or `default`.
    pub fn string(&mut self, key: &str, default: &str) -> String {
        self.asked.insert(key.to_owned(), default.to_owned());
        self.values
            .get(key)
            .map_or_else(|| default.to_owned(), |(raw, _)| raw.clone())
    }

    /// A duration in milliseconds, written `<key>_ms`.
    pub fn millis(&mut self, key: &str, default: Duration) -> Duration {
        let ms = self.get(key, u64::try_from(default.as_millis()).unwrap_or(u64::MAX));
        Duration::from_millis(ms)
    }

    /// Records a problem found by a caller's own check (ranges, cross-field rules).
    pub fn invalid(&mut self, key: &str, problem: impl fmt::Display) {
        self.errors.push(format!(
            "{key} (set with {}): {problem}",
            self.env_name(key)
        ));
    }

    /// Ends loading: every problem at once, or nothing.
    pub fn finish(self) -> Result<(), ConfigErrors> {
        {
            let mut seen = SEEN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let seen = seen.get_or_insert_with(Seen::default);
            for (key, default) in &self.asked {
                seen.asked.insert(self.env_name(key), default.clone());
            }
            // An empty value reads as not given: a template's blank leaves nothing to warn of.
            for (key, (value, origin)) in &self.values {
                if !value.is_empty() {
                    seen.given.insert(self.env_name(key), origin.clone());
                }
            }
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}

fn flatten(
    prefix: &str,
    value: &toml::Value,
    origin: &str,
    out: &mut BTreeMap<String, (String, String)>,
) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, origin, out);
            }
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_owned(), (s.clone(), origin.to_owned()));
        }
        toml::Value::Integer(i) => {
            out.insert(prefix.to_owned(), (i.to_string(), origin.to_owned()));
        }
        toml::Value::Float(f) => {
            out.insert(prefix.to_owned(), (f.to_string(), origin.to_owned()));
        }
        toml::Value::Boolean(b) => {
            out.insert(prefix.to_owned(), (b.to_string(), origin.to_owned()));
        }
        toml::Value::Datetime(d) => {
            out.insert(prefix.to_owned(), (d.to_string(), origin.to_owned()));
        }
        toml::Value::Array(_) => {
            // Lists are written as one comma-separated string.
            out.insert(
                prefix.to_owned(),
                (
                    String::new(),
                    format!("{origin} (a list: write it as a string)"),
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn environment_keys_become_dotted_paths() {
        let mut source = ConfigSource::from_pairs(
            "TICKET_ORDER",
            vars(&[
                ("TICKET_ORDER_GRPC__PORT", "6000"),
                ("OTHER_GRPC__PORT", "1"),
            ]),
        );
        assert_eq!(source.get("grpc.port", 0u16), 6000);
        assert_eq!(source.env_name("grpc.port"), "TICKET_ORDER_GRPC__PORT");
        assert!(source.finish().is_ok());
    }

    #[test]
    fn every_error_is_reported_together() {
        let mut source = ConfigSource::from_pairs(
            "T",
            vars(&[("T_GRPC__PORT", "seventy"), ("T_OUTBOX__BATCH", "-3")]),
        );
        let _ = source.get("grpc.port", 1u16);
        let _ = source.get("outbox.batch", 1usize);
        source.invalid("messaging.namespace", "must not contain spaces");
        let errors = source.finish().expect_err("three problems");
        assert_eq!(errors.0.len(), 3, "{errors}");
        let text = errors.to_string();
        assert!(
            text.contains("grpc.port") && text.contains("outbox.batch"),
            "{text}"
        );
        assert!(text.contains("T_MESSAGING__NAMESPACE"), "{text}");
    }

    #[test]
    fn file_values_are_overridden_by_the_environment() {
        let dir = std::env::temp_dir().join(format!("ticket-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("svc.toml");
        std::fs::write(&file, "[grpc]\nport = 7000\nhost = \"0.0.0.0\"\n").expect("write");
        let mut source = ConfigSource::from_pairs(
            "T",
            vars(&[
                ("T_CONFIG_FILE", file.to_str().expect("utf8")),
                ("T_GRPC__PORT", "7001"),
            ]),
        );
        assert_eq!(source.get("grpc.port", 0u16), 7001);
        assert_eq!(source.string("grpc.host", "127.0.0.1"), "0.0.0.0");
        assert!(source.finish().is_ok());
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let source =
            ConfigSource::from_pairs("T", vars(&[("T_CONFIG_FILE", "/nonexistent/x.toml")]));
        assert!(source.finish().is_err());
    }

    #[test]
    fn the_settings_read_are_listed_and_a_misspelt_one_is_unknown() {
        let mut source = ConfigSource::from_pairs(
            "TICKET_LISTED",
            [
                (
                    "TICKET_LISTED_DATABASE__URL".to_owned(),
                    "postgres://db".to_owned(),
                ),
                (
                    "TICKET_LISTED_DATABSE__URL".to_owned(),
                    "postgres://typo".to_owned(),
                ),
            ],
        );
        source.string("database.url", "postgres://localhost");
        source.get("pool.size", 8u32);
        assert!(source.finish().is_ok());
        let read = settings_read();
        for (env, default) in [
            ("TICKET_LISTED_DATABASE__URL", "postgres://localhost"),
            ("TICKET_LISTED_POOL__SIZE", "8"),
        ] {
            assert!(
                read.settings.contains(&Setting {
                    env: env.into(),
                    default: default.into()
                }),
                "{env}: {read:?}"
            );
        }
        let listed: Vec<&str> = read
            .unknown
            .iter()
            .filter(|u| u.starts_with("TICKET_LISTED_"))
            .map(String::as_str)
            .collect();
        assert_eq!(
            listed,
            ["TICKET_LISTED_DATABSE__URL (from environment variable TICKET_LISTED_DATABSE__URL)"]
        );
    }
}
