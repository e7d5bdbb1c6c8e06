//! The side-by-side harness: this crate (a new user's `HttpClientConfig::new`,
//! the `openai` preset, and optionally a baseline build) next to the
//! openai-python SDK and LiteLLM's Router, each in a process of its own,
//! against one simulated OpenAI-compatible provider per run, on the same
//! seeded faults. Medians of three runs, interleaved. How to run it is in
//! benches/README.md; it is not part of `cargo test` or CI.

#[path = "providers/drive.rs"]
mod drive;
#[path = "providers/sim.rs"]
mod sim;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use sim::{Fault, Sim};

/// One scenario: the provider's fault and the calls (start, budget).
struct Scenario {
    name: &'static str,
    fault: Fault,
    calls: Vec<(u64, u64)>,
    /// When the provider is healthy again, for the "after recovery" figure.
    recovery: Option<Duration>,
}

fn steady(count: u64, every_ms: u64, budget_ms: u64) -> Vec<(u64, u64)> {
    (0..count).map(|i| (i * every_ms, budget_ms)).collect()
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "outage",
            fault: Fault::Outage {
                from: Duration::from_secs(6),
                until: Duration::from_secs(13),
            },
            calls: steady(400, 50, 10_000),
            recovery: Some(Duration::from_secs(13)),
        },
        Scenario {
            name: "storm",
            fault: Fault::Storm { share: 0.3 },
            calls: steady(200, 50, 60_000),
            recovery: None,
        },
        Scenario {
            name: "rate_limit",
            fault: Fault::RateLimit {
                per_sec: 2.0,
                burst: 2.0,
            },
            calls: vec![(0, 60_000); 60],
            recovery: None,
        },
        Scenario {
            name: "slow_tail",
            fault: Fault::SlowTail {
                share: 0.05,
                delay: Duration::from_secs(8),
            },
            calls: steady(200, 50, 30_000),
            recovery: None,
        },
        Scenario {
            name: "silent",
            fault: Fault::Silent { share: 0.05 },
            calls: steady(200, 50, 10_000),
            recovery: None,
        },
    ]
}

