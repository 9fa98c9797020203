//! Admin HTTP API (actix-web): register, heartbeat, deregister, inspect the registry, health, the event
//! stream and the dashboard.

mod auth;
mod content_type;
pub(crate) mod dto;
mod events;
pub(crate) mod handlers;
mod inventory;
mod ui;

use actix_web::web;

pub use auth::{ApiTokens, RegistrationToken};
pub use events::StreamShutdown;

use crate::registry::OwnListeners;

/// Admin API settings.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Bearer tokens: the registration token for writes, the read token (or the registration token)
    /// for reads of the registry. Replaced by a config reload.
    pub tokens: crate::live::Live<ApiTokens>,
    /// Largest accepted `POST /register` body. Replaced by a config reload.
    pub registration_body_max: crate::live::Live<usize>,
    /// The gateway's own listeners: registering one of them as a replica is refused.
    pub own_listeners: OwnListeners,
}

/// Mounts the admin and registration API, the dashboard and the health endpoints, on a listener that also
/// proxies: every other path goes to the proxy (mounted by the caller as default service).
///
/// The handlers read [`AdminSettings`], the registry, the shared store and a [`StreamShutdown`] as app data.
pub fn configure(cfg: &mut web::ServiceConfig) {
    configure_api(cfg);
    ui::configure(cfg);
    configure_health(cfg);
}

/// Mounts everything for a listener that serves only the admin API (`admin_listen`): the API, the
/// health endpoints, and a JSON 404 for every other path.
pub fn configure_admin_listener(cfg: &mut web::ServiceConfig) {
    configure(cfg);
    cfg.default_service(web::to(handlers::not_found));
}

/// Mounts `/healthz`, `/readyz` and `/metrics` (on every HTTP listener).
pub fn configure_health(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").to(handlers::healthz))
        .service(web::resource("/readyz").to(handlers::readyz))
        .service(
            web::resource("/metrics")
                .route(web::get().to(handlers::metrics))
                .default_service(web::to(handlers::method_not_allowed)),
        );
}

/// Mounts the registration API and the registry reads: `/register`, `/registry...`, the event stream
/// `/registry/events` (a name no service may take).
fn configure_api(cfg: &mut web::ServiceConfig) {
    // The templated routes sit in a scope: a proxied request is then turned away by one prefix
    // comparison instead of being matched against each route's regular expression.
    cfg.service(
        web::resource("/register")
            .route(web::post().to(handlers::register))
            .default_service(web::to(handlers::method_not_allowed)),
    )
    .service(
        web::resource("/registry")
            .route(web::get().to(handlers::registry))
            .default_service(web::to(handlers::method_not_allowed)),
    )
    .service(
        web::scope("/registry")
            .service(
                web::resource("/events")
                    .route(web::get().to(events::events))
                    .default_service(web::to(handlers::method_not_allowed)),
            )
            // `/{service}`, `/{service}/{id}`, `/{service}/{id}/heartbeat`: split, not pattern-matched.
            .default_service(web::to(handlers::registry_path)),
    );
}
