//! The registration API over HTTP or HTTPS (the gateway's HTTP listener).

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio_rustls::TlsConnector;

use super::https::Connector;
use super::{Answer, Registered};
use crate::backoff;
use crate::SdkError;

/// One gateway's HTTP registration API.
#[derive(Clone)]
pub(crate) struct HttpApi {
    base: String,
    client: Client<Connector, Full<Bytes>>,
    token: Option<String>,
    timeout: Duration,
}

/// Largest `Retry-After` honoured; beyond it the gateway is treated as down and retried on backoff.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

impl HttpApi {
    /// `base` is a validated `http://host:port` or `https://host:port` without a trailing slash; `tls`
    /// serves an `https://` one.
    pub(crate) fn new(
        base: String,
        token: Option<String>,
        timeout: Duration,
        tls: Option<TlsConnector>,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        HttpApi {
            base,
            client: Client::builder(TokioExecutor::new()).build(Connector::new(connector, tls)),
            token,
            timeout,
        }
    }

    /// The gateway's base URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Option<Duration>, Bytes), SdkError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| self.unreachable(e.to_string()))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| self.unreachable(error_chain(&e)))?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| backoff::retry_after(s, MAX_RETRY_AFTER));
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.unreachable(e.to_string()))?
                .to_bytes();
            Ok((status, retry_after, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| self.unreachable(format!("no answer within {:?}", self.timeout)))?
    }

    fn unreachable(&self, reason: String) -> SdkError {
        SdkError::Unreachable {
            gateway: self.base.clone(),
            reason,
        }
    }

    fn interpret<T>(
        &self,
        result: Result<(StatusCode, Option<Duration>, Bytes), SdkError>,
        ok: impl FnOnce(Bytes) -> Result<T, SdkError>,
    ) -> Answer<T> {
        match result {
            Err(e) => Answer::Err(e),
            Ok((status, _, body)) if status.is_success() => match ok(body) {
                Ok(v) => Answer::Ok(v),
                Err(e) => Answer::Err(e),
            },
            Ok((StatusCode::NOT_FOUND, _, _)) => Answer::NotFound,
            Ok((StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE, after, _)) => {
                Answer::Busy(after)
            }
            Ok((status, _, body)) => {
                let message = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                Answer::Err(SdkError::Rejected {
                    gateway: self.base.clone(),
                    status: status.as_u16(),
                    message,
                })
            }
        }
    }

    /// `POST /register`.
    pub(crate) async fn register(&self, body: &Bytes) -> Answer<Registered> {
        let result = self
            .call(Method::POST, "/register", Some(body.clone()))
            .await;
        self.interpret(result, |b| {
            serde_json::from_slice(&b).map_err(|e| SdkError::BadAnswer {
                gateway: self.base.clone(),
                reason: e.to_string(),
            })
        })
    }

    /// `PUT /registry/{service}/{id}/heartbeat`.
    pub(crate) async fn heartbeat(&self, service: &str, id: &str) -> Answer<()> {
        let result = self
            .call(
                Method::PUT,
                &format!("/registry/{service}/{id}/heartbeat"),
                None,
            )
            .await;
        self.interpret(result, |_| Ok(()))
    }

    /// `DELETE /registry/{service}/{id}`.
    pub(crate) async fn deregister(&self, service: &str, id: &str) -> Answer<()> {
        let result = self
            .call(Method::DELETE, &format!("/registry/{service}/{id}"), None)
            .await;
        self.interpret(result, |_| Ok(()))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
