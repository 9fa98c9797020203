//! Admin endpoint handlers: thin IO around the registry.

use actix_web::http::{header, Method};
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::auth::authorization;
use super::content_type::require_json;
use super::dto::{
    unix_ms, EvictedDto, HeartbeatResponse, RegisterRequest, RegisterResponse, RegistryDto,
    ReplicaDto, ServiceDto,
};
use super::inventory::{parse_filter, Inventory};
use super::AdminSettings;
use crate::clock;
use crate::error::GatewayError;
use crate::registry::{
    is_local_ip, Deregister, Heartbeat, Register, Registration, Registry, RegistryError, Replica,
    Service,
};
use crate::store::Shared;

type Reg = web::Data<std::sync::Arc<Registry>>;
type Settings = web::Data<AdminSettings>;

/// `Content-Type: application/json`, set before `.json(…)` on the busy answers (registration, heartbeat)
/// so that actix does not convert its `mime` value into a header value on every response.
const JSON: (header::HeaderName, header::HeaderValue) = (
    header::CONTENT_TYPE,
    header::HeaderValue::from_static("application/json"),
);

/// Register, heartbeat, deregister: the registration token, when one is set.
fn authorize(req: &HttpRequest, settings: &AdminSettings) -> Result<(), GatewayError> {
    settings.tokens.load().check_write(authorization(req))
}

/// Reads of the registry: open while no token is configured, else the read or registration token.
fn authorize_read(req: &HttpRequest, settings: &AdminSettings) -> Result<(), GatewayError> {
    settings.tokens.load().check_read(authorization(req))
}

/// Reads the whole body, refusing more than `limit` bytes without reading them all. A body that arrives
/// in one chunk (a registration nearly always does) is kept as it came, without a copy.
async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    // The first chunk as it came, until a second one makes a copy necessary.
    let mut only: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| GatewayError::BadBody(e.to_string()))?;
        let held = only.as_ref().map_or(buf.len(), Bytes::len);
        if held + chunk.len() > limit {
            return Err(GatewayError::PayloadTooLarge { limit });
        }
        if let Some(first) = only.take() {
            buf.extend_from_slice(&first);
            buf.extend_from_slice(&chunk);
        } else if buf.is_empty() {
            only = Some(chunk);
        } else {
            buf.extend_from_slice(&chunk);
        }
    }
    Ok(only.unwrap_or_else(|| buf.freeze()))
}

/// Parses and validates a `POST /register` body (no IO: the own-listener check is the caller's).
pub(crate) fn parse_registration(body: &[u8]) -> Result<Registration, GatewayError> {
    // The common case, a valid body, is read once and without tracking where the parser is; only a
    // body that fails is read again, to name the field at fault.
    match serde_json::from_slice::<RegisterRequest<'_>>(body) {
        Ok(req) => Registration::try_from(req),
        Err(e) => Err(explain_invalid(body, e)),
    }
}

/// Why `body`, which serde could not read as a [`RegisterRequest`], is refused: the field at fault
/// (named from the path the parser reached), or malformed JSON; `error` is what the first reading said.
fn explain_invalid(body: &[u8], error: serde_json::Error) -> GatewayError {
    let mut de = serde_json::Deserializer::from_slice(body);
    let e = match serde_path_to_error::deserialize::<_, RegisterRequest<'_>>(&mut de) {
        Ok(_) => match de.end() {
            // Not reached (the two readings agree), but never an accepted body.
            Ok(()) => return GatewayError::MalformedJson(error.to_string()),
            Err(e) => return GatewayError::MalformedJson(e.to_string()),
        },
        Err(e) => e,
    };
    let path = e.path().to_string();
    let inner = e.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data if path != "." => GatewayError::InvalidField {
            field: path,
            message: inner.to_string(),
        },
        serde_json::error::Category::Data => {
            // A missing field is reported at the root: name it from serde's message.
            let msg = inner.to_string();
            let field = msg.split('`').nth(1).unwrap_or("body").to_owned();
            GatewayError::InvalidField {
                field,
                message: msg,
            }
        }
        _ => GatewayError::MalformedJson(inner.to_string()),
    }
}

