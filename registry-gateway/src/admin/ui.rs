//! `GET /ui`: the dashboard, a static page embedded in the binary and fed by `GET /registry/events`.
//!
//! The page holds no data, so it is served without a token; the data it shows comes from the event stream,
//! which is protected like the other registry reads. Its script and style are separate files so that the
//! Content-Security-Policy can forbid inline code and every other origin.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::handlers;

const PAGE: &str = include_str!("../../assets/dashboard.html");
const STYLE: &str = include_str!("../../assets/dashboard.css");
const SCRIPT: &str = include_str!("../../assets/dashboard.js");

/// Nothing from another origin, no inline script or style, no framing, no form posts.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        // Small files: always revalidated, so a new gateway version is seen at once.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body)
}

async fn page() -> HttpResponse {
    asset("text/html; charset=utf-8", PAGE)
}

async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// Mounts `/ui` (also `/ui/`), `/ui/dashboard.css` and `/ui/dashboard.js`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/ui")
            .service(
                web::resource(["", "/"])
                    .route(web::get().to(page))
                    .default_service(web::to(handlers::method_not_allowed)),
            )
            .service(
                web::resource("/dashboard.css")
                    .route(web::get().to(style))
                    .default_service(web::to(handlers::method_not_allowed)),
            )
            .service(
                web::resource("/dashboard.js")
                    .route(web::get().to(script))
                    .default_service(web::to(handlers::method_not_allowed)),
            )
            .default_service(web::to(handlers::not_found)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files() {
        // Every script and stylesheet the page names is one this module serves, by absolute path.
        assert!(PAGE.contains(r#"<script src="/ui/dashboard.js""#));
        assert!(PAGE.contains(r#"<link rel="stylesheet" href="/ui/dashboard.css""#));
        // Inline code would be refused by the Content-Security-Policy.
        for inline in [
            "<style",
            "<script>",
            " style=",
            " onclick=",
            " onload=",
            " onsubmit=",
        ] {
            assert!(!PAGE.contains(inline), "inline code: {inline}");
        }
        for text in [PAGE, STYLE, SCRIPT] {
            assert!(!text.contains("http://"), "no absolute URL");
            assert!(!text.contains("https://"), "no absolute URL");
            assert!(!text.contains("@import"), "no imported style");
        }
        // The stream the script opens is the one the API mounts.
        assert!(SCRIPT.contains("\"/registry/events\""));
    }
}
