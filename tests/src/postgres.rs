//! A Postgres server of a test's own (`initdb` and `postgres` from the installed server, on a
//! free port, its data in a private folder in memory), so the test can kill it and start it
//! again without disturbing the shared Postgres the other tests use.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    server: Option<Child>,
}

/// The newest installed server's `bin` folder (`/usr/lib/postgresql/<version>/bin`).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Postgres is installed (scripts/stack.sh up installs it)")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.pop().expect("a Postgres server version").1
}

/// Postgres refuses to run as root: the server runs as the `postgres` account the package
/// created, when the test runs as root.
fn as_postgres_user(command: &mut Command) -> &mut Command {
    if running_as_root() {
        let (uid, gid) = postgres_account();
        command.uid(uid).gid(gid);
    }
    command
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn postgres_account() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id postgres");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("the postgres account (installed with the server)")
    };
    (id("-u"), id("-g"))
}

impl PrivatePostgres {
    /// A new cluster (`initdb`, trust authentication for `postgres` on 127.0.0.1), started.
    pub fn start() -> Self {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(crate::unique("ticket-postgres-"));
        std::fs::create_dir_all(&dir).expect("a folder for the private Postgres");
        if running_as_root() {
            let (uid, gid) = postgres_account();
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown the folder");
        }
        let out = as_postgres_user(&mut Command::new(bin_dir().join("initdb")))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut postgres = Self {
            dir,
            port: crate::free_port(),
            server: None,
        };
        postgres.up();
        postgres
    }

    /// `postgres://postgres:postgres@127.0.0.1:PORT` (no database).
    pub fn server(&self) -> String {
        format!("postgres://postgres:postgres@127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port and data; waits until it accepts connections.
    pub fn up(&mut self) {
        assert!(
            self.server.is_none(),
            "the private Postgres is running already"
        );
        let server = as_postgres_user(&mut Command::new(bin_dir().join("postgres")))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            // Its own process group: a kill reaches the backends too.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        self.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.accepts() {
            assert!(
                Instant::now() < deadline,
                "the private Postgres did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn accepts(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Command::new(bin_dir().join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|status| status.success())
    }

    /// Kills the server and every backend at once (`kill -9` of its process group), as a
    /// crash of the machine would; the next start recovers from the write-ahead log.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = Command::new("kill")
                .args(["-9", "--", &format!("-{}", server.id())])
                .status();
            let _ = server.wait();
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
