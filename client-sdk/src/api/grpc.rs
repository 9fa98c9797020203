//! The registration API over gRPC (the gateway's gRPC listener, `registry.v1.Registry`).

use std::time::Duration;

use registry_proto::registry::v1 as pb;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use super::{Answer, Registered};
use crate::SdkError;

/// One gateway's gRPC registration API.
#[derive(Clone)]
pub(crate) struct GrpcApi {
    base: String,
    client: pb::registry_client::RegistryClient<Channel>,
    token: Option<String>,
}

impl GrpcApi {
    /// A lazily connected client of the gRPC listener at `base`.
    pub(crate) fn new(
        base: String,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Self, SdkError> {
        let endpoint = Endpoint::from_shared(base.clone())
            .map_err(|e| SdkError::InvalidGatewayUrl {
                url: base.clone(),
                reason: e.to_string(),
            })?
            .connect_timeout(timeout)
            .timeout(timeout);
        Ok(GrpcApi {
            client: pb::registry_client::RegistryClient::new(endpoint.connect_lazy()),
            base,
            token,
        })
    }

    /// The gateway's base URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        if let Some(t) = &self.token {
            if let Ok(v) = format!("Bearer {t}").parse() {
                req.metadata_mut().insert("authorization", v);
            }
        }
        req
    }

    fn answer<T>(&self, result: Result<T, Status>) -> Answer<T> {
        match result {
            Ok(v) => Answer::Ok(v),
            Err(s) => match s.code() {
                Code::NotFound => Answer::NotFound,
                Code::ResourceExhausted => Answer::Busy(None),
                Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled => {
                    Answer::Err(SdkError::Unreachable {
                        gateway: self.base.clone(),
                        reason: format!("{}: {}", s.code(), s.message()),
                    })
                }
                code => Answer::Err(SdkError::Rejected {
                    gateway: self.base.clone(),
                    status: http_equivalent(code),
                    message: s.message().to_owned(),
                }),
            },
        }
    }

    /// `Register`.
    pub(crate) async fn register(&self, msg: pb::RegisterRequest) -> Answer<Registered> {
        let result = self.client.clone().register(self.request(msg)).await;
        self.answer(result.map(|r| {
            let r = r.into_inner();
            Registered {
                id: r.id,
                heartbeat_interval_ms: r.heartbeat_interval_ms,
                lease_ttl_ms: r.lease_ttl_ms,
            }
        }))
    }

    /// `Heartbeat`.
    pub(crate) async fn heartbeat(&self, service: &str, id: &str) -> Answer<()> {
        let msg = pb::HeartbeatRequest {
            service: service.to_owned(),
            id: id.to_owned(),
        };
        let result = self.client.clone().heartbeat(self.request(msg)).await;
        self.answer(result.map(|_| ()))
    }

    /// `Deregister`.
    pub(crate) async fn deregister(&self, service: &str, id: &str) -> Answer<()> {
        let msg = pb::DeregisterRequest {
            service: service.to_owned(),
            id: id.to_owned(),
        };
        let result = self.client.clone().deregister(self.request(msg)).await;
        self.answer(result.map(|_| ()))
    }
}

/// The HTTP status the same refusal has on the HTTP API, so callers handle both alike.
fn http_equivalent(code: Code) -> u16 {
    match code {
        Code::InvalidArgument => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::FailedPrecondition => 409,
        _ => 500,
    }
}
