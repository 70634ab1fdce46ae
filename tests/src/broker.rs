//! A RocketMQ name server and broker of a test's own (the project's `scripts/stack.sh` with a
//! private folder and ports), so the test can kill the broker without disturbing the others.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

pub struct PrivateBroker {
    dir: PathBuf,
    namesrv_port: u16,
    broker_port: u16,
    /// The broker's ports, held while it lives (killed or not), so no other test's broker
    /// takes them from under its clients.
    _ports: crate::PortReservation,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack.sh")
}

fn free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A port `p` with `p - 2 ..= p + 1` free and reserved (the broker listens on p - 2, p and
/// p + 1).
fn free_broker_port() -> (u16, crate::PortReservation) {
    (0..200)
        .map(|i| {
            21_000 + (u16::try_from(std::process::id() % 200).unwrap_or(0) * 40 + i * 7) % 20_000
        })
        .filter(|p| (p - 2..=p + 1).all(free))
        .find_map(|p| crate::reserve_ports(p - 2..=p + 1).map(|held| (p, held)))
        .expect("a free port range for the broker")
}

impl PrivateBroker {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(crate::unique("ticket-broker-"));
        let namesrv_port = crate::free_port();
        let (broker_port, ports) = free_broker_port();
        let broker = Self {
            dir,
            namesrv_port,
            broker_port,
            _ports: ports,
        };
        broker.up();
        broker
    }

    /// `host:port` of the private name server.
    pub fn name_server(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv_port)
    }

    fn stack(&self, command: &str) -> std::process::Output {
        Command::new("bash")
            .arg(script())
            .arg(command)
            .env("TICKET_STACK_DIR", &self.dir)
            .env("TICKET_STACK_PARTS", "rocketmq")
            .env("TICKET_NAMESRV_PORT", self.namesrv_port.to_string())
            .env("TICKET_BROKER_PORT", self.broker_port.to_string())
            .output()
            .expect("run scripts/stack.sh")
    }

    /// Starts what is not running (the broker again, after [`PrivateBroker::kill`]).
    pub fn up(&self) {
        let out = self.stack("up");
        assert!(
            out.status.success(),
            "private broker did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Kills the broker at once (`kill -9`), as a crash would.
    pub fn kill(&self) {
        self.kill_process("broker.pid", self.broker_port);
    }

    /// Kills the broker and the name server at once (`kill -9`); [`PrivateBroker::up`] starts
    /// both again on the same ports and store.
    pub fn kill_all(&self) {
        self.kill_process("broker.pid", self.broker_port);
        self.kill_process("namesrv.pid", self.namesrv_port);
    }

    fn kill_process(&self, pid_file: &str, port: u16) {
        let pid = std::fs::read_to_string(self.dir.join(pid_file))
            .unwrap_or_else(|err| panic!("{pid_file}: {err}"));
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .expect("kill");
        assert!(status.success());
        let _ = std::fs::remove_file(self.dir.join(pid_file));
        for _ in 0..100 {
            if free(port) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.stack("down");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
