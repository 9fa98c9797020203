//! `registry-memory`: registers N replicas over S services straight through the `Registry` API (the
//! addresses and names of `bench/registry.sh`) under a counting wrapper of the gateway's allocator
//! (mimalloc), and prints, per replica: the live heap bytes the registry asked for, the same rounded up to
//! mimalloc's size classes, the live allocations, and the growth of the process RSS. Then the live
//! allocations by size, largest share first, which says where the bytes are.
//!
//! Deterministic (one thread unless `--threads`), a few seconds in release:
//!
//! ```text
//! cargo run --release -p registry-memory -- [REPLICAS=200000] [SERVICES=1000] [--threads N] [--garbage]
//! ```
//!
//! `--heartbeats N` then renews N distinct replicas (spread over every service) four times round,
//! through `Registry::heartbeat` as the admin API calls it, and prints the time per renewal.
//!
//! `--garbage` also makes and drops the transient allocations of an HTTP registration around each one
//! (the JSON body parsed into a value, the answer serialised), as the gateway's workers do, to show
//! what interleaving short-lived with long-lived allocations does to RSS.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use registry_gateway::clock;
use registry_gateway::registry::{Heartbeat, Metadata, Protocol, Register, Registration, Registry};
use registry_gateway::Config;

/// Exact sizes are counted up to this many bytes; larger allocations by power of two.
const EXACT: usize = 4096;
const LARGE_BUCKETS: usize = 48;

/// Live allocations of each size (index: size / 8, rounded up) and of each power of two beyond.
static LIVE_BY_SIZE: [AtomicU64; EXACT / 8 + 1] = [const { AtomicU64::new(0) }; EXACT / 8 + 1];
static LIVE_BY_POW2: [AtomicU64; LARGE_BUCKETS] = [const { AtomicU64::new(0) }; LARGE_BUCKETS];
/// Live bytes of the allocations counted in `LIVE_BY_POW2`.
static LIVE_BYTES_BY_POW2: [AtomicU64; LARGE_BUCKETS] =
    [const { AtomicU64::new(0) }; LARGE_BUCKETS];
static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);
static LIVE_CLASS_BYTES: AtomicU64 = AtomicU64::new(0);
static LIVE_BLOCKS: AtomicU64 = AtomicU64::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes of blocks over 1 KiB freed (grown tables and vectors leave them behind).
static FREED_LARGE: AtomicU64 = AtomicU64::new(0);

/// mimalloc's size class of a small allocation: exact words up to 64 bytes, then four classes per
/// doubling (80, 96, 112, 128, 160, ...). An estimate of what each block really takes.
fn size_class(size: usize) -> usize {
    let words = size.div_ceil(8).max(1);
    if words <= 8 {
        return words * 8;
    }
    let top = usize::BITS - 1 - (words - 1).leading_zeros(); // highest bit of words - 1
    let step = 1usize << (top - 2);
    words.div_ceil(step) * step * 8
}

fn note(size: usize, sign: i64) {
    let add = |a: &AtomicU64, v: u64| {
        if sign > 0 {
            a.fetch_add(v, Ordering::Relaxed);
        } else {
            a.fetch_sub(v, Ordering::Relaxed);
        }
    };
    add(&LIVE_BYTES, size as u64);
    if sign < 0 && size > 1024 {
        FREED_LARGE.fetch_add(size as u64, Ordering::Relaxed);
    }
    add(&LIVE_BLOCKS, 1);
    if size <= EXACT {
        add(&LIVE_BY_SIZE[size.div_ceil(8)], 1);
        add(&LIVE_CLASS_BYTES, size_class(size) as u64);
    } else {
        let b = (usize::BITS - (size - 1).leading_zeros()) as usize;
        add(&LIVE_BY_POW2[b.min(LARGE_BUCKETS - 1)], 1);
        add(&LIVE_BYTES_BY_POW2[b.min(LARGE_BUCKETS - 1)], size as u64);
        add(&LIVE_CLASS_BYTES, size as u64);
    }
}

/// The gateway's allocator, counted.
struct Counting;

