//! A real PostgreSQL server for tests: Debian's `postgresql` package, `initdb` in a temporary
//! directory, listening on a free loopback port; one server per test process, a fresh
//! database per test. The server refuses to run as root, so as root it runs as the
//! `postgres` user the package creates.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct TestPostgres {
    dir: tempfile::TempDir,
    server: std::sync::Mutex<Child>,
    port: u16,
    next_database: AtomicU32,
    bin: PathBuf,
}

impl TestPostgres {
    /// The process's server, started on first use.
    pub fn shared() -> &'static TestPostgres {
        static SERVER: OnceLock<TestPostgres> = OnceLock::new();
        SERVER.get_or_init(|| {
            let server = TestPostgres::start().expect("starting a test PostgreSQL server");
            // Statics are never dropped: stop the server when the test process exits.
            SERVER_PID.store(server.server.lock().unwrap().id(), Ordering::Relaxed);
            let _ = SERVER_DIR.set(server.dir.path().to_path_buf());
            unsafe { libc::atexit(stop_server) };
            server
        })
    }

    /// A server of its own, for a test that stops and restarts it (the shared one serves
    /// every other test at once); stopped when dropped.
    pub fn dedicated() -> anyhow::Result<TestPostgres> {
        TestPostgres::start()
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`: no checkpoint, every
    /// connection cut at once), and waits until it is gone.
    pub fn stop_immediately(&self) -> anyhow::Result<()> {
        let status = self.pg_ctl_stop_immediate()?;
        anyhow::ensure!(status.success(), "pg_ctl stop failed");
        let _ = self.server.lock().unwrap().wait();
        Ok(())
    }

    fn pg_ctl_stop_immediate(&self) -> std::io::Result<std::process::ExitStatus> {
        as_postgres(&self.bin.join("pg_ctl"))
            .arg("stop")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w"])
            .status()
    }

    /// Starts the server again on the same port and data directory (it recovers from its
    /// WAL, as after a crash), once it accepts connections.
    pub fn restart(&self) -> anyhow::Result<()> {
        let child = spawn_server(&self.bin, self.dir.path(), self.port)?;
        *self.server.lock().unwrap() = child;
        wait_until_accepting(self.port, &self.dsn("postgres"))
    }

    /// A new, empty database; its connection string.
    pub fn fresh_database(&self) -> String {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{}_{n}", std::process::id());
        let mut admin = postgres::Client::connect(&self.dsn("postgres"), postgres::NoTls)
            .expect("connecting to the test server");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("creating a test database");
        self.dsn(&name)
    }

    fn dsn(&self, database: &str) -> String {
        format!(
            "postgres://fnhost@127.0.0.1:{}/{database}?connect_timeout=10",
            self.port
        )
    }

    fn start() -> anyhow::Result<TestPostgres> {
        let bin = server_binaries()?;
        let dir = tempfile::Builder::new().prefix("fnhost-pg").tempdir()?;
        if unsafe { libc::geteuid() } == 0 {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()?;
            anyhow::ensure!(
                status.success(),
                "chown of the test database directory failed"
            );
        }
        let status = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-A", "trust", "-U", "fnhost", "--no-sync"])
            .status()?;
        anyhow::ensure!(status.success(), "initdb failed");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let server = spawn_server(&bin, dir.path(), port)?;
        let server = TestPostgres {
            dir,
            server: std::sync::Mutex::new(server),
            port,
            next_database: AtomicU32::new(0),
            bin,
        };
        wait_until_accepting(port, &server.dsn("postgres"))?;
        Ok(server)
    }
}

/// `program` run as the `postgres` user when this process is root (the server refuses to
/// run as root), else as this user.
fn as_postgres(program: &Path) -> Command {
    let mut command = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    command.stdout(Stdio::null()).stderr(Stdio::null());
    command
}

/// The server on `port` with its data in `dir/data` and its socket in `dir`.
fn spawn_server(bin: &Path, dir: &Path, port: u16) -> anyhow::Result<Child> {
    Ok(as_postgres(&bin.join("postgres"))
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-k")
        .arg(dir)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "max_connections=200"])
        .spawn()?)
}

/// Waits (30 s at most) for the port to open and the server to accept connections, which
/// may lag the port by a moment.
fn wait_until_accepting(port: u16, dsn: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the test PostgreSQL server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    while postgres::Client::connect(dsn, postgres::NoTls).is_err() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the test PostgreSQL server does not accept connections"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        // A signal to runuser would not reach the server; pg_ctl does (when it still runs).
        if let Ok(mut server) = self.server.lock()
            && matches!(server.try_wait(), Ok(None))
        {
            let _ = self.pg_ctl_stop_immediate();
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

static SERVER_PID: AtomicU32 = AtomicU32::new(0);
/// The shared server's directory (its `TempDir` lives in a static, never dropped).
static SERVER_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Stops the shared server (SIGTERM to its process, which runuser passes on), and leaves
/// behind a shell that removes its directory once it has exited: the server finishes only
/// after this process (and its connections) are gone, so waiting here would never end, and
/// each run would otherwise leave hundreds of megabytes in the temporary directory.
extern "C" fn stop_server() {
    let pid = SERVER_PID.load(Ordering::Relaxed);
    if pid != 0 {
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    if let (Some(dir), true) = (SERVER_DIR.get(), pid != 0) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(r#"while kill -0 "$1" 2>/dev/null; do sleep 0.2; done; rm -rf "$2""#)
            .arg("fnhost-pg-cleanup")
            .arg(pid.to_string())
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

/// `/usr/lib/postgresql/VERSION/bin`, the newest installed.
fn server_binaries() -> anyhow::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}; install PostgreSQL (apt-get install postgresql)",
                root.display()
            )
        })?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| anyhow::anyhow!("no PostgreSQL server under {}", root.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_fresh_database_answers() {
        let dsn = super::TestPostgres::shared().fresh_database();
        let mut client = postgres::Client::connect(&dsn, postgres::NoTls).unwrap();
        let row = client.query_one("SELECT 40 + 2", &[]).unwrap();
        assert_eq!(row.get::<_, i32>(0), 42);
    }
}
