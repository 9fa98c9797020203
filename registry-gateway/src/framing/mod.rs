//! The HTTP/1.1 connection edge in front of actix-http: request framing followed byte by byte, so that a
//! pipelined request reaches the server only once the previous one has its response head, and a
//! malformed chunked body is answered 400 instead of dropping the connection; after a 101, the client's
//! bytes go to the tunnel.

mod front;
mod gate;
mod listener;
pub mod scanner;
mod tunnel;

pub use gate::{Gate, GateHandle, ReleaseNext};
pub use listener::{serve, ListenerSettings};
pub use tunnel::ClientBytes;
