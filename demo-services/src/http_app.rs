//! The demo HTTP service's routes: hello, users, orders, echo, upload, download, status, slow, ws.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::json;

use crate::faults::Faults;

/// Per-process state.
#[derive(Debug)]
pub struct DemoState {
    /// Replica name, sent back in `x-replica` and in bodies.
    pub name: String,
    /// Failure injection.
    pub faults: Faults,
    /// Where `/orders` looks users up (the `users` service through the gateway), if anywhere.
    pub users_url: Option<String>,
}

/// Mounts the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/ping", web::get().to(ping))
        .route("/hello", web::get().to(hello))
        .route("/users", web::get().to(users))
        .route("/users/{id}", web::get().to(user))
        .route("/orders", web::get().to(orders))
        .route("/upload", web::post().to(upload))
        .route("/upload", web::put().to(upload))
        .route("/download", web::get().to(download))
        .route("/status/{code}", web::route().to(status))
        .route("/slow", web::get().to(slow))
        .route("/ws", web::get().to(crate::websocket::echo))
        .default_service(web::to(echo));
}

async fn inject(state: &DemoState) -> Option<HttpResponse> {
    let latency = state.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    state.faults.should_fail().then(|| {
        HttpResponse::InternalServerError()
            .insert_header(("x-replica", state.name.as_str()))
            .json(json!({ "error": "injected failure", "replica": state.name }))
    })
}

fn ok(state: &DemoState, body: serde_json::Value) -> HttpResponse {
    let delay = state.faults.body_latency();
    if delay.is_zero() {
        return HttpResponse::Ok()
            .insert_header(("x-replica", state.name.as_str()))
            .json(body);
    }
    // The head goes out now, the body after the delay.
    let bytes = Bytes::from(body.to_string());
    let len = bytes.len() as u64;
    let delayed = futures_util::stream::once(async move {
        tokio::time::sleep(delay).await;
        Ok::<_, std::convert::Infallible>(bytes)
    });
    HttpResponse::Ok()
        .insert_header(("x-replica", state.name.as_str()))
        .content_type("application/json")
        .no_chunking(len)
        .streaming(delayed)
}

async fn health(state: web::Data<Arc<DemoState>>) -> HttpResponse {
    ok(&state, json!({ "status": "ok", "replica": state.name }))
}

/// Two bytes, no JSON, no injection: the benchmark's backend route.
async fn ping() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

async fn hello(state: web::Data<Arc<DemoState>>) -> HttpResponse {
    if let Some(fail) = inject(&state).await {
        return fail;
    }
    ok(&state, json!({ "message": "hello", "replica": state.name }))
}

fn user_list() -> serde_json::Value {
    json!([
        { "id": 1, "name": "Ada Lovelace" },
        { "id": 2, "name": "Alan Turing" },
        { "id": 3, "name": "Grace Hopper" },
    ])
}

async fn users(state: web::Data<Arc<DemoState>>) -> HttpResponse {
    if let Some(fail) = inject(&state).await {
        return fail;
    }
    ok(
        &state,
        json!({ "users": user_list(), "replica": state.name }),
    )
}

async fn user(state: web::Data<Arc<DemoState>>, id: web::Path<u64>) -> HttpResponse {
    if let Some(fail) = inject(&state).await {
        return fail;
    }
    let id = id.into_inner();
    match user_list()
        .as_array()
        .and_then(|a| a.iter().find(|u| u["id"] == id).cloned())
    {
        Some(u) => ok(&state, json!({ "user": u, "replica": state.name })),
        None => HttpResponse::NotFound()
            .insert_header(("x-replica", state.name.as_str()))
            .json(json!({ "error": "no such user", "id": id })),
    }
}

