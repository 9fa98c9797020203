//! The handle a service holds: builds the registration, runs one background loop per gateway, deregisters.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::agent::{self, Spec};
use crate::api::{Answer, GatewayApi, RegisterCall};
use crate::backoff::Backoff;
use crate::{RegistrationState, SdkError};
#[cfg(feature = "grpc")]
use registry_proto::registry::v1 as pb;

/// Settings for a [`Registration`], from [`Registration::builder`].
#[derive(Debug, Clone)]
pub struct RegistrationBuilder {
    gateways: Vec<String>,
    service: String,
    address: String,
    metadata: BTreeMap<String, String>,
    token: Option<String>,
    backoff: Backoff,
    request_timeout: Duration,
    protocol: Protocol,
    grpc_services: Vec<String>,
    ca_file: Option<PathBuf>,
    #[cfg(feature = "grpc")]
    via_grpc: bool,
}

/// What the registered replica speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// HTTP/1.1 (proxied on the gateway's HTTP listener).
    #[default]
    Http,
    /// gRPC over h2c (proxied on the gateway's gRPC listener).
    Grpc,
}

/// One gateway's loop.
struct Agent {
    api: GatewayApi,
    state: watch::Receiver<RegistrationState>,
    sender: watch::Sender<RegistrationState>,
    task: JoinHandle<()>,
}

/// A live registration. Heartbeats run in the background until [`Registration::deregister`] or drop.
///
/// Dropping it without deregistering stops the heartbeats: the gateway then drops the replica when its
/// lease expires. That is what a crash looks like too.
pub struct Registration {
    spec: Arc<Spec>,
    agents: Vec<Agent>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("service", &self.spec.service)
            .field("address", &self.spec.address)
            .field("states", &self.states())
            .finish()
    }
}

fn validate_gateway(url: &str) -> Result<String, SdkError> {
    let invalid = |reason: &str| SdkError::InvalidGatewayUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("a host is needed"));
    }
    let base = parsed.as_str().trim_end_matches('/').to_owned();
    Ok(base)
}

impl Registration {
    /// Starts describing the registration of `address` (`http://host:port`, as the gateway should reach
    /// this replica) as a replica of `service`, with the gateway at `gateway` (`http://host:port`).
    pub fn builder(
        gateway: impl Into<String>,
        service: impl Into<String>,
        address: impl Into<String>,
    ) -> RegistrationBuilder {
        RegistrationBuilder {
            gateways: vec![gateway.into()],
            service: service.into(),
            address: address.into(),
            metadata: BTreeMap::new(),
            token: None,
            backoff: Backoff::default(),
            request_timeout: Duration::from_secs(2),
            protocol: Protocol::Http,
            grpc_services: Vec::new(),
            ca_file: None,
            #[cfg(feature = "grpc")]
            via_grpc: false,
        }
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.spec.service
    }

    /// The state with each gateway, in the order they were given.
    pub fn states(&self) -> Vec<(String, RegistrationState)> {
        self.agents
            .iter()
            .map(|a| (a.api.base().to_owned(), a.state.borrow().clone()))
            .collect()
    }

    /// Whether at least one gateway routes to this replica now (for the host's readiness probe).
    pub fn is_registered(&self) -> bool {
        self.agents.iter().any(|a| a.state.borrow().is_registered())
    }

    /// The replica id given by the first gateway that has one.
    pub fn id(&self) -> Option<String> {
        self.agents
            .iter()
            .find_map(|a| a.state.borrow().id().map(str::to_owned))
    }

    /// A receiver of the first gateway's state changes.
    pub fn watch(&self) -> watch::Receiver<RegistrationState> {
        self.agents[0].state.clone()
    }

