//! The demo gRPC service `demo.v1.Echo`: unary, server-streaming, application errors, slow calls.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use registry_proto::demo::v1 as pb;
use tonic::{Code, Request, Response, Status};

use crate::faults::Faults;

/// The service, with its replica name and failure injection.
#[derive(Debug, Clone)]
pub struct EchoService {
    /// Replica name, in every answer and in the `x-replica` response header.
    pub name: Arc<str>,
    /// Failure injection: an injected failure is UNAVAILABLE.
    pub faults: Arc<Faults>,
}

impl EchoService {
    async fn inject(&self) -> Result<(), Status> {
        let latency = self.faults.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if self.faults.should_fail() {
            return Err(Status::unavailable(format!(
                "injected failure on {}",
                self.name
            )));
        }
        Ok(())
    }

    fn answer(&self, message: String) -> Response<pb::SayResponse> {
        let mut resp = Response::new(pb::SayResponse {
            message,
            replica: self.name.to_string(),
        });
        if let Ok(v) = self.name.parse() {
            resp.metadata_mut().insert("x-replica", v);
        }
        resp
    }
}

type SayStream = Pin<Box<dyn Stream<Item = Result<pb::SayResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::echo_server::Echo for EchoService {
    async fn say(&self, req: Request<pb::SayRequest>) -> Result<Response<pb::SayResponse>, Status> {
        self.inject().await?;
        // Echoed under its own key, so a test can tell what reached the replica from what the gateway
        // put on the answer.
        let seen = req.metadata().get("x-request-id").cloned();
        let via: Vec<_> = req.metadata().get_all("via").iter().cloned().collect();
        let mut resp = self.answer(req.into_inner().message);
        if let Some(id) = seen {
            resp.metadata_mut().insert("x-seen-request-id", id);
        }
        for v in via {
            resp.metadata_mut().append("x-seen-via", v);
        }
        Ok(resp)
    }

    type SayManyStream = SayStream;

    async fn say_many(
        &self,
        req: Request<pb::SayManyRequest>,
    ) -> Result<Response<SayStream>, Status> {
        self.inject().await?;
        let r = req.into_inner();
        let name = self.name.to_string();
        let count = r.count.min(10_000);
        let items = (0..count).map(move |i| {
            Ok(pb::SayResponse {
                message: format!("{} #{i}", r.message),
                replica: name.clone(),
            })
        });
        Ok(Response::new(Box::pin(futures_util::stream::iter(items))))
    }

    async fn fail(
        &self,
        req: Request<pb::FailRequest>,
    ) -> Result<Response<pb::SayResponse>, Status> {
        let r = req.into_inner();
        let mut status = Status::new(Code::from(r.code), r.message);
        if let Ok(v) = self.name.parse() {
            status.metadata_mut().insert("x-replica", v);
        }
        Err(status)
    }

    async fn collect(
        &self,
        req: Request<tonic::Streaming<pb::SayRequest>>,
    ) -> Result<Response<pb::SayResponse>, Status> {
        self.inject().await?;
        let mut stream = req.into_inner();
        let mut parts = Vec::new();
        while let Some(m) = stream.message().await? {
            parts.push(m.message);
        }
        Ok(self.answer(parts.join("+")))
    }

    type ChatStream = SayStream;

    async fn chat(
        &self,
        req: Request<tonic::Streaming<pb::SayRequest>>,
    ) -> Result<Response<SayStream>, Status> {
        self.inject().await?;
        let name = self.name.to_string();
        let replies = futures_util::stream::unfold(req.into_inner(), move |mut s| {
            let name = name.clone();
            async move {
                match s.message().await {
                    Ok(Some(m)) => Some((
                        Ok(pb::SayResponse {
                            message: format!("re: {}", m.message),
                            replica: name,
                        }),
                        s,
                    )),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), s)),
                }
            }
        });
        Ok(Response::new(Box::pin(replies)))
    }

    async fn slow(
        &self,
        req: Request<pb::SlowRequest>,
    ) -> Result<Response<pb::SayResponse>, Status> {
        let ms = req.into_inner().ms.min(600_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(self.answer(format!("slept {ms} ms")))
    }
}
