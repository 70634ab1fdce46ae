//! A Redis server of a test's own (`redis-server` on a free port, its data in a private
//! folder), so the test can kill it, restore an older snapshot and start it again without
//! disturbing the shared Redis the other tests use.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PrivateRedis {
    dir: PathBuf,
    port: u16,
    server: Option<Child>,
}

impl PrivateRedis {
    /// Starts an empty Redis that never saves by itself (`--save ''`, no AOF).
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(crate::unique("ticket-redis-"));
        std::fs::create_dir_all(&dir).expect("a folder for the private Redis");
        let mut redis = Self {
            dir,
            port: crate::free_port(),
            server: None,
        };
        redis.up();
        redis
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port and folder: it loads `dump.rdb` when there is
    /// one. Waits until it answers.
    pub fn up(&mut self) {
        assert!(
            self.server.is_none(),
            "the private Redis is running already"
        );
        let server = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (is it installed?)");
        self.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "the private Redis did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs one command with `redis-cli`; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        if TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            return String::new();
        }
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `SAVE`s and keeps a copy of the snapshot under `name`.
    pub fn snapshot(&self, name: &str) {
        assert_eq!(self.cli(&["SAVE"]).trim(), "OK");
        std::fs::copy(self.dir.join("dump.rdb"), self.dir.join(name)).expect("copy the snapshot");
    }

    /// Puts snapshot `name` back as the data the next start loads.
    pub fn restore(&self, name: &str) {
        assert!(self.server.is_none(), "restore with the server down");
        std::fs::copy(self.dir.join(name), self.dir.join("dump.rdb")).expect("restore snapshot");
    }

    /// Forgets every snapshot: the next start is empty.
    pub fn wipe(&self) {
        assert!(self.server.is_none(), "wipe with the server down");
        let _ = std::fs::remove_file(self.dir.join("dump.rdb"));
    }

    /// Kills the server at once (`kill -9`), as a crash would; nothing is saved.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    /// The server's `run_id` (changes on every start).
    pub fn run_id(&self) -> String {
        self.cli(&["INFO", "server"])
            .lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
