//! Pipelined batches to replicas (`upstream.pipeline`): concurrent GETs go out together on one
//! connection, each client gets its own answer (bodies of every size, HEAD, 204, 304), and a replica that
//! closes after an answer costs no request and no failure.

use std::time::Duration;

use e2e::http::register;
use e2e::raw::{Behaviour, RawClient, RawReplica, RawResponse};
use e2e::{demo, gateway, Client};
use tokio::task::JoinSet;

const WAIT: Duration = Duration::from_secs(30);
/// Client connections, each sending its requests one after another.
const CONNS: usize = 24;
/// Requests per connection.
const PER_CONN: usize = 12;

/// Sends `targets` on one keep-alive connection, one at a time, and returns each answer.
async fn one_connection(
    addr: String,
    targets: Vec<(String, String)>,
) -> Vec<(String, RawResponse)> {
    with_header(addr, targets, String::new()).await
}

/// [`one_connection`] with one more header line (`extra`, with its CRLF) on every request.
async fn with_header(
    addr: String,
    targets: Vec<(String, String)>,
    extra: String,
) -> Vec<(String, RawResponse)> {
    let mut conn = RawClient::connect(&addr).await;
    let mut out = Vec::new();
    for (method, target) in targets {
        conn.send(format!("{method} {target} HTTP/1.1\r\nHost: gw\r\n{extra}\r\n").as_bytes())
            .await
            .unwrap();
        let r = if method == "HEAD" {
            conn.read_bodyless_response(WAIT).await
        } else {
            conn.read_response(WAIT).await
        };
        let r = r.unwrap_or_else(|e| panic!("no answer to {method} {target}: {e:?}"));
        out.push((format!("{method} {target}"), r));
    }
    out
}

/// Every connection's requests, sent at once from `CONNS` connections.
async fn storm(
    addr: &str,
    plan: impl Fn(usize, usize) -> (String, String),
) -> Vec<(String, RawResponse)> {
    let mut set = JoinSet::new();
    for c in 0..CONNS {
        let targets = (0..PER_CONN).map(|i| plan(c, i)).collect();
        set.spawn(one_connection(addr.to_owned(), targets));
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.expect("a client task panicked"));
    }
    all
}

/// The value of the metric series `name` on the gateway at `gw` (0 when absent).
async fn metric(c: &Client, gw: &str, name: &str) -> f64 {
    let r = c.get(&format!("{gw}/metrics")).await;
    String::from_utf8_lossy(&r.body)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Checks that `r` is a 200 carrying the answer to `sent` itself (the replica echoes the target).
fn assert_own_answer(sent: &str, r: &RawResponse, what: &str) {
    assert_eq!(r.status, 200, "{what}, {sent}: {}", r.summary());
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        sent.trim_start_matches("GET /echo"),
        "{what}: {sent} got another's answer"
    );
}

/// Checks that every answer of a storm is the one to its own request.
fn assert_own_answers(answers: &[(String, RawResponse)], what: &str) {
    assert_eq!(answers.len(), CONNS * PER_CONN, "{what}");
    for (sent, r) in answers {
        assert_own_answer(sent, r, what);
    }
}

