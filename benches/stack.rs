//! Stack overhead under load: a closed loop of 64 callers against a loopback
//! server in a child process, for the bare hyper-util client, our full
//! `HttpClient` stack, tower's own timeout + retry, and reqwest. Runs are
//! interleaved (bare, ours, bare, tower, bare, reqwest, ...) so drift cancels out.
//! Each client's ratios are taken against the bare run just before it, round by
//! round, and the median of those paired ratios is reported. Client and server are
//! pinned to separate cores when there are two (`STACK_PIN=0` turns that off).
//!
//! `cargo bench -p stache-benches --bench stack` (set `STACK_SECS` and `STACK_ROUNDS` to change the
//! run length, default 0.5 s and 20 rounds: on a noisy machine, many short
//! pairs give a steadier median than a few long ones).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Kind, ServerChild};

const CONCURRENCY: usize = 64;

struct Run {
    requests: u64,
    elapsed: Duration,
    cpu_ns: u64,
    p50_us: u32,
    p99_us: u32,
}

impl Run {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn cpu_us_per_req(&self) -> f64 {
        self.cpu_ns as f64 / self.requests as f64 / 1000.0
    }
}

async fn run(kind: &Kind, url: &str, secs: f64) -> Run {
    let body = Arc::new(common::request_body());
    // Warm the pool.
    for _ in 0..CONCURRENCY {
        kind.send(url, &body).await;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let cpu_before = common::process_cpu_ns();
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (kind, body, url) = (kind.clone(), body.clone(), url.to_owned());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(4096);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    std::hint::black_box(kind.send(&url, &body).await);
                    latencies.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("caller task"));
    }
    let elapsed = started.elapsed();
    let cpu_ns = common::process_cpu_ns() - cpu_before;
    latencies.sort_unstable();
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Run {
        requests: latencies.len() as u64,
        elapsed,
        cpu_ns,
        p50_us: pick(0.50),
        p99_us: pick(0.99),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    common::serve_if_child();
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test discovery
    }
    let secs: f64 = std::env::var("STACK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.5);
    let rounds: usize = std::env::var("STACK_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
        .max(1);
    let server = ServerChild::spawn();
    // After the spawn: the child pins itself to core 1.
    let pinned = common::pin_to_core(0);
    let url = server.url();
    // One client thread, one server thread: the 2-core machine is not shared
    // between more.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("client runtime");
    let kinds = Kind::all(&url, CONCURRENCY);
    // `STACK_PROFILE=<index>` runs one client alone, for a profiler.
    if let Some(index) = std::env::var("STACK_PROFILE")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        let r = runtime.block_on(run(&kinds[index.min(kinds.len() - 1)], &url, secs));
        eprintln!("{:.0} req/s, cpu {:.2} us/req", r.rps(), r.cpu_us_per_req());
        return;
    }
    // results[i]: client i's runs; paired[i]: (bare run, client i's run) per round.
    let mut results: Vec<Vec<Run>> = (0..kinds.len()).map(|_| Vec::new()).collect();
    let mut paired: Vec<Vec<(usize, usize)>> = (0..kinds.len()).map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, kind) in kinds.iter().enumerate().skip(1) {
            for (index, k) in [(0, &kinds[0]), (i, kind)] {
                let r = runtime.block_on(run(k, &url, secs));
                eprintln!(
                    "round {round} {:<20} {:>9.0} req/s  p50 {:>5} us  p99 {:>6} us  cpu {:>6.2} us/req",
                    k.name(),
                    r.rps(),
                    r.p50_us,
                    r.p99_us,
                    r.cpu_us_per_req()
                );
                results[index].push(r);
            }
            paired[i].push((results[0].len() - 1, results[i].len() - 1));
        }
    }
    let stat = |runs: &Vec<Run>, f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let ratio = |i: usize, f: &dyn Fn(&Run) -> f64| {
        if i == 0 {
            return 1.0;
        }
        median(
            paired[i]
                .iter()
                .map(|&(b, k)| f(&results[i][k]) / f(&results[0][b]))
                .collect(),
        )
    };
    println!(
        "\n| client | req/s | p50 µs | p99 µs | client CPU µs/req | CPU ratio | p99 ratio | req/s ratio |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (i, (kind, runs)) in kinds.iter().zip(&results).enumerate() {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.3} | {:.3} | {:.3} |",
            kind.name(),
            stat(runs, &|r| r.rps()),
            stat(runs, &|r| r.p50_us as f64),
            stat(runs, &|r| r.p99_us as f64),
            stat(runs, &|r| r.cpu_us_per_req()),
            ratio(i, &|r| r.cpu_us_per_req()),
            ratio(i, &|r| r.p99_us as f64),
            ratio(i, &|r| r.rps()),
        );
    }
    println!(
        "\n(absolute figures: medians of all runs; ratios: medians over {rounds} rounds of \
         each run against the bare run just before it; {secs} s per run, {CONCURRENCY} callers; \
         client and server {})",
        if pinned {
            "pinned to separate cores"
        } else {
            "not pinned"
        }
    );
}
