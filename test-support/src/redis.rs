//! A real `redis-server` (Debian's package `redis-server`), started by a test
//! on a free loopback port with nothing saved to disk, and stopped when
//! dropped. [`kill`](RedisServer::kill) and [`restart`](RedisServer::restart)
//! make an outage on the same port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or killed) redis-server on a loopback port.
pub struct RedisServer {
    child: Option<Child>,
    pub addr: SocketAddr,
}

impl RedisServer {
    /// Starts redis-server on a free loopback port: `--save ''
    /// --appendonly no`, so nothing reaches the disk.
    pub fn start() -> RedisServer {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let mut server = RedisServer {
                child: None,
                addr: ([127, 0, 0, 1], port).into(),
            };
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server did not start on a loopback port in 5 tries");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kills the server at once (SIGKILL): an outage, its data gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        // The port was ours a moment ago; retry briefly if the kernel holds it.
        let started = Instant::now();
        while !self.spawn() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start again on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one command (inline protocol: no spaces inside arguments) and
    /// returns the reply as text: `+PONG`, `:3`, or a multi-bulk reply's
    /// elements one per line.
    pub fn command(&self, args: &[&str]) -> String {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            .expect("connect to redis-server");
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("a read timeout");
        stream
            .write_all(format!("{}\r\n", args.join(" ")).as_bytes())
            .expect("send a command to redis-server");
        let mut reader = BufReader::new(stream);
        read_reply(&mut reader)
    }

    fn spawn(&mut self) -> bool {
        let binary = crate::debian::binary(
            &["/usr/bin/redis-server", "/usr/local/bin/redis-server"],
            "redis-server",
        );
        let mut child = Command::new(binary)
            .args(["--port", &self.addr.port().to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "yes", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if let Ok(mut stream) =
                TcpStream::connect_timeout(&self.addr, Duration::from_millis(100))
            {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                let mut pong = [0u8; 7];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read_exact(&mut pong).is_ok()
                    && &pong == b"+PONG\r\n"
                {
                    self.child = Some(child);
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

fn read_reply(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .expect("a reply from redis-server");
    let line = line.trim_end().to_owned();
    match line.as_bytes().first() {
        Some(b'*') => {
            let n: i64 = line[1..].parse().unwrap_or(0);
            (0..n.max(0))
                .map(|_| read_reply(reader))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Some(b'$') => {
            let n: i64 = line[1..].parse().unwrap_or(-1);
            if n < 0 {
                return String::new();
            }
            let mut value = vec![0u8; usize::try_from(n).unwrap_or(0) + 2];
            reader.read_exact(&mut value).expect("a bulk reply");
            value.truncate(value.len() - 2);
            String::from_utf8_lossy(&value).into_owned()
        }
        _ => line,
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
