//! The SDK against a real gateway, started in-process on a port chosen by the OS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client_sdk::{Backoff, Registration, RegistrationState};
use registry_gateway::registry::Registry;
use registry_gateway::{Config, Gateway};
use tokio::sync::oneshot;

struct RunningGateway {
    url: String,
    addr: SocketAddr,
    registry: Arc<Registry>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningGateway {
    async fn start(listen: &str, env: &[(&str, &str)]) -> RunningGateway {
        let mut vars = vec![
            ("GATEWAY_LISTEN".to_owned(), listen.to_owned()),
            ("GATEWAY_WORKERS".into(), "1".into()),
            ("GATEWAY_GRPC_LISTEN".into(), "127.0.0.1:0".into()),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::load(None, vars).expect("config");
        let gw = Gateway::start(config).await.expect("gateway starts");
        let addr = gw.http_addr();
        let registry = Arc::clone(gw.registry());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(gw.run_until(async {
            let _ = rx.await;
        }));
        RunningGateway {
            url: format!("http://{addr}"),
            addr,
            registry,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = tokio::time::timeout(Duration::from_secs(15), &mut self.task).await;
    }

    fn ids(&self, service: &str) -> Vec<String> {
        self.registry
            .service(service)
            .map(|s| s.replicas().iter().map(|r| r.id().to_string()).collect())
            .unwrap_or_default()
    }
}

async fn eventually(deadline: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const FAST: Backoff = Backoff {
    base: Duration::from_millis(20),
    max: Duration::from_millis(300),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_on_start_and_heartbeats_outlive_the_lease() {
    let gw = RunningGateway::start(
        "127.0.0.1:0",
        &[
            ("GATEWAY_LEASE_TTL", "1s"),
            ("GATEWAY_LEASE_HEARTBEAT_INTERVAL", "200ms"),
        ],
    )
    .await;
    let reg = Registration::builder(&gw.url, "orders", "http://127.0.0.1:9")
        .metadata("version", "1.4.2")
        .start()
        .await
        .unwrap();
    // The first attempt is made inside start(): a service whose gateway is up starts registered.
    assert!(reg.is_registered(), "{:?}", reg.states());
    let id = reg.id().unwrap();
    assert_eq!(gw.ids("orders"), std::slice::from_ref(&id));
    let view = gw.registry.service("orders").unwrap().replicas()[0].view(Instant::now());
    assert_eq!(view.metadata["version"], "1.4.2");
    match &reg.states()[0].1 {
        RegistrationState::Registered {
            heartbeat_interval,
            lease_ttl,
            ..
        } => {
            assert_eq!(*heartbeat_interval, Duration::from_millis(200));
            assert_eq!(*lease_ttl, Duration::from_secs(1));
        }
        other => panic!("{other:?}"),
    }
    // Two and a half TTLs later the lease is still held by heartbeats, under the same id.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(gw.ids("orders"), std::slice::from_ref(&id));
    assert_eq!(reg.id(), Some(id));
    reg.deregister().await.unwrap();
    assert!(gw.ids("orders").is_empty());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_hears_from_the_replica_within_one_heartbeat_interval() {
    let env = [
        ("GATEWAY_LEASE_TTL", "3s"),
        ("GATEWAY_LEASE_HEARTBEAT_INTERVAL", "500ms"),
    ];
    let gw = RunningGateway::start("127.0.0.1:0", &env).await;
    let reg = Registration::builder(&gw.url, "orders", "http://127.0.0.1:9")
        .backoff(FAST)
        .start()
        .await
        .unwrap();
    let old_id = reg.id().unwrap();
    let addr = gw.addr;
    gw.stop().await;
    // Down for a moment: heartbeats fail and are retried on backoff.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gw = RunningGateway::start(&addr.to_string(), &env).await;
    let restarted = Instant::now();
    eventually(
        Duration::from_secs(5),
        "re-registration after restart",
        || gw.ids("orders").len() == 1,
    )
    .await;
    let took = restarted.elapsed();
    // One interval (500 ms, jittered early) plus the re-registration itself; generous for a loaded machine.
    assert!(took < Duration::from_millis(500 + 1_000), "took {took:?}");
    let new_id = gw.ids("orders")[0].clone();
    assert_ne!(new_id, old_id);
    eventually(Duration::from_secs(2), "handle sees the new id", || {
        reg.id() == Some(new_id.clone())
    })
    .await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_starting_before_its_gateway_registers_once_the_gateway_is_up() {
    // A port that was free a moment ago: nothing listens there yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let reg = Registration::builder(&url, "orders", "http://127.0.0.1:9")
        .backoff(FAST)
        .start()
        .await
        .unwrap();
    assert!(!reg.is_registered());
    let mut rx = reg.watch();
    tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(
            |s| matches!(s, RegistrationState::Registering { attempts, .. } if *attempts >= 2),
        ),
    )
    .await
    .expect("retrying")
    .unwrap();
    if let RegistrationState::Registering { last_error, .. } = &reg.states()[0].1 {
        assert!(
            last_error.as_deref().unwrap().contains("unreachable"),
            "{last_error:?}"
        );
    }
    let gw = RunningGateway::start(&format!("127.0.0.1:{port}"), &[]).await;
    assert!(
        reg.wait_registered(Duration::from_secs(5)).await,
        "{:?}",
        reg.states()
    );
    assert_eq!(gw.ids("orders").len(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_stops_heartbeats_so_the_lease_expires() {
    let gw = RunningGateway::start(
        "127.0.0.1:0",
        &[
            ("GATEWAY_LEASE_TTL", "1s"),
            ("GATEWAY_LEASE_HEARTBEAT_INTERVAL", "200ms"),
        ],
    )
    .await;
    let reg = Registration::builder(&gw.url, "orders", "http://127.0.0.1:9")
        .start()
        .await
        .unwrap();
    assert_eq!(gw.ids("orders").len(), 1);
    drop(reg);
    eventually(Duration::from_secs(5), "lease expiry", || {
        gw.ids("orders").is_empty()
    })
    .await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_several_gateways_and_permanent_refusals() {
    let a = RunningGateway::start(
        "127.0.0.1:0",
        &[("GATEWAY_AUTH_REGISTRATION_TOKEN", "s3cret")],
    )
    .await;
    let b = RunningGateway::start(
        "127.0.0.1:0",
        &[("GATEWAY_AUTH_REGISTRATION_TOKEN", "s3cret")],
    )
    .await;
    // Registered with every gateway given.
    let reg = Registration::builder(&a.url, "orders", "http://127.0.0.1:9")
        .gateway(&b.url)
        .token("s3cret")
        .start()
        .await
        .unwrap();
    assert!(reg.wait_registered(Duration::from_secs(5)).await);
    assert_eq!(reg.states().len(), 2);
    assert_eq!((a.ids("orders").len(), b.ids("orders").len()), (1, 1));
    reg.deregister().await.unwrap();
    assert_eq!((a.ids("orders").len(), b.ids("orders").len()), (0, 0));

    // Without the token: refused, retried, the 401 visible in the state.
    let no_token = Registration::builder(&a.url, "orders", "http://127.0.0.1:9")
        .backoff(FAST)
        .start()
        .await
        .unwrap();
    assert!(!no_token.is_registered());
    match &no_token.states()[0].1 {
        RegistrationState::Registering {
            last_error: Some(e),
            ..
        } => assert!(e.contains("401"), "{e}"),
        other => panic!("{other:?}"),
    }
    // A bad service name cannot be fixed by retrying: Failed, with the gateway's reason.
    let bad = Registration::builder(&a.url, "Bad_Name", "http://127.0.0.1:9")
        .token("s3cret")
        .start()
        .await
        .unwrap();
    match &bad.states()[0].1 {
        RegistrationState::Failed { reason } => assert!(reason.contains("DNS label"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Bad gateway URLs are refused before anything starts.
    assert!(
        Registration::builder("ftp://x:1", "orders", "http://127.0.0.1:9")
            .start()
            .await
            .is_err()
    );
    assert!(
        Registration::builder("not a url", "orders", "http://127.0.0.1:9")
            .start()
            .await
            .is_err()
    );
    a.stop().await;
    b.stop().await;
}
