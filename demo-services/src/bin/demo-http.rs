//! `demo-http`: a small HTTP backend with failure injection, for trying and testing the gateway.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use clap::Parser;
use demo_services::faults::{FaultConfig, Faults};
use demo_services::http_app::{self, DemoState};

/// Demo HTTP backend.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Port to listen on (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 9001)]
    port: u16,
    /// Interface to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Replica name, returned in `x-replica` and in bodies.
    #[arg(long, default_value = "demo")]
    name: String,
    /// Answer 500 on every Nth request (0: never).
    #[arg(long, default_value_t = 0)]
    fail_every: u64,
    /// Answer 500 with this probability (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Add this many milliseconds to every request.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.fail_rate) {
        eprintln!("demo-http: --fail-rate must be between 0.0 and 1.0");
        std::process::exit(2);
    }
    let state = Arc::new(DemoState {
        name: args.name.clone(),
        faults: Faults::new(FaultConfig {
            fail_every: args.fail_every,
            fail_rate: args.fail_rate,
            latency: Duration::from_millis(args.latency_ms),
        }),
    });
    let listener = std::net::TcpListener::bind((args.host, args.port))?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(Arc::clone(&state)))
            .configure(http_app::configure)
    })
    .workers(args.workers)
    .listen(listener)?
    .run();
    println!("demo-http {} listening on http://{addr}", args.name);
    server.await
}