// SAFETY: every call is forwarded unchanged to mimalloc, which upholds the contract; the counters are
// atomics updated beside it.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !p.is_null() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            note(layout.size(), 1);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(layout.size(), -1);
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            note(layout.size(), 1);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            note(layout.size(), -1);
            note(new_size, 1);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Resident bytes of this process.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// What was counted at one moment.
#[derive(Clone, Copy)]
struct Counts {
    bytes: u64,
    class_bytes: u64,
    blocks: u64,
    allocations: u64,
    freed_large: u64,
    rss: u64,
}

fn counts() -> Counts {
    Counts {
        bytes: LIVE_BYTES.load(Ordering::Relaxed),
        class_bytes: LIVE_CLASS_BYTES.load(Ordering::Relaxed),
        blocks: LIVE_BLOCKS.load(Ordering::Relaxed),
        allocations: ALLOCATIONS.load(Ordering::Relaxed),
        freed_large: FREED_LARGE.load(Ordering::Relaxed),
        rss: rss(),
    }
}

fn histogram() -> Vec<(String, u64, u64)> {
    let mut rows = Vec::new();
    for (i, c) in LIVE_BY_SIZE.iter().enumerate() {
        let n = c.load(Ordering::Relaxed);
        if n > 0 {
            let lo = (i * 8).saturating_sub(7);
            rows.push((format!("{lo}-{} B", i * 8), n, n * (i as u64 * 8)));
        }
    }
    for (b, c) in LIVE_BY_POW2.iter().enumerate() {
        let n = c.load(Ordering::Relaxed);
        if n > 0 {
            let bytes = LIVE_BYTES_BY_POW2[b].load(Ordering::Relaxed);
            rows.push((
                format!("{}-{} KiB", (1u64 << b) / 2048, (1u64 << b) / 1024),
                n,
                bytes,
            ));
        }
    }
    rows
}

/// The body and the address of replica number `k` (1-based), as bench/registry.sh's Lua script makes them.
fn replica(k: u64, services: u64) -> (String, String) {
    (
        format!("svc-{}", (k - 1) % services),
        format!(
            "http://127.{}.{}.{}:20000",
            (k / 65536) % 256,
            (k / 256) % 256,
            k % 256
        ),
    )
}

fn register(registry: &Registry, k: u64, services: u64, garbage: bool) {
    let (service, address) = replica(k, services);
    let reg = if garbage {
        let body = format!(r#"{{"service":"{service}","address":"{address}"}}"#);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        Registration::try_new(
            v["service"].as_str().expect("service"),
            v["address"].as_str().expect("address"),
            Protocol::Http,
            Vec::new(),
            Metadata::new(),
        )
    } else {
        Registration::try_new(
            &service,
            &address,
            Protocol::Http,
            Vec::new(),
            Metadata::new(),
        )
    }
    .expect("a valid registration");
    let done = registry.execute(Register(reg), clock::now());
    if garbage {
        let answer = serde_json::json!({
            "id": done.replica.id().to_string(),
            "service": done.replica.service().as_str(),
            "address": done.replica.address().as_str(),
            "lease_ttl_ms": 3_600_000,
        });
        std::hint::black_box(answer.to_string());
    }
}

