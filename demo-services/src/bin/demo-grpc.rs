//! `demo-grpc`: the demo gRPC backend (`demo.v1.Echo`) with failure injection; registers itself with
//! protocol `grpc` through the client SDK.

use std::sync::Arc;

use clap::Parser;
use client_sdk::Protocol;
use demo_services::faults::{init_tracing, FaultArgs};
use demo_services::grpc_app::EchoService;
use demo_services::registration::{deregister_on_shutdown, register, RegisterArgs};
use hyper_util::rt::{TokioExecutor, TokioIo};
use registry_proto::demo::v1::echo_server::EchoServer;
use tonic::codegen::Service as _;

/// Demo gRPC backend.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Port to listen on (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 9101)]
    port: u16,
    /// Interface to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Replica name, returned in every answer and in `x-replica`.
    #[arg(long, default_value = "echo")]
    name: String,
    /// Registry service to register as.
    #[arg(long, default_value = "echo")]
    service: String,
    /// gRPC services to announce (repeat for several).
    #[arg(
        long = "grpc-service",
        value_name = "NAME",
        default_value = "demo.v1.Echo"
    )]
    grpc_services: Vec<String>,
    #[command(flatten)]
    register: RegisterArgs,
    /// Register over the gateways' gRPC API: `--gateway` then names their gRPC listeners.
    #[arg(long)]
    via_grpc: bool,
    #[command(flatten)]
    faults: FaultArgs,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    init_tracing();
    let service = EchoService {
        name: Arc::from(args.name.as_str()),
        faults: Arc::new(args.faults.faults("demo-grpc")),
    };
    let listener = tokio::net::TcpListener::bind((args.host, args.port)).await?;
    let addr = listener.local_addr()?;
    // tonic's generated server is a tower service: serve it on hyper's HTTP/2 (h2c) connection directly.
    let echo = EchoServer::new(service);
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let echo = echo.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let mut echo = echo.clone();
                        async move { echo.call(req).await }
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    println!("demo-grpc {} listening on http://{addr}", args.name);

    let registration = register(
        "demo-grpc",
        &args.name,
        &args.service,
        addr,
        &args.register,
        |b| {
            let b = args
                .grpc_services
                .iter()
                .fold(b.protocol(Protocol::Grpc), |b, g| b.grpc_service(g));
            if args.via_grpc {
                b.via_grpc()
            } else {
                b
            }
        },
    )
    .await;
    // Deregister first, then stop serving.
    deregister_on_shutdown("demo-grpc", &args.name, registration).await;
    server.abort();
    Ok(())
}
