//! `registry-gateway`: parse flags and config, start logging, run until Ctrl-C or SIGTERM; SIGHUP
//! reloads the config file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use registry_gateway::config::{ConfigError, ConfigSource, LogFormat, LogSection, Overrides};
use registry_gateway::logging::{Logging, LEGACY_FILTER_VAR};
use registry_gateway::server::{check_config, Reloader};
use registry_gateway::{banner, Gateway};

/// mimalloc: the proxy path allocates small, short-lived buffers on every request; measured in bench/proxy.sh.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Self-registering service-registry gateway.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address of the HTTP listener (proxy and admin API), overriding the config's `listen`;
    /// `127.0.0.1:8080` or `localhost:8080`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Address of a separate listener for the admin and registration API, overriding the config's
    /// `admin_listen`; `listen` then serves only proxied traffic and the health endpoints.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// Address of the gRPC listener (h2c), overriding the config's `grpc_listen`.
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<String>,
    /// Shared store, overriding the config's `store`: `memory` or `redis://host:port/db`.
    #[arg(long, value_name = "STORE")]
    store: Option<String>,
    /// YAML config file (also `GATEWAY_CONFIG`). SIGHUP reads it again.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the config (file, `GATEWAY_*` variables, flags) and exit: 0 when valid, 2 otherwise.
    /// Binds nothing.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let source = ConfigSource {
        file: args.config,
        // Only what the config reads; kept for reloads.
        env: std::env::vars()
            .filter(|(k, _)| k.starts_with("GATEWAY_"))
            .collect(),
        overrides: Overrides {
            listen: args.listen,
            admin_listen: args.admin_listen,
            grpc_listen: args.grpc_listen,
            store: args.store,
        },
    };
    let legacy_filter = std::env::var(LEGACY_FILTER_VAR).ok();
    let loaded = match source
        .load()
        .and_then(|l| check_config(&l.config).map(|()| l))
    {
        Ok(l) => l,
        Err(e) => return config_error(&source, &e),
    };
    if let Err(e) =
        registry_gateway::logging::check(&loaded.config.log.level, legacy_filter.as_deref())
    {
        eprintln!("registry-gateway: invalid config: {e}");
        return ExitCode::from(2);
    }
    if args.check_config {
        let from = match &loaded.file {
            Some(f) => f.display().to_string(),
            None => "defaults + environment".to_owned(),
        };
        println!("config OK: {from}");
        if !loaded.ignored_env.is_empty() {
            eprintln!(
                "registry-gateway: ignoring environment variables that are not config keys: {}",
                loaded.ignored_env.join(", ")
            );
        }
        return ExitCode::SUCCESS;
    }
    let logging = match Logging::install(&loaded.config.log, legacy_filter) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("registry-gateway: cannot start logging: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `workers` sizes the whole gateway: the actix workers (HTTP) and this runtime (gRPC, background).
    let threads = loaded.config.worker_threads();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(source, loaded, Arc::new(logging)));
    // Lets the log writer thread flush before the process ends.
    drop(runtime);
    code
}

/// A config error before logging is up: plain on stderr, or one JSON object when the config asked
/// for JSON (`GATEWAY_LOG_FORMAT` or the file's `log.format`, when they can be read).
fn config_error(source: &ConfigSource, e: &ConfigError) -> ExitCode {
    let log = LogSection {
        format: early_format(source),
        ..LogSection::default()
    };
    match log.format {
        LogFormat::Json if Logging::install(&log, None).is_ok() => {
            tracing::error!("{e}");
        }
        _ => eprintln!("registry-gateway: {e}"),
    }
    ExitCode::from(2)
}

