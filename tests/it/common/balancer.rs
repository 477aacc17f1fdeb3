//! A real HAProxy (Debian's package) in front of test nodes, configured by the project's
//! own `deploy/haproxy.cfg` plus a nodes file naming the nodes' data planes.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Balancer {
    child: Child,
    /// The balancer's data-plane URL.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Balancer {
    /// HAProxy balancing over `nodes` (data-plane URLs), once it listens and sees at least
    /// one node ready.
    pub async fn start(nodes: &[&str]) -> Balancer {
        let dir = tempfile::tempdir().unwrap();
        let mut servers = String::from("backend fnhost\n");
        for (i, node) in nodes.iter().enumerate() {
            let address = node.trim_start_matches("http://");
            servers.push_str(&format!("    server node{} {address}\n", i + 1));
        }
        let nodes_file = dir.path().join("nodes.cfg");
        std::fs::write(&nodes_file, servers).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy.cfg");
        let log = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
        let mut child = Command::new(haproxy())
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .arg("-f")
            .arg(&nodes_file)
            .env("FNHOST_LB_BIND", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting haproxy (scripts/install-packages installs it)");
        std::thread::sleep(Duration::from_millis(50));
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "haproxy exited ({status}): {}",
                std::fs::read_to_string(dir.path().join("haproxy.log")).unwrap_or_default()
            );
        }
        let balancer = Balancer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        // /readyz goes through to a node: the balancer is up and has a healthy node.
        loop {
            let ready = http
                .get(format!("{}/readyz", balancer.url))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return balancer;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "haproxy did not come up: {}",
                balancer.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The haproxy binary: on PATH, or where Debian puts it (/usr/sbin is not on every PATH).
fn haproxy() -> String {
    let on_path = Command::new("haproxy")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if on_path {
        "haproxy".into()
    } else {
        "/usr/sbin/haproxy".into()
    }
}
