//! Headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe, to read the live DOM
//! of a page that keeps changing after it loaded.
//!
//! `chromium --dump-dom` and `--screenshot` act at the load event, before an `EventSource` has delivered
//! anything, and `--virtual-time-budget` never ends while a stream is open. `--remote-debugging-pipe` takes
//! protocol messages (JSON, each ended by a NUL byte) on file descriptor 3 and answers on 4: a shell maps
//! them to the child's stdin and stdout, so no socket or WebSocket client is needed.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The Chromium binary: `$CHROMIUM`, else `chromium`.
fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

/// Panics with how to install Chromium when it is missing: the dashboard tests must not pass without it.
pub fn require_chromium() {
    let bin = chromium();
    let ok = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`{bin} --version` failed: the dashboard tests need Debian's chromium \
         (`apt-get install -y chromium`; scripts/test.sh installs it), or CHROMIUM=/path/to/chrome"
    );
}

/// One headless browser with one page open.
pub struct Browser {
    child: Child,
    to: ChildStdin,
    from: mpsc::Receiver<Value>,
    session: String,
    next_id: u64,
    profile: std::path::PathBuf,
}

impl Browser {
    /// Starts Chromium (root-safe flags: `--no-sandbox --headless --disable-gpu`) on `url` with a
    /// `width` × `height` viewport, and attaches to the page.
    pub fn open(url: &str, width: u32, height: u32) -> Browser {
        require_chromium();
        let profile = std::env::temp_dir().join(format!(
            "chromium-profile-{}-{}",
            std::process::id(),
            crate::process::free_port()
        ));
        let mut child = Command::new("sh")
            .arg("-c")
            // fd 3 reads the test's commands (stdin), fd 4 writes the answers (stdout).
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#)
            .arg(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-renderer-backgrounding",
                "--disable-background-timer-throttling",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromium");
        let to = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, from) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut msg = Vec::new();
            while r.read_until(0, &mut msg).is_ok_and(|n| n > 0) {
                if msg.last() == Some(&0) {
                    msg.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&msg) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
                msg.clear();
            }
        });
        let mut b = Browser {
            child,
            to,
            from,
            session: String::new(),
            next_id: 0,
            profile,
        };
        let target = b.page_target(url, Duration::from_secs(60));
        let attached = b.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        );
        b.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_owned();
        b.call_page(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        b
    }

    /// The id of the page target showing `url`, once Chromium has created it.
    fn page_target(&mut self, url: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let targets = self.call(None, "Target.getTargets", json!({}));
            let page = targets["targetInfos"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| {
                    t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(url))
                });
            if let Some(id) = page.and_then(|t| t["targetId"].as_str()) {
                return id.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "chromium opened no page for {url}: {targets}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends one command (to the browser, or to the page's session) and waits for its answer.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to
            .write_all(&bytes)
            .and_then(|()| self.to.flush())
            .unwrap_or_else(|e| panic!("chromium closed its protocol pipe ({e}) before {method}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no answer from chromium to {method}: {e}"));
            if answer["id"] == id {
                if let Some(err) = answer.get("error") {
                    panic!("chromium refused {method}: {err}");
                }
                return answer["result"].clone();
            }
        }
    }

    fn call_page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params)
    }

    /// Evaluates `expression` in the page: its value, or the exception it threw.
    fn try_eval(&mut self, expression: &str) -> Result<Value, Value> {
        let r = self.call_page(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        match r.get("exceptionDetails") {
            Some(e) => Err(e.clone()),
            None => Ok(r["result"]["value"].clone()),
        }
    }

    /// Evaluates `expression` in the page and returns its value; panics if it throws.
    pub fn eval(&mut self, expression: &str) -> Value {
        self.try_eval(expression)
            .unwrap_or_else(|e| panic!("{expression} threw: {e}"))
    }

    /// The page's current DOM, serialized.
    pub fn dom(&mut self) -> String {
        self.eval("document.documentElement.outerHTML")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Polls `expression` every 100 ms until it is `true` (throwing counts as not yet: the page may still
    /// be loading); panics with the DOM after `within`.
    pub fn wait_for(&mut self, expression: &str, within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        while self.try_eval(expression) != Ok(Value::Bool(true)) {
            if Instant::now() >= deadline {
                let dom = self.dom();
                panic!("timed out after {within:?} waiting for {what} ({expression}); DOM:\n{dom}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the viewport.
    pub fn screenshot_png(&mut self) -> Vec<u8> {
        let r = self.call_page("Page.captureScreenshot", json!({ "format": "png" }));
        base64_decode(r["data"].as_str().expect("screenshot data"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closed through the protocol, Chromium takes its helper processes down with it.
        self.next_id += 1;
        let mut close =
            serde_json::to_vec(&json!({ "id": self.next_id, "method": "Browser.close" })).unwrap();
        close.push(0);
        if self
            .to
            .write_all(&close)
            .and_then(|()| self.to.flush())
            .is_ok()
        {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Standard base64 (RFC 4648 §4), as the protocol sends binary data.
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {:?}", c as char),
    };
    let digits: Vec<u8> = s
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .map(value)
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &d)| n | u32::from(d) << (18 - 6 * i));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn decodes_base64() {
        assert_eq!(base64_decode(""), b"");
        assert_eq!(base64_decode("Zg=="), b"f");
        assert_eq!(base64_decode("Zm8="), b"fo");
        assert_eq!(base64_decode("Zm9v"), b"foo");
        assert_eq!(base64_decode("Zm9vYmFy"), b"foobar");
        assert_eq!(base64_decode("+/+/"), [0xfb, 0xff, 0xbf]);
    }
}
