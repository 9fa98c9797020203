//! `registry-gateway`: parse flags and config, start logging, run until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use registry_gateway::config::ConfigError;
use registry_gateway::{Config, Gateway};

/// mimalloc: the proxy path allocates small, short-lived buffers on every request; measured in bench/proxy.sh.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Self-registering service-registry gateway.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address of the HTTP listener (proxy and admin API), overriding the config's `listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Address of a separate listener for the admin and registration API, overriding the config's
    /// `admin_listen`; `listen` then serves only proxied traffic and the health endpoints.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<std::net::SocketAddr>,
    /// Address of the gRPC listener (h2c), overriding the config's `grpc_listen`.
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<std::net::SocketAddr>,
    /// Shared store, overriding the config's `store`: `memory` or `redis://host:port/db`.
    #[arg(long, value_name = "STORE")]
    store: Option<String>,
    /// YAML config file (also `GATEWAY_CONFIG`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GATEWAY_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let mut config = match Config::load(args.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("registry-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(listen) = args.admin_listen {
        config.admin_listen = Some(listen);
    }
    if let Some(listen) = args.grpc_listen {
        config.grpc_listen = listen;
    }
    if let Some(store) = args.store {
        config.store = store;
        if let Err(e) = config.validate() {
            eprintln!("registry-gateway: {e}");
            return ExitCode::from(2);
        }
    }
    // `workers` sizes the whole gateway: the actix workers (HTTP) and this runtime (gRPC, background).
    let threads = config.worker_threads();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("registry-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    let gateway = match Gateway::start(config).await {
        Ok(g) => g,
        // A config the gateway refuses only once its listeners are known (a static replica that is one
        // of them): exit like any other config error.
        Err(e) if e.get_ref().is_some_and(|inner| inner.is::<ConfigError>()) => {
            eprintln!("registry-gateway: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("registry-gateway: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let admin = gateway
        .admin_addr()
        .map(|a| format!(" admin=http://{a}"))
        .unwrap_or_default();
    println!(
        "registry-gateway listening on http://{} grpc=http://{}{admin}",
        gateway.http_addr(),
        gateway.grpc_addr()
    );
    match gateway.run_until(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registry-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
