//! Client SDK for the registry gateway: not built yet.
//!
//! It will register a service on startup, heartbeat at the interval the gateway returns, register again
//! when a heartbeat is answered `404`, and deregister on shutdown. Until then, services register over the
//! HTTP API described in the repository's README (`POST /register`, `PUT .../heartbeat`, `DELETE`).