fn main() {
    let mut positional = Vec::new();
    let mut threads = 1u64;
    let mut garbage = false;
    let mut heartbeats = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => threads = args.next().and_then(|s| s.parse().ok()).unwrap_or(1),
            "--garbage" => garbage = true,
            "--heartbeats" => heartbeats = args.next().and_then(|s| s.parse().ok()).unwrap_or(0),
            _ => positional.push(a.parse::<u64>().expect("a number")),
        }
    }
    let n = positional.first().copied().unwrap_or(200_000);
    let services = positional.get(1).copied().unwrap_or(1000);

    let mut config = Config::default();
    config.lease.ttl = Duration::from_secs(3600);
    let registry = Arc::new(Registry::new(config.registry_policy()));
    // Statics, the first service, the metric families: not per replica.
    register(&registry, 1, 1, garbage);
    let before = counts();
    let per_thread = |t: u64| {
        let registry = Arc::clone(&registry);
        move || {
            let mut k = 2 + t;
            while k < n + 2 {
                register(&registry, k, services, garbage);
                k += threads;
            }
        }
    };
    if threads <= 1 {
        per_thread(0)();
    } else {
        let handles: Vec<_> = (0..threads)
            .map(|t| std::thread::spawn(per_thread(t)))
            .collect();
        for h in handles {
            h.join().expect("a registering thread");
        }
    }
    let after = counts();
    let per = |a: u64, b: u64| (b as f64 - a as f64) / n as f64;
    println!(
        "registry-memory: {n} replicas over {services} services, {threads} thread(s){}",
        if garbage {
            ", with request garbage"
        } else {
            ""
        }
    );
    {
        use registry_gateway::policy::{Breaker, FailureCause, Lease};
        use registry_gateway::registry::{ReplicaAddress, StateReason};
        use std::mem::size_of;
        println!(
            "size_of: Replica {} B (Breaker {}, Lease {}, ReplicaAddress {}, StateReason {}, FailureCause {})",
            size_of::<registry_gateway::registry::Replica>(),
            size_of::<Breaker>(),
            size_of::<Lease>(),
            size_of::<ReplicaAddress>(),
            size_of::<StateReason>(),
            size_of::<Option<FailureCause>>(),
        );
    }
    println!(
        "per replica: live heap {:.1} B requested, {:.1} B in size classes, {:.2} live allocations; \
         RSS {:.1} B; {:.2} allocations made, {:.1} B freed in blocks over 1 KiB",
        per(before.bytes, after.bytes),
        per(before.class_bytes, after.class_bytes),
        per(before.blocks, after.blocks),
        per(before.rss, after.rss),
        per(before.allocations, after.allocations),
        per(before.freed_large, after.freed_large)
    );
    println!(
        "totals: live heap {:.1} MiB, RSS {:.1} MiB",
        after.bytes as f64 / 1048576.0,
        after.rss as f64 / 1048576.0
    );
    let mut rows = histogram();
    rows.sort_by_key(|r| std::cmp::Reverse(r.2));
    println!("live allocations by size (whole process), largest share first:");
    println!(
        "{:>16} {:>10} {:>12} {:>10}",
        "size", "count", "bytes", "B/replica"
    );
    for (label, count, bytes) in rows.iter().take(16) {
        println!(
            "{label:>16} {count:>10} {bytes:>12} {:>10.1}",
            *bytes as f64 / n as f64
        );
    }
    if heartbeats > 0 {
        time_heartbeats(&registry, heartbeats);
    }
    drop(registry);
}

/// Renews `n` distinct replicas, taken evenly from every service, four times round; prints ns per renewal.
fn time_heartbeats(registry: &Registry, n: usize) {
    let services = registry.services();
    let per_service = n.div_ceil(services.len().max(1));
    let mut targets: Vec<(String, String)> = Vec::with_capacity(n);
    for svc in &services {
        for r in svc.replicas().iter().take(per_service) {
            targets.push((svc.name().as_str().to_owned(), r.id().to_string()));
        }
    }
    targets.truncate(n);
    // Visit them in an order that jumps between services and replicas, as 400k clients would.
    let stride = 7919 % targets.len().max(1);
    let rounds = 4;
    let cpu0 = cpu_ticks();
    let start = clock::now();
    let mut k = 0usize;
    for _ in 0..rounds * targets.len() {
        let (service, id) = &targets[k];
        registry
            .execute(Heartbeat { service, id }, clock::now())
            .expect("a registered replica");
        k = (k + stride.max(1)) % targets.len();
    }
    let took = clock::now().duration_since(start);
    let cpu = cpu_ticks() - cpu0;
    let count = (rounds * targets.len()) as f64;
    println!(
        "heartbeats: {} renewals of {} distinct replicas: {:.0} ns each ({:.0} ns of CPU)",
        rounds * targets.len(),
        targets.len(),
        took.as_nanos() as f64 / count,
        cpu as f64 * 1e7 / count
    );
}

/// CPU time of this process (user + system), in clock ticks of 10 ms.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    tick(11) + tick(12)
}
