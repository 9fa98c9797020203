//! The demo HTTP service's WebSocket echo (`GET /ws`): every text, binary or continuation frame comes back
//! as it was sent, a ping is answered with a pong, and a close is returned before the connection ends.
//!
//! The frame codec is actix-http's own (`actix_http::ws`, already built for awc): no new dependency.

use std::sync::Arc;

use actix_http::ws::{hash_key, OpCode, Parser};
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::http_app::DemoState;

/// Largest frame accepted (a demo: 1 MiB).
const MAX_FRAME: usize = 1 << 20;

/// `GET /ws`: the WebSocket handshake, then an echo of every frame.
pub async fn echo(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<Arc<DemoState>>,
) -> HttpResponse {
    let key = req.headers().get("sec-websocket-key").map(|k| k.as_bytes());
    let upgrade = req
        .headers()
        .get("upgrade")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let Some(key) = key.filter(|_| upgrade) else {
        return HttpResponse::BadRequest()
            .insert_header(("x-replica", state.name.as_str()))
            .body("a WebSocket handshake is expected here\n");
    };
    let accept = hash_key(key);
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    actix_web::rt::spawn(echo_frames(payload, tx));
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    HttpResponse::SwitchingProtocols()
        .upgrade("websocket")
        .insert_header(("sec-websocket-accept", &accept[..]))
        .insert_header(("x-replica", state.name.as_str()))
        .streaming(frames)
}

/// Reads the client's frames and sends each answer to `out`; ends after a close, a protocol error or the
/// client's end of stream.
async fn echo_frames(mut payload: web::Payload, out: mpsc::Sender<Bytes>) {
    let mut buf = BytesMut::new();
    while let Some(Ok(chunk)) = payload.next().await {
        buf.extend_from_slice(&chunk);
        loop {
            let (fin, op, data) = match Parser::parse(&mut buf, true, MAX_FRAME) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => return,
            };
            let data = data.map(BytesMut::freeze).unwrap_or_default();
            let mut frame = BytesMut::new();
            let (op, last) = match op {
                OpCode::Ping => (OpCode::Pong, false),
                OpCode::Pong => continue,
                OpCode::Close => (OpCode::Close, true),
                OpCode::Text | OpCode::Binary | OpCode::Continue => (op, false),
                OpCode::Bad => return,
            };
            Parser::write_message(&mut frame, data, op, fin || last, false);
            if out.send(frame.freeze()).await.is_err() || last {
                return;
            }
        }
    }
}
