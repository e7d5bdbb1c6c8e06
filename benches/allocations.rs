//! Allocations per request: a counting global allocator around sequential JSON
//! POSTs to a loopback server in a child process, for the bare hyper-util client,
//! our `HttpClient`, tower's timeout + retry, and reqwest.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Kind, ServerChild};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const REQUESTS: u64 = 2000;

fn main() {
    common::serve_if_child();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let server = ServerChild::spawn();
    let url = server.url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let body = common::request_body();
    println!("| client | allocations/request | bytes/request | ratio (allocations) |");
    println!("| --- | ---: | ---: | ---: |");
    let mut base = 0.0;
    // `ALLOC_KIND=<index>` measures one client alone (for callgrind: the
    // instruction count of a fixed number of requests).
    let only: Option<usize> = std::env::var("ALLOC_KIND")
        .ok()
        .and_then(|s| s.parse().ok());
    for (index, kind) in Kind::all(&url, 4).into_iter().enumerate() {
        if only.is_some_and(|o| o != index) {
            continue;
        }
        let (allocs, bytes) = runtime.block_on(async {
            for _ in 0..200 {
                kind.send(&url, &body).await;
            }
            let (a0, b0) = (
                ALLOCS.load(Ordering::Relaxed),
                BYTES.load(Ordering::Relaxed),
            );
            for _ in 0..REQUESTS {
                kind.send(&url, &body).await;
            }
            (
                (ALLOCS.load(Ordering::Relaxed) - a0) as f64 / REQUESTS as f64,
                (BYTES.load(Ordering::Relaxed) - b0) as f64 / REQUESTS as f64,
            )
        });
        if base == 0.0 {
            base = allocs;
        }
        println!(
            "| {} | {allocs:.1} | {bytes:.0} | {:.2} |",
            kind.name(),
            allocs / base
        );
    }
}
