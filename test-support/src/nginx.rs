//! A real nginx, started by a test on a loopback port as a reverse proxy, and
//! stopped when dropped.
//!
//! nginx comes from Debian's packages (`nginx-light`). If it is missing and the
//! test runs as root (CI, a fresh container), it is installed with `apt-get`;
//! otherwise the test fails with the command to run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx that proxies every request to one upstream.
pub struct Nginx {
    child: Child,
    dir: PathBuf,
    pub addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx on a free loopback port, proxying to `upstream` and giving
    /// up on an upstream that sends nothing for `read_timeout` (nginx syntax:
    /// `300ms`, `1s`) with a 504.
    pub fn proxy(upstream: SocketAddr, read_timeout: &str) -> Nginx {
        let binary = binary();
        // A port chosen by the kernel, freed just before nginx binds it; if
        // another process takes it in between, try another.
        for attempt in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let dir = std::env::temp_dir().join(format!(
                "stache-nginx-{}-{port}-{attempt}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("a directory for nginx");
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, config(&dir, port, upstream, read_timeout))
                .expect("write nginx.conf");
            let mut child = Command::new(&binary)
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(dir.join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nginx");
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            if wait_until_listening(&mut child, addr) {
                return Nginx { child, dir, addr };
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
        }
        panic!("nginx did not start on a loopback port in 5 tries");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config(dir: &Path, port: u16, upstream: SocketAddr, read_timeout: &str) -> String {
    let d = dir.display();
    format!(
        "daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_read_timeout {read_timeout};
        }}
    }}
}}
"
    )
}

/// Waits (at most 10 s) until nginx accepts connections; `false` if it exited.
fn wait_until_listening(child: &mut Child, addr: SocketAddr) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The nginx binary, installed from Debian's packages if missing and possible.
fn binary() -> PathBuf {
    let found = || {
        ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    };
    if let Some(path) = found() {
        return path;
    }
    // One install per machine, even with tests running in parallel.
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        if root {
            let _ = Command::new("apt-get")
                .args(["install", "-y", "-q", "nginx-light"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    });
    found().unwrap_or_else(|| {
        panic!(
            "this test needs nginx: run `sudo apt-get install -y nginx-light` (Debian's package)"
        )
    })
}
