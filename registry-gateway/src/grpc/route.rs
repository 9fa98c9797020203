//! Which registry service a gRPC call goes to, and which of its replicas may take it: the rules, without
//! the registry's IO, so that they read (and are tested) on their own.
//!
//! A call names its registry service with `x-registry-service`; otherwise it goes to a service whose
//! replicas announce the call's gRPC service (`/pkg.Service/Method` → `pkg.Service`), preferring one
//! with a replica that can take the call now.

/// Where a call is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// The registry service named by `x-registry-service`: any of its gRPC replicas.
    Named(&'a str),
    /// The registry services whose gRPC replicas announce this gRPC service.
    Serving(&'a str),
}

impl<'a> Target<'a> {
    /// The target of a call to `path`, with the `x-registry-service` header's value, if any.
    pub(crate) fn of(path: &'a str, route_header: Option<&'a str>) -> Self {
        match route_header {
            Some(name) => Target::Named(name),
            None => Target::Serving(grpc_service(path)),
        }
    }

    /// Whether a replica may take the call: a gRPC replica that, unless the call named its registry
    /// service, announces the call's gRPC service (`serves` asks the replica).
    pub(crate) fn accepts(&self, grpc_replica: bool, serves: impl FnOnce(&str) -> bool) -> bool {
        grpc_replica
            && match self {
                Target::Named(_) => true,
                Target::Serving(name) => serves(name),
            }
    }
}

/// The gRPC service of a call's path: `/demo.v1.Echo/Say` → `demo.v1.Echo`.
pub(crate) fn grpc_service(path: &str) -> &str {
    path.trim_start_matches('/').split('/').next().unwrap_or("")
}

/// Among the services serving a call, the first with a replica that can take it now (`ready`), else the
/// first; `None` when none serves it.
pub(crate) fn prefer<T>(serving: &[T], ready: impl Fn(&T) -> bool) -> Option<&T> {
    serving.iter().find(|s| ready(s)).or(serving.first())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_routed_by_its_grpc_service_unless_it_names_a_registry_service() {
        assert_eq!(
            Target::of("/demo.v1.Echo/Say", None),
            Target::Serving("demo.v1.Echo")
        );
        assert_eq!(
            Target::of("/demo.v1.Echo/Say", Some("echo")),
            Target::Named("echo")
        );
        assert_eq!(
            grpc_service("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health"
        );
        assert_eq!(grpc_service("/"), "");
        assert_eq!(grpc_service(""), "");
    }

    #[test]
    fn only_grpc_replicas_take_calls_and_only_announced_services_unless_named() {
        let serving = Target::Serving("demo.v1.Echo");
        assert!(serving.accepts(true, |s| s == "demo.v1.Echo"));
        assert!(!serving.accepts(true, |_| false));
        assert!(!serving.accepts(false, |_| true));
        let named = Target::Named("echo");
        assert!(named.accepts(true, |_| false));
        assert!(!named.accepts(false, |_| true));
    }

    #[test]
    fn the_first_service_that_can_take_the_call_wins_else_the_first() {
        // services a, b, c; only b and c have a replica ready
        let services = ["a", "b", "c"];
        assert_eq!(prefer(&services, |s| *s != "a"), Some(&"b"));
        assert_eq!(prefer(&services, |_| false), Some(&"a"));
        assert_eq!(prefer(&[] as &[&str], |_| true), None);
    }
}
