//! A Server-Sent Events client for tests: reads `event:`/`data:` messages off a streaming response as they
//! arrive.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::http::{body, Client};

/// One message: its `event:` name (`message` when absent) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `event:` field.
    pub name: String,
    /// `data:` field.
    pub data: String,
}

impl Event {
    /// The data as JSON (panics with the data when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("{} event data is not JSON ({e}): {}", self.name, self.data))
    }
}

/// An open event stream.
pub struct EventStream {
    /// Response status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: http::HeaderMap,
    body: hyper::body::Incoming,
    buf: String,
    /// Comment lines seen so far (`: keep-alive`).
    pub comments: Vec<String>,
    ended: bool,
}

impl EventStream {
    /// `GET url` with `headers`; the caller checks [`EventStream::status`].
    pub async fn open(client: &Client, url: &str, headers: &[(&str, &str)]) -> EventStream {
        let mut req = Request::get(url).header("accept", "text/event-stream");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = client
            .send(req.body(body(Full::new(Bytes::new()))).unwrap())
            .await;
        let (parts, body) = resp.into_parts();
        EventStream {
            status: parts.status,
            headers: parts.headers,
            body,
            buf: String::new(),
            comments: Vec::new(),
            ended: false,
        }
    }

    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The next complete message from what was read so far.
    fn parse_one(&mut self) -> Option<Event> {
        loop {
            let end = self.buf.find("\n\n")?;
            let block: String = self.buf.drain(..end + 2).collect();
            let (mut name, mut data, mut any) = (None, Vec::new(), false);
            for line in block.lines() {
                if let Some(comment) = line.strip_prefix(':') {
                    self.comments.push(comment.trim().to_owned());
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => name = Some(value.to_owned()),
                    "data" => {
                        data.push(value.to_owned());
                        any = true;
                    }
                    _ => {}
                }
            }
            if any {
                return Some(Event {
                    name: name.unwrap_or_else(|| "message".to_owned()),
                    data: data.join("\n"),
                });
            }
        }
    }

    /// The next message; `None` once the stream has ended.
    async fn read(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.parse_one() {
                return Some(e);
            }
            if self.ended {
                return None;
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.push_str(&String::from_utf8_lossy(&data));
                    }
                }
                Some(Err(_)) | None => self.ended = true,
            }
        }
    }

    /// The next message, waiting up to `within`; `None` when the stream ended first. Panics on timeout.
    pub async fn next(&mut self, within: Duration) -> Option<Event> {
        tokio::time::timeout(within, self.read())
            .await
            .unwrap_or_else(|_| panic!("no event within {within:?}"))
    }

    /// The next message named `name`, skipping others; panics when the stream ends or `within` passes.
    pub async fn next_named(&mut self, name: &str, within: Duration) -> Event {
        self.next_matching(within, &format!("a {name} event"), |e| e.name == name)
            .await
    }

    /// The next message for which `check` holds, skipping others; panics naming `what` when the stream ends
    /// or `within` passes.
    pub async fn next_matching(
        &mut self,
        within: Duration,
        what: &str,
        check: impl Fn(&Event) -> bool,
    ) -> Event {
        let find = async {
            while let Some(e) = self.read().await {
                if check(&e) {
                    return e;
                }
            }
            panic!("the stream ended before {what}")
        };
        tokio::time::timeout(within, find)
            .await
            .unwrap_or_else(|_| panic!("no {what} within {within:?}"))
    }

    /// Reads until the stream ends; true if it did within `within`.
    pub async fn ends_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, async { while self.read().await.is_some() {} })
            .await
            .is_ok()
    }
}