/// What one client did in one run.
#[derive(Clone, Debug, Default)]
struct Run {
    served: f64,
    attempts: f64,
    p50_ms: f64,
    p99_ms: f64,
    after_recovery: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--drive") {
        drive_mode(&args[at + 1..]);
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf();
    let runs: usize = env_or("PROVIDERS_RUNS", "3").parse().unwrap_or(3);
    let wanted = env_or(
        "PROVIDERS_SCENARIOS",
        "outage,storm,rate_limit,slow_tail,silent",
    );
    let mut clients: Vec<String> = env_or(
        "PROVIDERS_CLIENTS",
        "stache-new,stache-openai,openai,litellm",
    )
    .split(',')
    .map(str::to_owned)
    .collect();
    if std::env::var_os("STACHE_BASE_BIN").is_some() && !clients.iter().any(|c| c == "stache-base")
    {
        clients.insert(0, "stache-base".to_owned());
    }
    let seed: u64 = env_or("PROVIDERS_SEED", "7").parse().unwrap_or(7);
    let work = root.join("target/providers");
    std::fs::create_dir_all(&work).expect("a work folder under target/");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let mut report = Vec::new();
    for scenario in scenarios()
        .into_iter()
        .filter(|s| wanted.split(',').any(|w| w == s.name))
    {
        let mut results: Vec<Vec<Run>> = vec![Vec::new(); clients.len()];
        for round in 0..runs {
            for (i, client) in clients.iter().enumerate() {
                let run = runtime.block_on(one_run(
                    &root,
                    &work,
                    &scenario,
                    client,
                    seed + round as u64,
                ));
                eprintln!("{} {client} run {round}: {run:?}", scenario.name);
                results[i].push(run);
            }
        }
        println!("\n### {} ({} calls)\n", scenario.name, scenario.calls.len());
        println!(
            "| client | served | attempts | p50 | p99 | served, started ≥ 2 s after recovery |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        for (client, runs) in clients.iter().zip(&results) {
            let m = median(runs);
            let after = if scenario.recovery.is_some() {
                format!("{:.0}%", m.after_recovery * 100.0)
            } else {
                "".to_owned()
            };
            println!(
                "| {client} | {:.0} | {:.0} | {:.2} s | {:.2} s | {after} |",
                m.served,
                m.attempts,
                m.p50_ms / 1e3,
                m.p99_ms / 1e3
            );
            report.push(json!({
                "scenario": scenario.name, "client": client, "served": m.served,
                "attempts": m.attempts, "p50_ms": m.p50_ms, "p99_ms": m.p99_ms,
                "after_recovery": m.after_recovery,
                "runs": runs.iter().map(|r| json!([r.served, r.attempts, r.p50_ms, r.p99_ms, r.after_recovery])).collect::<Vec<_>>(),
            }));
        }
    }
    let out = work.join("results.json");
    let _ = std::fs::write(&out, serde_json::to_vec_pretty(&report).unwrap_or_default());
    eprintln!("results in {}", out.display());
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The median of each figure over the runs.
fn median(runs: &[Run]) -> Run {
    let pick = |f: fn(&Run) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    Run {
        served: pick(|r| r.served),
        attempts: pick(|r| r.attempts),
        p50_ms: pick(|r| r.p50_ms),
        p99_ms: pick(|r| r.p99_ms),
        after_recovery: pick(|r| r.after_recovery),
    }
}

async fn one_run(root: &Path, work: &Path, scenario: &Scenario, client: &str, seed: u64) -> Run {
    let sim = Sim::start(scenario.fault, seed).await;
    let base = format!("http://127.0.0.1:{}", sim.port);
    let plan = json!({
        "base_url": format!("{base}/v1"),
        "start_url": base,
        "api_key": "sk-test",
        "max_retries": 5,
        "calls": scenario.calls.iter().enumerate().map(|(id, (start, budget))| json!({
            "id": id, "start_ms": start, "budget_ms": budget, "model": "gpt-sim",
        })).collect::<Vec<_>>(),
    });
    let plan_path = work.join(format!("plan-{}-{client}.json", scenario.name));
    let out_path = work.join(format!("out-{}-{client}.json", scenario.name));
    let _ = std::fs::remove_file(&out_path);
    std::fs::write(&plan_path, serde_json::to_vec(&plan).unwrap_or_default())
        .expect("write the plan");
    let mut command = match client {
        "openai" | "litellm" => {
            let mut c = tokio::process::Command::new(root.join("target/peers/venv/bin/python"));
            c.arg(root.join("benches/peers/driver.py"));
            c
        }
        "stache-base" => tokio::process::Command::new(
            std::env::var_os("STACHE_BASE_BIN")
                .map(PathBuf::from)
                .unwrap_or_default(),
        ),
        _ => {
            let mut c = tokio::process::Command::new(std::env::current_exe().expect("this binary"));
            c.arg("--drive");
            c
        }
    };
    if client == "stache-base" {
        command.arg("--drive");
    }
    command
        .arg(client)
        .arg(&plan_path)
        .arg(&out_path)
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .stdout(Stdio::null())
        .kill_on_drop(true);
    let last = scenario.calls.iter().map(|(s, b)| s + b).max().unwrap_or(0);
    let limit = Duration::from_millis(last) + Duration::from_secs(90);
    match tokio::time::timeout(limit, command.status()).await {
        Ok(Ok(status)) if status.success() => {}
        other => eprintln!("{client} did not finish cleanly: {other:?}"),
    }
    let counts = sim.take_counts();
    let calls: Vec<Value> = std::fs::read(&out_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["calls"].as_array().cloned())
        .unwrap_or_default();
    measure(scenario, &calls, counts.attempts)
}

fn measure(scenario: &Scenario, calls: &[Value], attempts: u64) -> Run {
    let mut latencies = Vec::new();
    let (mut late, mut late_ok) = (0u32, 0u32);
    for call in calls {
        let id = call["id"].as_u64().unwrap_or(0) as usize;
        let budget = scenario.calls.get(id).map_or(0, |c| c.1) as f64;
        let start = call["start_ms"].as_f64().unwrap_or(0.0);
        let took = call["end_ms"].as_f64().unwrap_or(f64::MAX) - start;
        // A call counts as served when it answered within its budget (and a
        // quarter of a second of scheduling slack).
        let ok = call["ok"].as_bool().unwrap_or(false) && took <= budget + 250.0;
        if ok {
            latencies.push(took);
        }
        if let Some(recovery) = scenario.recovery {
            // By the plan's start time: a client late to start a call is not
            // excused by it.
            let planned = scenario.calls.get(id).map_or(0, |c| c.0);
            if Duration::from_millis(planned) >= recovery + Duration::from_secs(2) {
                late += 1;
                late_ok += u32::from(ok);
            }
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        if latencies.is_empty() {
            f64::NAN
        } else {
            latencies[((latencies.len() - 1) as f64 * q).round() as usize]
        }
    };
    Run {
        served: latencies.len() as f64,
        attempts: attempts as f64,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        after_recovery: if late == 0 {
            f64::NAN
        } else {
            f64::from(late_ok) / f64::from(late)
        },
    }
}

/// `--drive <client> <plan> <out>`: run a plan as this crate, write the calls.
fn drive_mode(args: &[String]) {
    let [client, plan, out, ..] = args else {
        eprintln!("usage: --drive <client> <plan.json> <out.json>");
        std::process::exit(2);
    };
    let plan: Value = serde_json::from_slice(&std::fs::read(plan).expect("read the plan"))
        .expect("a plan in JSON");
    let base_url = plan["base_url"].as_str().unwrap_or_default();
    let start_url = plan["start_url"].as_str().unwrap_or_default();
    let max_retries = plan["max_retries"].as_u64().unwrap_or(5) as u32;
    let Some(config) = drive::config(client, base_url, max_retries) else {
        eprintln!("unknown client {client}");
        std::process::exit(2);
    };
    let calls = plan["calls"].as_array().cloned().unwrap_or_default();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let results = runtime.block_on(drive::run(config, start_url, &calls));
    let doc = json!({"client": client, "version": env!("CARGO_PKG_VERSION"), "calls": results});
    std::fs::write(out, serde_json::to_vec(&doc).unwrap_or_default()).expect("write the results");
}
