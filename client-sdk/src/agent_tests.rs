//! The agent's loop on a paused clock, against a scripted gateway on 127.0.0.1: the exact time of every
//! call it makes. The clock moves only when every task waits, so each time below is exact to the
//! millisecond (a wait's deadline is rounded up to one).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::agent::{self, Spec};
use crate::api::{GatewayApi, RegisterCall};
use crate::{Backoff, RegistrationState};

/// How the scripted gateway answers one call.
#[derive(Debug, Clone, Copy)]
enum Reply {
    /// 200: a registration gets the next id (`r1`, `r2`...), a 1 s heartbeat interval and a 3 s lease.
    Ok,
    /// This status, with a JSON error body.
    Status(u16),
    /// 503 with `Retry-After: <seconds>`.
    Busy(u64),
}

/// The gateway's side: the replies still to give (then `Ok`), and every call as `"<ms> <method> <path>"`.
struct Gateway {
    t0: Instant,
    script: Vec<Reply>,
    calls: Vec<String>,
    registered: u32,
}

impl Gateway {
    fn answer(&mut self, call: String) -> (u16, String, String) {
        let ms = self.t0.elapsed().as_millis();
        let reply = self
            .script
            .get(self.calls.len())
            .copied()
            .unwrap_or(Reply::Ok);
        let registering = call.starts_with("POST /register");
        self.calls.push(format!("{ms} {call}"));
        match reply {
            Reply::Ok if registering => {
                self.registered += 1;
                let id = self.registered;
                let body =
                    format!(r#"{{"id":"r{id}","heartbeat_interval_ms":1000,"lease_ttl_ms":3000}}"#);
                (200, String::new(), body)
            }
            Reply::Ok => (200, String::new(), String::new()),
            Reply::Status(s) => (s, String::new(), r#"{"message":"scripted"}"#.into()),
            Reply::Busy(after) => (503, format!("retry-after: {after}\r\n"), String::new()),
        }
    }
}

/// Serves HTTP/1.1 requests (keep-alive) on one connection from the agent.
async fn connection(stream: TcpStream, gateway: Arc<Mutex<Gateway>>) {
    let mut s = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0;
        loop {
            let mut header = String::new();
            s.read_line(&mut header).await.unwrap();
            if header == "\r\n" {
                break;
            }
            if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        s.read_exact(&mut body).await.unwrap();
        let call = line
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let (status, headers, body) = gateway.lock().unwrap().answer(call);
        let response = format!(
            "HTTP/1.1 {status} Scripted\r\ncontent-length: {}\r\n{headers}\r\n{body}",
            body.len()
        );
        s.get_mut().write_all(response.as_bytes()).await.unwrap();
    }
}

/// What one run showed.
struct Run {
    calls: Vec<String>,
    state: RegistrationState,
    ended: bool,
}

/// Runs the agent against a gateway answering `script` for `for_ms` of paused time.
async fn run(script: &[Reply], jitter: fn() -> f64, backoff: Backoff, for_ms: u64) -> Run {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let gateway = Arc::new(Mutex::new(Gateway {
        t0: Instant::now(),
        script: script.to_vec(),
        calls: Vec::new(),
        registered: 0,
    }));
    let server = {
        let gateway = Arc::clone(&gateway);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(connection(stream, Arc::clone(&gateway)));
            }
        })
    };
    let spec = Arc::new(Spec {
        service: "orders".into(),
        address: "http://127.0.0.1:9001".into(),
        call: RegisterCall {
            json: bytes::Bytes::from_static(b"{}"),
            #[cfg(feature = "grpc")]
            proto: Default::default(),
        },
        backoff,
        jitter,
    });
    let api = GatewayApi::http(base, None, Duration::from_secs(2), None);
    let (state, watch) = watch::channel(RegistrationState::Registering {
        attempts: 0,
        last_error: None,
    });
    let agent = tokio::spawn(agent::run(api, spec, state));
    tokio::time::sleep(Duration::from_millis(for_ms)).await;
    let ended = agent.is_finished();
    agent.abort();
    server.abort();
    let calls = std::mem::take(&mut gateway.lock().unwrap().calls);
    let state = watch.borrow().clone();
    Run {
        calls,
        state,
        ended,
    }
}

const HEARTBEAT_R1: &str = "PUT /registry/orders/r1/heartbeat";

fn at(ms: u64, call: &str) -> String {
    format!("{ms} {call}")
}

fn never() -> f64 {
    0.0
}

fn most() -> f64 {
    1.0
}

const BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(100),
    max: Duration::from_secs(5),
};