/// Orders; with `--users-url`, each is joined with its user, fetched from the `users` service through the
/// gateway (a service-to-service call that gets the gateway's balancing and failover).
async fn orders(state: web::Data<Arc<DemoState>>, client: web::Data<awc::Client>) -> HttpResponse {
    if let Some(fail) = inject(&state).await {
        return fail;
    }
    let mut orders = vec![
        json!({ "id": 100, "user_id": 1, "item": "analytical engine", "qty": 1 }),
        json!({ "id": 101, "user_id": 3, "item": "compiler", "qty": 2 }),
    ];
    if let Some(users) = &state.users_url {
        for order in &mut orders {
            let url = format!("{users}/users/{}", order["user_id"]);
            order["user"] = match client
                .get(&url)
                .timeout(Duration::from_secs(5))
                .send()
                .await
            {
                Ok(mut resp) if resp.status().is_success() => {
                    match resp.json::<serde_json::Value>().await {
                        Ok(body) => {
                            json!({ "name": body["user"]["name"], "served_by": body["replica"] })
                        }
                        Err(e) => json!({ "error": e.to_string() }),
                    }
                }
                Ok(resp) => json!({ "error": format!("users answered {}", resp.status()) }),
                Err(e) => json!({ "error": e.to_string() }),
            };
        }
    }
    ok(&state, json!({ "orders": orders, "replica": state.name }))
}

/// Returns the request line, headers and body it received.
async fn echo(
    req: HttpRequest,
    mut body: web::Payload,
    state: web::Data<Arc<DemoState>>,
) -> HttpResponse {
    if let Some(fail) = inject(&state).await {
        return fail;
    }
    let mut buf = web::BytesMut::new();
    while let Some(Ok(chunk)) = body.next().await {
        buf.extend_from_slice(&chunk);
    }
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    ok(
        &state,
        json!({
            "replica": state.name,
            "method": req.method().as_str(),
            "path": req.uri().path(),
            "query": req.uri().query(),
            "version": format!("{:?}", req.version()),
            "headers": headers,
            "body": String::from_utf8_lossy(&buf),
            "body_len": buf.len(),
        }),
    )
}

/// FNV-1a 64 over a stream: lets a test check a large body arrived intact without keeping it.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}

/// FNV-1a 64 offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Counts and hashes the body as it streams in.
async fn upload(mut body: web::Payload, state: web::Data<Arc<DemoState>>) -> HttpResponse {
    if let Some(fail) = inject(&state).await {
        return fail;
    }
    let (mut len, mut hash) = (0u64, FNV_OFFSET);
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => {
                len += c.len() as u64;
                hash = fnv1a(hash, &c);
            }
            Err(e) => return HttpResponse::BadRequest().body(e.to_string()),
        }
    }
    ok(
        &state,
        json!({ "bytes": len, "fnv1a": format!("{hash:016x}"), "replica": state.name }),
    )
}

/// The byte at offset `i` of every download: a pattern a client can check without storing it.
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

#[derive(serde::Deserialize)]
struct DownloadQuery {
    bytes: u64,
}

/// Streams `?bytes=N` bytes of [`pattern_byte`], 64 KiB at a time, with a `Content-Length`.
async fn download(q: web::Query<DownloadQuery>, state: web::Data<Arc<DemoState>>) -> HttpResponse {
    let total = q.bytes;
    const CHUNK: u64 = 64 * 1024;
    let stream = futures_util::stream::unfold(0u64, move |offset| async move {
        if offset >= total {
            return None;
        }
        let n = CHUNK.min(total - offset);
        let chunk: Vec<u8> = (offset..offset + n).map(pattern_byte).collect();
        Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), offset + n))
    });
    HttpResponse::Ok()
        .insert_header(("x-replica", state.name.as_str()))
        .content_type("application/octet-stream")
        .no_chunking(total)
        .streaming(stream)
}

/// Answers with the status in the path (a 5xx here is an application answer, not injected).
async fn status(code: web::Path<u16>, state: web::Data<Arc<DemoState>>) -> HttpResponse {
    let code = StatusCode::from_u16(code.into_inner()).unwrap_or(StatusCode::BAD_REQUEST);
    HttpResponse::build(code)
        .insert_header(("x-replica", state.name.as_str()))
        .json(json!({ "status": code.as_u16(), "replica": state.name }))
}

#[derive(serde::Deserialize)]
struct SlowQuery {
    ms: u64,
}

/// Sleeps `?ms=` milliseconds, then answers.
async fn slow(q: web::Query<SlowQuery>, state: web::Data<Arc<DemoState>>) -> HttpResponse {
    tokio::time::sleep(Duration::from_millis(q.ms.min(600_000))).await;
    ok(&state, json!({ "slept_ms": q.ms, "replica": state.name }))
}
