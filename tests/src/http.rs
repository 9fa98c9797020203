//! A small HTTP/1.1 client for tests, over hyper.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client as HyperClient};
use hyper_util::rt::TokioExecutor;

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A buffered response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Response {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A pooled keep-alive client.
#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Body>,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

/// Boxes any body for [`Client::send`].
pub fn body<B>(b: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    b.map_err(Into::into).boxed()
}

impl Client {
    /// A new client.
    pub fn new() -> Self {
        Client {
            inner: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends `req` and returns the streaming response.
    pub async fn send(&self, req: Request<Body>) -> hyper::Response<hyper::body::Incoming> {
        let uri = req.uri().clone();
        self.inner
            .request(req)
            .await
            .unwrap_or_else(|e| panic!("request to {uri} failed: {e:?}"))
    }

    /// Sends a request with a buffered body and headers, and buffers the response.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        data: impl Into<Bytes>,
    ) -> Response {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(body(Full::new(data.into()))).expect("request");
        let resp = self.send(req).await;
        let (parts, incoming) = resp.into_parts();
        let body = incoming.collect().await.expect("response body").to_bytes();
        Response {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// GET.
    pub async fn get(&self, url: &str) -> Response {
        self.request(Method::GET, url, &[], Bytes::new()).await
    }

    /// POST a JSON value.
    pub async fn post_json(&self, url: &str, value: &serde_json::Value) -> Response {
        self.request(
            Method::POST,
            url,
            &[("content-type", "application/json")],
            value.to_string(),
        )
        .await
    }

    /// POST raw bytes.
    pub async fn post(&self, url: &str, data: impl Into<Bytes>) -> Response {
        self.request(Method::POST, url, &[], data).await
    }

    /// PUT with no body.
    pub async fn put(&self, url: &str) -> Response {
        self.request(Method::PUT, url, &[], Bytes::new()).await
    }

    /// DELETE.
    pub async fn delete(&self, url: &str) -> Response {
        self.request(Method::DELETE, url, &[], Bytes::new()).await
    }
}

/// Registers `address` as a replica of `service` on the gateway at `gw`; returns the replica id.
pub async fn register(client: &Client, gw: &str, service: &str, address: &str) -> String {
    let r = client
        .post_json(
            &format!("{gw}/register"),
            &serde_json::json!({ "service": service, "address": address }),
        )
        .await;
    assert!(
        r.status.is_success(),
        "register {service} {address}: {} {:?}",
        r.status,
        r.body
    );
    r.json()["id"].as_str().expect("id").to_owned()
}

/// The registry's view of the replica at `address` in `service` (`GET /registry/{service}`), or `None` when
/// it is not registered (or the service is unknown).
pub async fn replica_view(
    client: &Client,
    gw: &str,
    service: &str,
    address: &str,
) -> Option<serde_json::Value> {
    let r = client.get(&format!("{gw}/registry/{service}")).await;
    if !r.status.is_success() {
        return None;
    }
    r.json()["replicas"]
        .as_array()?
        .iter()
        .find(|r| r["address"] == address)
        .cloned()
}

/// A replica's counters as `GET /registry/{service}` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Breaker state: `closed`, `open` or `half_open`.
    pub state: String,
    /// Failures since the last success.
    pub consecutive_failures: u64,
    /// Failures ever recorded.
    pub failures: u64,
    /// Requests ever sent to it.
    pub requests: u64,
}

impl Health {
    /// Closed, with no failure ever recorded.
    pub fn is_clean(&self) -> bool {
        self.state == "closed" && self.consecutive_failures == 0 && self.failures == 0
    }
}

/// The counters of the replica at `address` in `service`, or `None` when it is not registered.
pub async fn health(client: &Client, gw: &str, service: &str, address: &str) -> Option<Health> {
    let v = replica_view(client, gw, service, address).await?;
    Some(Health {
        state: v["state"].as_str().unwrap_or("?").to_owned(),
        consecutive_failures: v["consecutive_failures"].as_u64().unwrap_or(u64::MAX),
        failures: v["failures"].as_u64().unwrap_or(u64::MAX),
        requests: v["requests"].as_u64().unwrap_or(u64::MAX),
    })
}