/// `POST /register`: 201 with a new id, or 200 with the same id when already registered.
pub(crate) async fn register(
    req: HttpRequest,
    payload: web::Payload,
    registry: Reg,
    settings: Settings,
) -> Result<HttpResponse, GatewayError> {
    authorize(&req, &settings)?;
    require_json(
        req.headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
    )?;
    let body_max = **settings.registration_body_max.load();
    let body = read_limited(&req, payload, body_max).await?;
    let registration = parse_registration(&body)?;
    settings
        .own_listeners
        .check(&registration.address, is_local_ip)
        .map_err(|e| GatewayError::InvalidField {
            field: "address".into(),
            message: e.to_string(),
        })?;
    let out = registry.execute(Register(registration), clock::now());
    let policy = registry.policy();
    let r = &out.replica;
    let dto = RegisterResponse {
        id: r.id(),
        service: r.service().as_str(),
        address: r.address().as_str(),
        heartbeat_interval_ms: policy.heartbeat_interval.as_millis() as u64,
        lease_ttl_ms: policy.lease_ttl.as_millis() as u64,
        on_probation: out.on_probation,
    };
    let mut resp = if out.created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    let mut location = String::with_capacity(
        "/registry/".len() + dto.service.len() + 1 + uuid::fmt::Hyphenated::LENGTH,
    );
    location.push_str("/registry/");
    location.push_str(dto.service);
    location.push('/');
    location.push_str(
        dto.id
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    Ok(resp
        .insert_header((header::LOCATION, location))
        .insert_header(JSON)
        .json(dto))
}

/// `PUT /registry/{service}/{id}/heartbeat`: renews the lease; 404 tells the SDK to register again.
fn heartbeat(
    req: &HttpRequest,
    (service, id): (&str, &str),
    registry: &Registry,
    settings: &AdminSettings,
) -> Result<HttpResponse, GatewayError> {
    authorize(req, settings)?;
    registry.execute(Heartbeat { service, id }, clock::now())?;
    let policy = registry.policy();
    Ok(HttpResponse::Ok()
        .insert_header(JSON)
        .json(HeartbeatResponse {
            heartbeat_interval_ms: policy.heartbeat_interval.as_millis() as u64,
            id,
            lease_ttl_ms: policy.lease_ttl.as_millis() as u64,
        }))
}

/// `DELETE /registry/{service}/{id}`: 204.
fn deregister(
    req: &HttpRequest,
    (service, id): (&str, &str),
    registry: &Registry,
    settings: &AdminSettings,
) -> Result<HttpResponse, GatewayError> {
    authorize(req, settings)?;
    registry.execute(Deregister { service, id }, clock::now())?;
    Ok(HttpResponse::NoContent().finish())
}

fn service_dto(svc: &Service, registry: &Registry) -> ServiceDto {
    let now = clock::now();
    let until = svc.preserving_until();
    let memory = registry.policy().probation_memory;
    ServiceDto {
        preserving_until_unix_ms: until.map(unix_ms),
        replicas: svc
            .replicas()
            .iter()
            .map(|r| ReplicaDto::new(r.view(now), until.is_some()))
            .collect(),
        evicted: svc
            .evicted(now, memory)
            .iter()
            .map(EvictedDto::from)
            .collect(),
        retries_refused_by_budget: svc.retries_refused(),
    }
}

/// Every service and replica, as `GET /registry` (and the event stream's `snapshot`) shows them.
pub(super) fn registry_dto(registry: &Registry, shared: &Shared) -> RegistryDto {
    let services = registry
        .services()
        .iter()
        .map(|s| (s.name().to_string(), service_dto(s, registry)))
        .collect();
    RegistryDto {
        store: shared.status(),
        services,
    }
}

/// One replica as `GET /registry` shows it (for the event stream's change events).
pub(super) fn replica_dto(registry: &Registry, r: &Replica, now: std::time::Instant) -> ReplicaDto {
    let holding = registry
        .service(r.service().as_str())
        .is_some_and(|s| s.preserving_until().is_some());
    ReplicaDto::new(r.view(now), holding)
}

/// `GET /registry`: every service and replica (or those the query's filters keep), streamed service by
/// service so that its memory stays bounded whatever the fleet's size.
pub(crate) async fn registry(
    req: HttpRequest,
    registry: Reg,
    shared: web::Data<Shared>,
    settings: Settings,
) -> Result<HttpResponse, GatewayError> {
    authorize_read(&req, &settings)?;
    let filter = parse_filter(req.query_string())?;
    let chunks = Inventory::new(std::sync::Arc::clone(&registry), shared.status(), filter);
    Ok(HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .streaming(futures_util::stream::iter(
            chunks.map(Ok::<_, std::convert::Infallible>),
        )))
}

/// `GET /registry/{service}`.
fn service(
    req: &HttpRequest,
    name: &str,
    registry: &Registry,
    settings: &AdminSettings,
) -> Result<HttpResponse, GatewayError> {
    authorize_read(req, settings)?;
    let svc = registry
        .service(name)
        .ok_or_else(|| RegistryError::UnknownService(name.to_owned()))?;
    // A service outlives its last replica: it answers with `replicas: []` (and its `evicted`).
    Ok(HttpResponse::Ok().json(service_dto(&svc, registry)))
}

/// `GET /registry/{service}/{id}`.
fn replica(
    req: &HttpRequest,
    (service, id): (&str, &str),
    registry: &Registry,
    settings: &AdminSettings,
) -> Result<HttpResponse, GatewayError> {
    authorize_read(req, settings)?;
    let unknown = || RegistryError::UnknownReplica {
        service: service.to_owned(),
        id: id.to_owned(),
    };
    let svc = registry.service(service).ok_or_else(unknown)?;
    let r = svc
        .replicas()
        .iter()
        .find(|r| r.id().to_string() == id)
        .cloned()
        .ok_or_else(unknown)?;
    let holding = svc.preserving_until().is_some();
    Ok(HttpResponse::Ok().json(ReplicaDto::new(r.view(clock::now()), holding)))
}

/// A path segment, when there is one and it is not empty.
fn segment(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// Every path under `/registry/` but the event stream: `/{service}` (GET), `/{service}/{id}` (GET, DELETE)
/// and `/{service}/{id}/heartbeat` (PUT), told apart by splitting the path (no pattern matching: the
/// heartbeat is the busiest request a large fleet sends). Other methods get 405, other paths 404.
pub(crate) async fn registry_path(
    req: HttpRequest,
    registry: Reg,
    settings: Settings,
) -> Result<HttpResponse, GatewayError> {
    let rest = req.match_info().unprocessed();
    let mut parts = rest.strip_prefix('/').unwrap_or(rest).split('/');
    let (a, b, c, more) = (parts.next(), parts.next(), parts.next(), parts.next());
    let method = req.method();
    let out = match (segment(a), segment(b), c, more) {
        (Some(name), None, None, None) if b.is_none() => {
            (method == Method::GET).then(|| service(&req, name, &registry, &settings))
        }
        (Some(s), Some(id), None, None) => match *method {
            Method::GET => Some(replica(&req, (s, id), &registry, &settings)),
            Method::DELETE => Some(deregister(&req, (s, id), &registry, &settings)),
            _ => None,
        },
        (Some(s), Some(id), Some("heartbeat"), None) => {
            (method == Method::PUT).then(|| heartbeat(&req, (s, id), &registry, &settings))
        }
        _ => return not_found(req).await,
    };
    match out {
        Some(out) => out,
        None => method_not_allowed(req).await,
    }
}

/// `GET /metrics`: every metric in the Prometheus text format. Protected like the registry reads.
pub(crate) async fn metrics(
    req: HttpRequest,
    registry: Reg,
    settings: Settings,
) -> Result<HttpResponse, GatewayError> {
    authorize_read(&req, &settings)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(registry.metrics().encode()))
}

/// `GET /healthz`: the process is up.
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: ready to route; `"status": "degraded"` while the shared store is unreachable.
///
/// A gateway whose shared store is down still answers 200, with `"status": "degraded"`: it keeps routing
/// on its last known registry, and failing readiness would take every gateway out of the load balancer
/// at once when Redis goes down, turning a store outage into a full outage.
pub(crate) async fn readyz(shared: web::Data<Shared>) -> HttpResponse {
    let store = shared.status();
    let status = if store.connected { "ready" } else { "degraded" };
    HttpResponse::Ok().json(serde_json::json!({ "status": status, "store": store }))
}

/// Any other method on an admin path.
pub(crate) async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, GatewayError> {
    Err(GatewayError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    })
}

