//! A real SMTP server for tests: aiosmtpd (from PyPI; `scripts/test.sh` installs it into a
//! virtual environment and names its Python in `TICKET_TEST_PYTHON`), on a port of its own,
//! keeping every message it receives in a maildir that the test reads back.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct SmtpServer {
    pub port: u16,
    maildir: PathBuf,
    child: Child,
}

/// A message the server received, as it was stored.
#[derive(Clone, Debug)]
pub struct Mail {
    pub raw: String,
}

impl Mail {
    /// The value of the first header `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.raw.split("\n\n").next().unwrap_or_default();
        let mut value: Option<String> = None;
        for line in head.lines() {
            match &mut value {
                Some(v) if line.starts_with([' ', '\t']) => v.push_str(line.trim_end()),
                Some(_) => break,
                None => {
                    if let Some((key, rest)) = line.split_once(':')
                        && key.eq_ignore_ascii_case(name)
                    {
                        value = Some(rest.trim().to_owned());
                    }
                }
            }
        }
        value
    }

    /// The plain-text part (of a multipart message, or the whole body), soft line breaks of
    /// quoted-printable undone.
    pub fn text(&self) -> String {
        let body = match self.raw.split_once("Content-Type: text/plain") {
            Some((_, part)) => part.split_once("\n\n").map_or("", |(_, body)| body),
            None => self.raw.split_once("\n\n").map_or("", |(_, body)| body),
        };
        let body = body.split("\n--").next().unwrap_or_default();
        body.replace("=\n", "")
            .replace("=3D", "=")
            .trim_end()
            .to_owned()
    }
}

impl SmtpServer {
    pub async fn start() -> Self {
        let python = crate::test_python();
        let port = crate::free_port();
        let maildir =
            std::env::temp_dir().join(format!("t_smtp_{}", uuid::Uuid::new_v4().simple()));
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start aiosmtpd with {}: {err}; scripts/test.sh installs it \
                     (python3 -m venv ~/.cache/ticket-test-venv && \
                     ~/.cache/ticket-test-venv/bin/pip install aiosmtpd)",
                    python.display()
                )
            });
        let server = Self {
            port,
            maildir,
            child,
        };
        crate::eventually(Duration::from_secs(20), "aiosmtpd listening", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        server
    }

    /// notify-svc's e-mail channel to this server (`channels.email.*`, in the clear on this
    /// host), sending as `Tickets <tickets@example.com>`.
    pub fn channel(&self) -> notify_svc::channels::Channel {
        let mut source = ticket_platform::config::ConfigSource::from_pairs(
            notify_svc::ENV_PREFIX,
            [
                ("TICKET_NOTIFY_CHANNELS__EMAIL__KIND", "smtp".to_owned()),
                (
                    "TICKET_NOTIFY_CHANNELS__EMAIL__HOST",
                    "127.0.0.1".to_owned(),
                ),
                ("TICKET_NOTIFY_CHANNELS__EMAIL__PORT", self.port.to_string()),
                ("TICKET_NOTIFY_CHANNELS__EMAIL__TLS", "none".to_owned()),
                (
                    "TICKET_NOTIFY_CHANNELS__EMAIL__FROM",
                    "Tickets <tickets@example.com>".to_owned(),
                ),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let channel = notify_svc::channels::Channels::load(&mut source).email;
        source.finish().expect("the SMTP settings");
        channel
    }

    /// Every message received so far.
    pub fn mails(&self) -> Vec<Mail> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
            .map(|raw| Mail {
                raw: raw.replace("\r\n", "\n"),
            })
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}
