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
        Nginx::start(
            upstream,
            &Extra {
                read_timeout,
                ..Extra::default()
            },
        )
    }

    /// Starts nginx in front of `upstream`, limiting requests to `rate` (nginx
    /// syntax: `2r/s`) with `limit_req` and no burst: a request over the rate is
    /// answered 429 with `Retry-After: 1`, as a provider's gateway would. Every
    /// request is logged; read them with [`log`](Self::log).
    pub fn rate_limited(upstream: SocketAddr, rate: &str) -> Nginx {
        let zone = format!("limit_req_zone $binary_remote_addr zone=calls:1m rate={rate};");
        Nginx::start(
            upstream,
            &Extra {
                read_timeout: "10s",
                http: &zone,
                location: "limit_req zone=calls; limit_req_status 429; add_header Retry-After 1 always;",
                log: true,
            },
        )
    }

    /// The requests nginx answered so far, in order: when (seconds since the
    /// epoch, millisecond resolution) and with which status. Empty unless
    /// logging was asked for.
    pub fn log(&self) -> Vec<(f64, u16)> {
        let text = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let (at, status) = line.split_once(' ')?;
                Some((at.parse().ok()?, status.trim().parse().ok()?))
            })
            .collect()
    }

    fn start(upstream: SocketAddr, extra: &Extra<'_>) -> Nginx {
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
            std::fs::write(&conf, config(&dir, port, upstream, extra)).expect("write nginx.conf");
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

/// What a test's nginx adds to the plain proxy.
#[derive(Default)]
struct Extra<'a> {
    read_timeout: &'a str,
    /// Directives of the `http` block.
    http: &'a str,
    /// Directives of the proxying `location`.
    location: &'a str,
    /// Whether every request is logged (`$msec $status`).
    log: bool,
}

fn config(dir: &Path, port: u16, upstream: SocketAddr, extra: &Extra<'_>) -> String {
    let d = dir.display();
    let Extra {
        read_timeout,
        http,
        location,
        log,
    } = extra;
    let access_log = if *log {
        format!("log_format timed '$msec $status'; access_log {d}/access.log timed;")
    } else {
        "access_log off;".to_owned()
    };
    format!(
        "daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    {access_log}
    {http}
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
            {location}
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
    crate::debian::binary(
        &["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"],
        "nginx-light",
    )
}