/// Rounds of concurrent requests until the replica has seen one written behind another (batching
/// depends on how requests fall into the gateway's event-loop turns), at most `rounds`; every answer of
/// every round is checked. Returns how many requests were written behind another.
async fn storm_until_batched(
    gw: &str,
    replica: &RawReplica,
    rounds: usize,
    plan: impl Fn(usize, usize) -> (String, String) + Copy,
) -> usize {
    let before = (replica.pipelined(), replica.seen());
    for round in 0..rounds {
        let answers = storm(gw, plan).await;
        assert_own_answers(&answers, &format!("round {round}"));
        if replica.pipelined() > before.0 {
            break;
        }
    }
    replica.pipelined() - before.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_share_a_connection_and_each_gets_its_own_answer() {
    let replica = RawReplica::start(Behaviour::EchoTarget {
        slow: Duration::ZERO,
    })
    .await;
    let c = Client::new();
    let plan = |c: usize, i: usize| ("GET".to_owned(), format!("/echo/c{c}/r{i}?q={c}-{i}"));

    let gw = gateway("upstream: { pipeline: 16 }\n");
    register(&c, &gw.url, "echo", &replica.url).await;
    let seen = replica.seen();
    let batched = storm_until_batched(&gw.addr, &replica, 10, plan).await;
    assert!(batched > 0, "no request was ever written behind another");
    let counted = metric(&c, &gw.url, "gateway_upstream_pipelined_requests_total").await;
    assert!(
        counted >= batched as f64,
        "the replica saw {batched} requests written behind another, /metrics says {counted}"
    );
    assert!(metric(&c, &gw.url, "gateway_upstream_pipeline_batches_total").await >= 1.0);
    assert_eq!(
        (replica.seen() - seen) % (CONNS * PER_CONN),
        0,
        "every request reached the replica exactly once"
    );
    drop(gw);

    // Off (the default): never.
    let gw = gateway("");
    register(&c, &gw.url, "echo", &replica.url).await;
    let before = replica.pipelined();
    assert_own_answers(&storm(&gw.addr, plan).await, "pipelining off");
    assert_eq!(replica.pipelined(), before, "pipelining is off by default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_holds_up_only_its_batch_and_past_the_head_timeout_the_others_go_alone() {
    let replica = RawReplica::start(Behaviour::EchoTarget {
        slow: Duration::from_secs(4),
    })
    .await;
    let c = Client::new();
    let gw = gateway(
        "upstream: { pipeline: 16, request_timeout: 1s }\nbreaker: { failure_threshold: 1000 }\neviction: { failure_threshold: 1000 }\nretry: { max_attempts: 1 }\n",
    );
    register(&c, &gw.url, "echo", &replica.url).await;
    // A quarter of the connections start with a slow request, sent at the same moment as the others'
    // fast ones: batches mix them, and fast answers wait behind slow ones.
    let mut set = JoinSet::new();
    for c in 0..CONNS {
        let targets = (0..4)
            .map(|i| {
                let path = if i == 0 && c % 4 == 0 { "slow" } else { "fast" };
                ("GET".to_owned(), format!("/echo/{path}/c{c}/r{i}"))
            })
            .collect();
        set.spawn(one_connection(gw.addr.clone(), targets));
    }
    let mut slow_timeouts = 0;
    while let Some(r) = set.join_next().await {
        for (sent, r) in r.expect("a client task panicked") {
            if sent.contains("/slow/") {
                // The replica takes 4 s, the head timeout is 1 s: the gateway's 504.
                assert_eq!(r.status, 504, "{sent}: {}", r.summary());
                slow_timeouts += 1;
            } else {
                assert_own_answer(&sent, &r, "behind a slow answer");
            }
        }
    }
    assert_eq!(slow_timeouts, CONNS / 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_of_every_shape_keep_their_framing_in_a_batch() {
    let gw = gateway("upstream: { pipeline: 32 }\n");
    let a = demo("a", &[]);
    let c = Client::new();
    register(&c, &gw.url, "files", &a.url).await;
    // Sizes from empty to several reads' worth, HEADs, 204 and 304 (no body), mixed on every connection.
    let sizes = [0u64, 1, 100, 16 * 1024, 70_000, 300_000];
    let answers = storm(&gw.addr, |c, i| match (c + i) % 5 {
        0 => (
            "HEAD".into(),
            format!("/files/download?bytes={}", sizes[i % sizes.len()]),
        ),
        1 => ("GET".into(), "/files/status/204".into()),
        2 => ("GET".into(), "/files/status/304".into()),
        _ => (
            "GET".into(),
            format!("/files/download?bytes={}", sizes[(c * 7 + i) % sizes.len()]),
        ),
    })
    .await;
    assert_eq!(answers.len(), CONNS * PER_CONN);
    for (sent, r) in &answers {
        let bytes: u64 = sent
            .split("bytes=")
            .nth(1)
            .map(|n| n.parse().unwrap())
            .unwrap_or(0);
        if sent.contains("/status/") {
            let code: u16 = sent.rsplit('/').next().unwrap().parse().unwrap();
            assert_eq!(r.status, code, "{sent}: {}", r.summary());
            assert!(r.body.is_empty(), "{sent}: a {code} with a body");
        } else if sent.starts_with("HEAD") {
            assert_eq!(r.status, 200, "{sent}: {}", r.summary());
            // The demo answers a HEAD with its echo's length (its download route is GET only).
            let announced: u64 = r.header("content-length").unwrap_or("0").parse().unwrap();
            assert!(announced > 0, "{sent}: {}", r.summary());
            assert!(r.body.is_empty(), "{sent}: a HEAD answer with a body");
        } else {
            assert_eq!(r.status, 200, "{sent}: {}", r.summary());
            assert_eq!(r.body.len() as u64, bytes, "{sent}");
            let intact = r
                .body
                .iter()
                .enumerate()
                .all(|(i, b)| *b == (i % 251) as u8);
            assert!(
                intact,
                "{sent}: the body is not the replica's: {:?}",
                String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
            );
        }
    }
    let reps = c.get(&format!("{}/registry/files", gw.url)).await.json();
    assert_eq!(reps["replicas"][0]["failures"], 0, "{reps}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_closes_after_each_answer_costs_no_request_and_no_failure() {
    for announce in [true, false] {
        let replica = RawReplica::start(Behaviour::EchoTargetThenClose { announce }).await;
        let gw = gateway("upstream: { pipeline: 16 }\n");
        let c = Client::new();
        register(&c, &gw.url, "echo", &replica.url).await;
        let answers = storm(&gw.addr, |c, i| ("GET".into(), format!("/echo/c{c}/r{i}"))).await;
        for (sent, r) in &answers {
            assert_own_answer(sent, r, &format!("announce {announce}"));
        }
        let reps = c.get(&format!("{}/registry/echo", gw.url)).await.json();
        let r = &reps["replicas"][0];
        assert_eq!(r["failures"], 0, "announce {announce}: {reps}");
        // Batches of more than one could only be answered in part: the rest went again alone.
        let batches = metric(&c, &gw.url, "gateway_upstream_pipeline_batches_total").await;
        let resent = metric(&c, &gw.url, "gateway_upstream_pipeline_resent_total").await;
        assert!(
            batches == 0.0 || resent >= batches,
            "announce {announce}: {batches} batches, {resent} resent"
        );
        assert_eq!(r["state"], "closed", "announce {announce}: {reps}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_reset_mid_batch_cost_the_others_nothing_but_a_resend() {
    use tokio::io::AsyncWriteExt;
    let replica = RawReplica::start(Behaviour::EchoTarget {
        slow: Duration::from_millis(600),
    })
    .await;
    let c = Client::new();
    let gw = gateway("upstream: { pipeline: 16, request_timeout: 10s }\n");
    register(&c, &gw.url, "echo", &replica.url).await;
    for round in 0..3 {
        // Sent at the same moment: slow requests, fast ones whose clients reset while they wait behind
        // the slow answers, and fast ones that read their answers.
        let mut readers = JoinSet::new();
        let mut leavers = Vec::new();
        for k in 0..CONNS {
            let target = match k % 3 {
                0 => format!("/echo/slow/r{round}/c{k}"),
                _ => format!("/echo/fast/r{round}/c{k}"),
            };
            if k % 3 == 1 {
                let mut s = tokio::net::TcpStream::connect(&gw.addr).await.unwrap();
                s.write_all(format!("GET {target} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
                leavers.push(s);
            } else {
                readers.spawn(one_connection(
                    gw.addr.clone(),
                    vec![("GET".to_owned(), target)],
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        for s in leavers {
            // A reset, not a half-close: their requests are over.
            s.set_zero_linger().unwrap();
            drop(s);
        }
        while let Some(r) = readers.join_next().await {
            for (sent, r) in r.expect("a client task panicked") {
                assert_own_answer(&sent, &r, &format!("round {round}"));
            }
        }
    }
    let reps = c.get(&format!("{}/registry/echo", gw.url)).await.json();
    assert_eq!(reps["replicas"][0]["failures"], 0, "{reps}");
    // 40-odd requests rode in batches in each run seen here; none at all would mean no batch formed.
    let pipelined = metric(&c, &gw.url, "gateway_upstream_pipelined_requests_total").await;
    assert!(pipelined > 0.0, "no batch formed in 3 rounds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_slower_than_the_budget_is_not_batched_once_its_answers_are_timed() {
    let replica = RawReplica::start(Behaviour::EchoTarget {
        slow: Duration::from_millis(40),
    })
    .await;
    let c = Client::new();
    let gw = gateway("upstream: { pipeline: 16, pipeline_budget: 2ms }\n");
    register(&c, &gw.url, "echo", &replica.url).await;
    let round = |r: usize| {
        let addr = gw.addr.clone();
        async move {
            let mut set = JoinSet::new();
            for k in 0..CONNS {
                set.spawn(one_connection(
                    addr.clone(),
                    vec![("GET".to_owned(), format!("/echo/slow/r{r}/c{k}"))],
                ));
            }
            while let Some(answers) = set.join_next().await {
                for (sent, r) in answers.expect("a client task panicked") {
                    assert_own_answer(&sent, &r, "slow replica");
                }
            }
        }
    };
    // Each worker learns the replica's answer time from its first answers (a first batch may form).
    for r in 0..3 {
        round(r).await;
    }
    let learned = replica.pipelined();
    for r in 3..8 {
        round(r).await;
    }
    // 40 ms answers against a 2 ms budget: nothing is written behind another any more.
    assert_eq!(
        replica.pipelined(),
        learned,
        "requests were still pipelined to a replica that answers in 40 ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_credentials_are_never_batched() {
    let replica = RawReplica::start(Behaviour::EchoTarget {
        slow: Duration::ZERO,
    })
    .await;
    let c = Client::new();
    let gw = gateway("upstream: { pipeline: 16 }\n");
    register(&c, &gw.url, "echo", &replica.url).await;
    // Per-user answers: a replica that framed a pipelined answer wrong would hand it to another user.
    for (round, header) in ["Authorization: Bearer user-{k}", "Cookie: session=user-{k}"]
        .iter()
        .enumerate()
    {
        for _ in 0..3 {
            let mut set = JoinSet::new();
            for k in 0..CONNS {
                let targets = (0..PER_CONN)
                    .map(|i| ("GET".to_owned(), format!("/echo/r{round}/c{k}/{i}")))
                    .collect();
                let extra = format!("{}\r\n", header.replace("{k}", &k.to_string()));
                set.spawn(with_header(gw.addr.clone(), targets, extra));
            }
            while let Some(answers) = set.join_next().await {
                for (sent, r) in answers.expect("a client task panicked") {
                    assert_eq!(r.status, 200, "{sent}: {}", r.summary());
                }
            }
        }
    }
    assert_eq!(
        replica.pipelined(),
        0,
        "a request with credentials was written behind another"
    );
    // The same traffic without credentials is batched (so the check above could fail).
    let batched = storm_until_batched(&gw.addr, &replica, 10, |c, i| {
        ("GET".to_owned(), format!("/echo/anon/c{c}/r{i}"))
    })
    .await;
    assert!(batched > 0, "no batch formed without credentials either");
}