/// Any other path under `/registry/`, and every unknown path on the admin listener.
pub(crate) async fn not_found(req: HttpRequest) -> Result<HttpResponse, GatewayError> {
    Err(GatewayError::NoRoute(req.path().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Protocol;

    fn field_of(body: &str) -> (String, String) {
        match parse_registration(body.as_bytes()) {
            Err(GatewayError::InvalidField { field, message }) => (field, message),
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn a_body_with_escapes_reads_as_one_without() {
        let plain =
            parse_registration(br#"{"service":"orders","address":"http://127.0.0.1:9001"}"#)
                .unwrap();
        let escaped = parse_registration(
            br#"{"service":"\u006frders","address":"http:\/\/127.0.0.1:9001","protocol":"h\u0074tp"}"#,
        )
        .unwrap();
        assert_eq!(escaped.service, plain.service);
        assert_eq!(escaped.address, plain.address);
        assert_eq!(escaped.protocol, Protocol::Http);
    }

    #[test]
    fn a_refused_body_names_its_field_as_before() {
        assert_eq!(
            field_of(r#"{"address":"http://127.0.0.1:9001"}"#).0,
            "service"
        );
        let (field, message) = field_of(r#"{"service":7,"address":"http://127.0.0.1:9001"}"#);
        assert_eq!(field, "service");
        assert!(message.contains("invalid type: integer `7`"), "{message}");
        assert_eq!(
            field_of(
                r#"{"service":"orders","address":"http://127.0.0.1:9001","metadata":{"k":1}}"#
            )
            .0,
            "metadata.k"
        );
        assert_eq!(
            field_of(r#"{"service":"orders","address":"http://127.0.0.1:9001","protocol":"ftp"}"#)
                .0,
            "protocol"
        );
        assert_eq!(
            field_of(r#"{"service":"orders","address":"http://127.0.0.1:0"}"#).0,
            "address"
        );
    }

    #[test]
    fn malformed_json_and_trailing_bytes_are_malformed() {
        for body in [
            "{",
            "",
            r#"{"service":"orders","address":"http://127.0.0.1:9001"} x"#,
        ] {
            assert!(
                matches!(
                    parse_registration(body.as_bytes()),
                    Err(GatewayError::MalformedJson(_))
                ),
                "{body:?}"
            );
        }
    }
}