    /// Waits until every gateway has registered this replica, or `timeout` passes; returns whether it did.
    pub async fn wait_registered(&self, timeout: Duration) -> bool {
        let all = async {
            for a in &self.agents {
                let mut rx = a.state.clone();
                if rx.wait_for(RegistrationState::is_registered).await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(timeout, all).await.unwrap_or(false)
    }

    /// Stops heartbeating and removes the replica from every gateway that has it. A gateway that no longer
    /// knows it (`404`) counts as done. Returns the first error when a gateway could not be told.
    pub async fn deregister(mut self) -> Result<(), SdkError> {
        let mut first_error = None;
        for a in std::mem::take(&mut self.agents) {
            a.task.abort();
            let id = a.state.borrow().id().map(str::to_owned);
            a.sender.send_replace(RegistrationState::Stopped);
            let Some(id) = id else { continue };
            match a.api.deregister(&self.spec.service, &id).await {
                Answer::Ok(()) | Answer::NotFound => {
                    tracing::info!(gateway = %a.api.base(), service = %self.spec.service, %id, "deregistered");
                }
                Answer::Busy(_) => {
                    first_error.get_or_insert(SdkError::Rejected {
                        gateway: a.api.base().to_owned(),
                        status: 503,
                        message: "gateway busy; the lease will expire instead".into(),
                    });
                }
                Answer::Err(e) => {
                    tracing::warn!(gateway = %a.api.base(), error = %e, "deregistration failed; the lease will expire instead");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        for a in &self.agents {
            a.task.abort();
            a.sender.send_replace(RegistrationState::Stopped);
        }
    }
}

impl RegistrationBuilder {
    /// Also registers with this gateway. Every gateway gets its own registration and heartbeats: with
    /// the in-process registry each gateway knows only what was registered with it.
    pub fn gateway(mut self, url: impl Into<String>) -> Self {
        self.gateways.push(url.into());
        self
    }

    /// Adds a metadata label (version, zone, ...), shown in `GET /registry`.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The gateway's registration token (`auth.registration_token`), sent as `Authorization: Bearer`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Backoff between failed registration attempts (default 100 ms doubling to 5 s, jittered).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// What the replica speaks (default HTTP). A gRPC replica also names the gRPC services it serves.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// A full gRPC service name this replica serves (`demo.v1.Echo`); calls to it are routed here.
    pub fn grpc_service(mut self, name: impl Into<String>) -> Self {
        self.grpc_services.push(name.into());
        self
    }

    /// Registers over the gateways' gRPC registration API instead of HTTP: the gateway URLs given are
    /// then their gRPC listeners (`http://host:50050`). Needs the `grpc` feature.
    #[cfg(feature = "grpc")]
    pub fn via_grpc(mut self) -> Self {
        self.via_grpc = true;
        self
    }

    /// A PEM file of CA certificates trusted for `https://` gateways, on top of the platform's roots
    /// (for a gateway whose certificate a private CA issued). Read at [`RegistrationBuilder::start`].
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Time limit of each call to a gateway, connect included (default 2 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Starts the background loops and makes the first attempt with each gateway (waiting at most about
    /// one request timeout for it). Never fails because a gateway is down: the loops keep trying, and
    /// [`Registration::states`] shows how it goes. Fails only on an invalid gateway URL or CA file.
    pub async fn start(self) -> Result<Registration, SdkError> {
        if self.gateways.is_empty() {
            return Err(SdkError::NoGateway);
        }
        let bases = self
            .gateways
            .iter()
            .map(|g| validate_gateway(g))
            .collect::<Result<Vec<_>, _>>()?;
        let protocol_name = match self.protocol {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        };
        let json = serde_json::json!({
            "service": self.service,
            "address": self.address,
            "protocol": protocol_name,
            "grpc_services": self.grpc_services,
            "metadata": self.metadata,
        });
        #[cfg(feature = "grpc")]
        let proto = pb::RegisterRequest {
            service: self.service.clone(),
            address: self.address.clone(),
            protocol: match self.protocol {
                Protocol::Http => pb::Protocol::Http,
                Protocol::Grpc => pb::Protocol::Grpc,
            } as i32,
            grpc_services: self.grpc_services.clone(),
            metadata: self.metadata.clone().into_iter().collect(),
        };
        let spec = Arc::new(Spec {
            service: self.service,
            address: self.address,
            call: RegisterCall {
                json: bytes::Bytes::from(json.to_string()),
                #[cfg(feature = "grpc")]
                proto,
            },
            backoff: self.backoff,
            jitter: fastrand::f64,
        });
        // One TLS setup for every https:// gateway (the platform's roots are read once).
        let tls = if bases.iter().any(|b| b.starts_with("https:")) {
            Some(crate::api::https::client_config(self.ca_file.as_deref())?)
        } else {
            None
        };
        let mut apis = Vec::new();
        for base in bases {
            #[cfg(feature = "grpc")]
            if self.via_grpc {
                if base.starts_with("https:") {
                    return Err(SdkError::InvalidGatewayUrl {
                        url: base,
                        reason: "https is served over the HTTP registration API only".into(),
                    });
                }
                apis.push(GatewayApi::grpc(
                    base,
                    self.token.clone(),
                    self.request_timeout,
                )?);
                continue;
            }
            apis.push(GatewayApi::http(
                base,
                self.token.clone(),
                self.request_timeout,
                tls.clone(),
            ));
        }
        let agents: Vec<Agent> = apis
            .into_iter()
            .map(|api| {
                let (sender, state) = watch::channel(RegistrationState::Registering {
                    attempts: 0,
                    last_error: None,
                });
                let task = tokio::spawn(agent::run(api.clone(), Arc::clone(&spec), sender.clone()));
                Agent {
                    api,
                    state,
                    sender,
                    task,
                }
            })
            .collect();
        // Give the first attempts their chance, so that a service whose gateway is up starts registered.
        let first = async {
            for a in &agents {
                let mut rx = a.state.clone();
                let _ = rx
                    .wait_for(|s| !matches!(s, RegistrationState::Registering { attempts: 0, .. }))
                    .await;
            }
        };
        let _ =
            tokio::time::timeout(self.request_timeout + Duration::from_millis(100), first).await;
        Ok(Registration { spec, agents })
    }
}