/// `log.format` as far as it can be told from a config that failed to load.
fn early_format(source: &ConfigSource) -> LogFormat {
    let env = |k: &str| {
        source
            .env
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let from_file = || {
        let path = source
            .file
            .clone()
            .or_else(|| env("GATEWAY_CONFIG").map(PathBuf::from))?;
        let yaml: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        yaml.get("log")?.get("format")?.as_str().map(str::to_owned)
    };
    match env("GATEWAY_LOG_FORMAT").or_else(from_file).as_deref() {
        Some("json") => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

async fn run(
    source: ConfigSource,
    loaded: registry_gateway::config::Loaded,
    logging: Arc<Logging>,
) -> ExitCode {
    // Before anything else, so that a SIGHUP during start-up does not end the process.
    let hangups = hangup_signal();
    if !loaded.ignored_env.is_empty() {
        tracing::warn!(
            "ignoring environment variables that are not config keys: {} (Kubernetes sets such \
             GATEWAY_* variables for a Service named gateway; a misspelt key lands here too)",
            loaded.ignored_env.join(", ")
        );
    }
    let config = loaded.config.clone();
    let gateway = match Gateway::start(loaded.config).await {
        Ok(g) => g,
        // A config the gateway refuses only once its listeners are known (a static replica that is one
        // of them): exit like any other config error.
        Err(e) if e.get_ref().is_some_and(|inner| inner.is::<ConfigError>()) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        "registry-gateway {}: {}, store {}, {} workers",
        env!("CARGO_PKG_VERSION"),
        banner::source(loaded.file.as_deref(), &loaded.applied_env),
        config.store,
        config.worker_threads(),
    );
    tracing::info!(
        max_connections = gateway.max_connections(),
        instance_id = %gateway.instance_id(),
        "{}",
        banner::listening(gateway.http_addr(), gateway.grpc_addr(), gateway.admin_addr())
    );
    tracing::info!("{}", banner::thresholds(&config));
    if let Some(hangups) = hangups {
        tokio::spawn(reload_on_hangup(
            hangups,
            source,
            gateway.reloader(),
            Arc::clone(&logging),
        ));
    }
    tokio::spawn(report_dropped_lines(logging));
    match gateway.run_until(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = ();

fn hangup_signal() -> Option<Hangups> {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("cannot handle SIGHUP, config reload is off: {e}");
                None
            }
        }
    }
    #[cfg(not(unix))]
    None
}

/// Reads the config again at every SIGHUP and applies it; a config that fails leaves the running one.
#[cfg(unix)]
async fn reload_on_hangup(
    mut hangups: Hangups,
    source: ConfigSource,
    reloader: Reloader,
    logging: Arc<Logging>,
) {
    while hangups.recv().await.is_some() {
        reload(&source, &reloader, &logging);
    }
}

#[cfg(not(unix))]
async fn reload_on_hangup(_: Hangups, _: ConfigSource, _: Reloader, _: Arc<Logging>) {}

fn reload(source: &ConfigSource, reloader: &Reloader, logging: &Logging) {
    let keep = "the running config stays in force";
    let loaded = match source
        .load()
        .and_then(|l| check_config(&l.config).map(|()| l))
    {
        Ok(l) => l,
        Err(e) => return tracing::error!("config reload failed, {keep}: {e}"),
    };
    let log = loaded.config.log.clone();
    let diff = match reloader.apply(loaded.config) {
        Ok(d) => d,
        Err(e) => return tracing::error!("config reload failed, {keep}: {e}"),
    };
    if let Err(e) = logging.apply(&log) {
        tracing::error!("config reload: log settings not applied: {e}");
    }
    for c in &diff.needs_restart {
        tracing::warn!(
            key = c.key,
            "{} changed in the file: needs a restart (still using {})",
            c.key,
            c.old
        );
    }
    if logging.level_is_overridden() && diff.reloaded.iter().any(|c| c.key == "log.level") {
        tracing::warn!("log.level changed in the file, but {LEGACY_FILTER_VAR} overrides it");
    }
    let from = banner::source(loaded.file.as_deref(), &loaded.applied_env);
    tracing::info!("config reloaded ({from}): {}", diff.summary());
}

/// Warns when the log writer had to drop lines (stdout not read fast enough), at most every 10 s.
async fn report_dropped_lines(logging: Arc<Logging>) {
    let counter = logging.dropped();
    let mut reported = 0;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        tick.tick().await;
        let dropped = counter.dropped_lines();
        if dropped > reported {
            tracing::warn!(
                dropped = dropped - reported,
                "{} log lines dropped: stdout is read slower than the gateway writes",
                dropped - reported
            );
            reported = dropped;
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
