//! `demo-http`: a small HTTP backend with failure injection that registers itself through the client SDK.

use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use clap::Parser;
use demo_services::faults::{init_tracing, FaultArgs};
use demo_services::http_app::{self, DemoState};
use demo_services::registration::{deregister_on_shutdown, register, RegisterArgs};

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
    /// Service to register as.
    #[arg(long, default_value = "demo")]
    service: String,
    #[command(flatten)]
    register: RegisterArgs,
    /// Base URL of the users service, for `/orders` to join users (e.g. http://127.0.0.1:8080/users).
    #[arg(long, value_name = "URL")]
    users_url: Option<String>,
    #[command(flatten)]
    faults: FaultArgs,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    init_tracing();
    let state = Arc::new(DemoState {
        name: args.name.clone(),
        faults: args.faults.faults("demo-http"),
        users_url: args.users_url.clone(),
    });
    let listener = std::net::TcpListener::bind((args.host, args.port))?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(Arc::clone(&state)))
            // awc's client is per worker thread (it is !Send); it pools connections to the gateway.
            .app_data(web::Data::new(awc::Client::default()))
            .configure(http_app::configure)
    })
    .workers(args.workers)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    let serving = tokio::spawn(server);
    println!("demo-http {} listening on http://{addr}", args.name);

    let registration = register(
        "demo-http",
        &args.name,
        &args.service,
        addr,
        &args.register,
        |b| b,
    )
    .await;
    // Deregister first, then stop serving: the gateway stops routing here before the server goes away.
    deregister_on_shutdown("demo-http", &args.name, registration).await;
    handle.stop(true).await;
    let _ = serving.await;
    Ok(())
}
