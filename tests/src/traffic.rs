//! Steady client traffic in the background: counts successes and keeps every failure for assertions.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::{eventually, Client};

/// `clients` concurrent loops of GET `url`, until [`Traffic::stop`].
pub struct Traffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<(StatusCode, String)>>>,
}

impl Traffic {
    /// Starts the loops.
    pub fn start(client: &Client, url: &str, clients: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let (c, url, stop, ok) = (client.clone(), url.to_owned(), stop.clone(), ok.clone());
                tokio::spawn(async move {
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let r = c.get(&url).await;
                        if r.status == StatusCode::OK {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failures
                                .push((r.status, String::from_utf8_lossy(&r.body).into_owned()));
                        }
                    }
                    failures
                })
            })
            .collect();
        Traffic { stop, ok, tasks }
    }

    /// Waits until `n` more requests have succeeded (panics after `deadline`).
    pub async fn wait_for_more(&self, n: u64, deadline: Duration) {
        let target = self.ok.load(Ordering::Relaxed) + n;
        let ok = Arc::clone(&self.ok);
        eventually(deadline, &format!("{n} more successful requests"), || {
            let done = ok.load(Ordering::Relaxed) >= target;
            async move { done.then_some(()) }
        })
        .await;
    }

    /// Stops the loops and returns every failed request (status, body).
    pub async fn stop(self) -> Vec<(StatusCode, String)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.expect("traffic task"));
        }
        all
    }
}
