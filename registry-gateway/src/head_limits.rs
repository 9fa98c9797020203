//! Request-head limits for every route: a request target longer than `limits.max_uri_bytes` is answered
//! 414 and a head larger than `limits.max_header_bytes` 431, before any handler (or replica) sees it.

use std::future::{ready, Ready};

use actix_web::body::EitherBody;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::{Error, ResponseError};
use futures_util::future::Either;

use crate::error::GatewayError;

/// The limits; as an actix middleware factory, see [`LiveHeadLimits`].
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Longest request target (path and query), in bytes.
    pub max_uri_bytes: usize,
    /// Largest head (request line and headers, as sent), in bytes.
    pub max_header_bytes: usize,
}

impl HeadLimits {
    /// Which limit a head breaks, if any. `uri` is the request target; `headers` the name/value pairs.
    pub fn check<'a>(
        &self,
        method: &str,
        uri: &str,
        headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<(), GatewayError> {
        if uri.len() > self.max_uri_bytes {
            return Err(GatewayError::UriTooLong {
                limit: self.max_uri_bytes,
            });
        }
        // "METHOD target HTTP/1.1\r\n", then "name: value\r\n" per header.
        let mut size = method.len() + uri.len() + 11;
        for (name, value) in headers {
            size += name.len() + value.len() + 4;
            if size > self.max_header_bytes {
                return Err(GatewayError::HeaderTooLarge {
                    limit: self.max_header_bytes,
                });
            }
        }
        Ok(())
    }
}

/// The middleware: checks each request against the limits in force (a config reload replaces them).
#[derive(Debug, Clone)]
pub struct LiveHeadLimits(pub crate::live::Live<HeadLimits>);

impl<S, B> Transform<S, ServiceRequest> for LiveHeadLimits
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = HeadLimitsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(HeadLimitsService {
            service,
            limits: self.0.clone(),
        }))
    }
}

/// The middleware's service.
pub struct HeadLimitsService<S> {
    service: S,
    limits: crate::live::Live<HeadLimits>,
}

type CallFuture<S, B> = Either<
    futures_util::future::Map<
        <S as Service<ServiceRequest>>::Future,
        fn(Result<ServiceResponse<B>, Error>) -> Result<ServiceResponse<EitherBody<B>>, Error>,
    >,
    Ready<Result<ServiceResponse<EitherBody<B>>, Error>>,
>;

impl<S, B> Service<ServiceRequest> for HeadLimitsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = CallFuture<S, B>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        use futures_util::FutureExt;
        let uri = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let verdict = self.limits.load().check(
            req.method().as_str(),
            uri,
            req.headers()
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
        );
        match verdict {
            Ok(()) => Either::Left(self.service.call(req).map(
                (|r: Result<ServiceResponse<B>, Error>| r.map(ServiceResponse::map_into_left_body))
                    as fn(_) -> _,
            )),
            Err(e) => {
                let resp = e.error_response().map_into_right_body();
                Either::Right(ready(Ok(req.into_response(resp))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: HeadLimits = HeadLimits {
        max_uri_bytes: 100,
        max_header_bytes: 200,
    };

    #[test]
    fn long_targets_are_414_and_large_heads_431() {
        let small: [(&str, &[u8]); 1] = [("host", b"gw")];
        assert!(L.check("GET", "/svc/x", small.into_iter()).is_ok());
        let long = format!("/{}", "a".repeat(100));
        assert!(matches!(
            L.check("GET", &long, small.into_iter()),
            Err(GatewayError::UriTooLong { limit: 100 })
        ));
        let big = vec![b'x'; 180];
        let headers: [(&str, &[u8]); 2] = [("host", b"gw"), ("x-big", &big)];
        assert!(matches!(
            L.check("GET", "/svc/x", headers.into_iter()),
            Err(GatewayError::HeaderTooLarge { limit: 200 })
        ));
        // many small headers add up
        let many: Vec<(&str, &[u8])> = (0..20).map(|_| ("x-a", &b"12345"[..])).collect();
        assert!(L.check("GET", "/", many.into_iter()).is_err());
    }
}
