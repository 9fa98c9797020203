//! Admin HTTP API (actix-web): register, heartbeat, deregister, inspect the registry, health.

mod auth;
pub(crate) mod dto;
pub(crate) mod handlers;

use actix_web::web;

pub use auth::RegistrationToken;

/// Admin API settings.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Bearer token required by register, heartbeat and deregister, when set.
    pub token: Option<RegistrationToken>,
    /// Largest accepted `POST /register` body.
    pub registration_body_max: usize,
}

/// Mounts the admin routes. Every other path goes to the proxy (mounted by the caller as default service).
pub fn configure(cfg: &mut web::ServiceConfig) {
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
                web::resource("/{service}")
                    .route(web::get().to(handlers::service))
                    .default_service(web::to(handlers::method_not_allowed)),
            )
            .service(
                web::resource("/{service}/{id}")
                    .route(web::delete().to(handlers::deregister))
                    .route(web::get().to(handlers::replica))
                    .default_service(web::to(handlers::method_not_allowed)),
            )
            .service(
                web::resource("/{service}/{id}/heartbeat")
                    .route(web::put().to(handlers::heartbeat))
                    .default_service(web::to(handlers::method_not_allowed)),
            )
            .default_service(web::to(handlers::not_found)),
    )
    .service(web::resource("/healthz").to(handlers::healthz))
    .service(web::resource("/readyz").to(handlers::readyz));
}