#[tokio::test(start_paused = true)]
async fn heartbeats_come_at_the_interval_less_at_most_a_fifth_of_it() {
    // No jitter: exactly every interval (1 s), never later.
    let r = run(&[], never, BACKOFF, 3_500).await;
    let expected = [
        at(0, "POST /register"),
        at(1_000, HEARTBEAT_R1),
        at(2_000, HEARTBEAT_R1),
        at(3_000, HEARTBEAT_R1),
    ];
    assert_eq!(r.calls, expected);
    assert_eq!(r.state.id(), Some("r1"));
    // The most jitter: a fifth early, every time.
    let r = run(&[], most, BACKOFF, 3_500).await;
    let expected = [
        at(0, "POST /register"),
        at(800, HEARTBEAT_R1),
        at(1_600, HEARTBEAT_R1),
        at(2_400, HEARTBEAT_R1),
        at(3_200, HEARTBEAT_R1),
    ];
    assert_eq!(r.calls, expected);
}

#[tokio::test(start_paused = true)]
async fn failed_heartbeats_back_off_doubling_but_never_wait_past_the_interval() {
    use Reply::{Ok, Status};
    // Five heartbeats answered 500, then the gateway is fine again.
    //   call:        register  hb1  hb2   hb3   hb4   hb5   hb6 (ok)  hb7
    //   at ms:              0  800  900  1100  1500  2300   3300     4100
    //   wait after:       800  100  200   400   800  1000    800
    // (backoff 100 ms doubling with the most jitter; the fifth, 1600 ms, is capped at the 1 s interval)
    let script = [
        Ok,
        Status(500),
        Status(500),
        Status(500),
        Status(500),
        Status(500),
    ];
    let r = run(&script, most, BACKOFF, 4_500).await;
    let times: Vec<u64> = [0, 800, 900, 1_100, 1_500, 2_300, 3_300, 4_100].into();
    let expected: Vec<String> = times
        .iter()
        .enumerate()
        .map(|(i, ms)| {
            at(
                *ms,
                if i == 0 {
                    "POST /register"
                } else {
                    HEARTBEAT_R1
                },
            )
        })
        .collect();
    assert_eq!(r.calls, expected);
    // Failed heartbeats never unregister: the replica id stays.
    assert_eq!(r.state.id(), Some("r1"));
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_answered_404_registers_again_at_once_and_heartbeats_the_new_id() {
    use Reply::{Ok, Status};
    let script = [Ok, Ok, Status(404)];
    let r = run(&script, most, BACKOFF, 3_000).await;
    let expected = [
        at(0, "POST /register"),
        at(800, HEARTBEAT_R1),
        at(1_600, HEARTBEAT_R1),
        // Forgotten (gateway restarted): registered again in the same instant, under a new id.
        at(1_600, "POST /register"),
        at(2_400, "PUT /registry/orders/r2/heartbeat"),
    ];
    assert_eq!(r.calls, expected);
    assert_eq!(r.state.id(), Some("r2"));
}

#[tokio::test(start_paused = true)]
async fn failed_registrations_back_off_up_to_the_cap() {
    use Reply::Status;
    // Backoff 100 ms doubling, capped at 500 ms; the most jitter.
    //   attempt:   1    2    3    4     5     6 (ok)
    //   at ms:     0  100  300  700  1200  1700      then the first heartbeat at 2500
    let backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_millis(500),
    };
    let script = [Status(503); 5];
    let r = run(&script, most, backoff, 2_600).await;
    let expected = [
        at(0, "POST /register"),
        at(100, "POST /register"),
        at(300, "POST /register"),
        at(700, "POST /register"),
        at(1_200, "POST /register"),
        at(1_700, "POST /register"),
        at(2_500, HEARTBEAT_R1),
    ];
    assert_eq!(r.calls, expected);
    assert!(r.state.is_registered());
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_but_a_heartbeat_never_waits_past_the_interval() {
    use Reply::{Busy, Ok};
    let script = [Busy(2), Ok, Busy(30)];
    let r = run(&script, most, BACKOFF, 4_700).await;
    let expected = [
        // Registration waits the whole Retry-After: 2 s.
        at(0, "POST /register"),
        at(2_000, "POST /register"),
        at(2_800, HEARTBEAT_R1),
        // A heartbeat told to wait 30 s comes back after the 1 s interval: the lease was sized for it.
        at(3_800, HEARTBEAT_R1),
        at(4_600, HEARTBEAT_R1),
    ];
    assert_eq!(r.calls, expected);
}

#[tokio::test(start_paused = true)]
async fn a_registration_refused_with_400_gives_up_for_good() {
    let r = run(&[Reply::Status(400)], most, BACKOFF, 60_000).await;
    assert_eq!(r.calls, [at(0, "POST /register")]);
    assert!(r.ended, "the loop ends");
    assert_eq!(
        r.state,
        RegistrationState::Failed {
            reason: "scripted".into()
        }
    );
}
