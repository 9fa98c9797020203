//! Self-registration of a demo service through the client SDK: the flags and steps both demos share.

use std::net::SocketAddr;

use client_sdk::{Registration, RegistrationBuilder};

/// Registration flags shared by `demo-http` and `demo-grpc`.
#[derive(clap::Args, Debug, Clone)]
pub struct RegisterArgs {
    /// Gateway to register with (repeat for several). Without it the service does not register.
    #[arg(long = "gateway", value_name = "URL")]
    pub gateways: Vec<String>,
    /// Address the gateway should use to reach this replica (default: http://<host>:<port>).
    #[arg(long, value_name = "URL")]
    pub advertise: Option<String>,
    /// PEM CA certificates trusted for `https://` gateways, on top of the platform's roots.
    #[arg(long, value_name = "FILE", env = "REGISTRATION_CA_FILE")]
    pub gateway_ca: Option<std::path::PathBuf>,
    /// Registration token, when the gateway requires one.
    #[arg(long, env = "REGISTRATION_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Registers the replica listening on `addr` as `service` with every gateway in `args` (none: no
/// registration). `customize` adds what one demo needs (protocol, gRPC services). Exits the process on
/// an invalid gateway URL.
pub async fn register(
    program: &str,
    name: &str,
    service: &str,
    addr: SocketAddr,
    args: &RegisterArgs,
    customize: impl FnOnce(RegistrationBuilder) -> RegistrationBuilder,
) -> Option<Registration> {
    let (first, rest) = args.gateways.split_first()?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        addr.ip().to_string()
    };
    let advertise = args
        .advertise
        .clone()
        .unwrap_or_else(|| format!("http://{host}:{}", addr.port()));
    let mut builder = Registration::builder(first, service, &advertise).metadata("name", name);
    for g in rest {
        builder = builder.gateway(g);
    }
    if let Some(t) = &args.token {
        builder = builder.token(t);
    }
    if let Some(ca) = &args.gateway_ca {
        builder = builder.ca_file(ca);
    }
    match customize(builder).start().await {
        Ok(r) => {
            let gateways = r
                .states()
                .into_iter()
                .map(|(gateway, _)| gateway)
                .collect::<Vec<_>>()
                .join(", ");
            println!("{program} {name} registers as {service} at {advertise} with {gateways}");
            Some(r)
        }
        Err(e) => {
            eprintln!("{program}: {e}");
            std::process::exit(2);
        }
    }
}

/// Waits for Ctrl-C or SIGTERM, then deregisters, so the gateway stops routing here before the caller
/// stops serving.
pub async fn deregister_on_shutdown(program: &str, name: &str, registration: Option<Registration>) {
    client_sdk::shutdown_signal().await;
    if let Some(r) = registration {
        match r.deregister().await {
            Ok(()) => println!("{program} {name} deregistered"),
            Err(e) => eprintln!("{program} {name}: deregistration failed: {e}"),
        }
    }
}
