//! A `redis-server` of the test's own, on a free loopback port, for settings the
//! machine's shared server must never be given (a tiny `maxmemory`, another eviction
//! policy). Nothing is kept on disk (a replica's sync file goes to a directory of the
//! server's own, removed with it); the server is stopped (by its pid) when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

/// A running `redis-server` started by the test.
pub struct OwnServer {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl OwnServer {
    /// Starts `redis-server` with `settings` (pairs such as `("maxmemory", "4mb")`)
    /// and waits until it answers. Panics, naming the binary, when it cannot start.
    pub fn start(settings: &[(&str, &str)]) -> OwnServer {
        OwnServer::start_with(settings, &[])
    }

    /// [`start`](Self::start) with further command-line arguments, each passed as is
    /// (`["--rename-command", "CONFIG", ""]` takes `CONFIG` away, as managed services
    /// do).
    pub fn start_with(settings: &[(&str, &str)], args: &[&str]) -> OwnServer {
        // A port found free may be taken by another test's server before this one
        // binds it: the server that answers must be this one (its process id), or
        // another port is tried.
        for _ in 0..10 {
            if let Some(server) = OwnServer::try_start(settings, args) {
                return server;
            }
        }
        panic!("no port on which the test's own redis-server answered");
    }

    fn try_start(settings: &[(&str, &str)], args: &[&str]) -> Option<OwnServer> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        OwnServer::try_start_on(port, settings, args)
    }

    /// Starts `redis-server` on `port`, in a fresh directory of its own, and waits until
    /// it answers: `None` when another process answers there (the port was taken).
    pub fn try_start_on(port: u16, settings: &[(&str, &str)], args: &[&str]) -> Option<OwnServer> {
        let dir = std::env::temp_dir().join(format!("idem-own-redis-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory for the server");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&dir)
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in settings {
            command.arg(format!("--{name}")).arg(value);
        }
        command.args(args);
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot start `redis-server` (Debian's package redis-server provides it): {e}")
        });
        let mut server = OwnServer { child, port, dir };
        let started = Instant::now();
        loop {
            if server.child.try_wait().ok().flatten().is_some() {
                return None; // It exited: the port was taken.
            }
            if let Some(pid) = server.process_id() {
                return (pid == server.child.id()).then_some(server);
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the test's own redis-server on port {port} does not answer"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id of the server answering on the port (`INFO server`).
    fn process_id(&self) -> Option<u32> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut connection = client.get_connection().ok()?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut connection)
            .ok()?;
        info.lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .and_then(|pid| pid.trim().parse().ok())
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's own directory (its working directory).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A new connection manager to the server.
    pub async fn connection(&self) -> ConnectionManager {
        self.connection_at(&self.url()).await
    }

    /// A new connection manager to the server, over RESP3.
    pub async fn connection_resp3(&self) -> ConnectionManager {
        self.connection_at(&resp3(&self.url())).await
    }

    async fn connection_at(&self, url: &str) -> ConnectionManager {
        let client = redis::Client::open(url).expect("a valid Redis URL");
        ConnectionManager::new(client).await.unwrap_or_else(|e| {
            panic!(
                "the test's own Redis at {} does not answer: {e}",
                self.url()
            )
        })
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `url` asking for RESP3 (`HELLO 3`) instead of the default RESP2.
pub fn resp3(url: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}protocol=resp3")
}
