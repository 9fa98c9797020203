//! Child processes (gateway, demo replicas) with captured output, killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A running child process whose stdout and stderr lines are kept for assertions.
pub struct Proc {
    child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
    /// The threads reading its stdout and stderr (they end at the pipes' end).
    readers: Vec<std::thread::JoinHandle<()>>,
    /// `http://127.0.0.1:PORT` the process announced.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `http://127.0.0.1:PORT` of the gateway's gRPC listener (empty for other processes).
    pub grpc_url: String,
    _files: Vec<TempFile>,
}

/// A file deleted on drop.
pub struct TempFile(pub PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Path of a workspace binary, built by `cargo build --workspace --bins`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

impl Proc {
    /// Spawns `cmd` and waits until it prints a line containing `listening on http://`.
    pub fn spawn(mut cmd: Command, files: Vec<TempFile>) -> Proc {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn child process");
        let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let lines = Arc::clone(&lines);
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let (store, cv) = &*lines;
                    store.lock().unwrap().push(line);
                    cv.notify_all();
                }
            }));
        }
        let mut p = Proc {
            child,
            lines,
            readers,
            url: String::new(),
            addr: String::new(),
            grpc_url: String::new(),
            _files: files,
        };
        let line = p.wait_for_line("listening on http://", Duration::from_secs(30));
        let line = log_message(&line);
        let url = line
            .split("listening on ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .expect("url in listening line")
            .to_owned();
        p.addr = url.trim_start_matches("http://").to_owned();
        p.grpc_url = line
            .split_whitespace()
            .find_map(|t| t.strip_prefix("grpc="))
            .unwrap_or("")
            .to_owned();
        p.url = url;
        p
    }

    /// Sends SIGHUP (the gateway reloads its config file).
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP {}", self.pid());
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for an output line containing `needle` and returns it; panics with the output so far on timeout.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (store, cv) = &*self.lines;
        let mut guard = store.lock().unwrap();
        loop {
            if let Some(l) = guard.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "process exited ({status}) before printing {needle:?}; output:\n{}",
                    guard.join("\n")
                );
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "no line containing {needle:?} within {timeout:?}; output:\n{}",
                    guard.join("\n")
                );
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            guard = cv.wait_timeout(guard, wait).unwrap().0;
        }
    }

    /// `127.0.0.1:PORT` of the gateway's gRPC listener.
    pub fn grpc_addr(&self) -> String {
        self.grpc_url.trim_start_matches("http://").to_owned()
    }

    /// Waits for an output line containing `needle` from a process that is expected to keep running.
    pub fn expect_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (store, cv) = &*self.lines;
        let mut guard = store.lock().unwrap();
        loop {
            if let Some(l) = guard.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "no line containing {needle:?} within {timeout:?}; output:\n{}",
                    guard.join("\n")
                );
            }
            guard = cv
                .wait_timeout(guard, (deadline - now).min(Duration::from_millis(100)))
                .unwrap()
                .0;
        }
    }

    /// Output lines containing `needle` so far.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        let (store, _) = &*self.lines;
        store
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// All output so far.
    pub fn output(&self) -> String {
        self.lines.0.lock().unwrap().join("\n")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory (VmHWM) in KiB, from /proc.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .expect("VmHWM in /proc status")
    }

    /// Current resident memory (VmRSS) in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in /proc status")
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait up to `timeout` for a clean exit; returns its exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }

    /// Waits for the process to exit by itself; returns its exit code and output.
    pub fn wait_exit(&mut self, timeout: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Every line it wrote is read once both pipes reached their end.
                while self.readers.iter().any(|r| !r.is_finished()) {
                    assert!(
                        Instant::now() < deadline,
                        "its output did not end within {timeout:?} of its exit"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
                return (status.code(), self.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("process did not exit within {timeout:?}");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The message of a log line: the `message` field of a JSON line (`log.format: json`), else the line.
pub fn log_message(line: &str) -> String {
    if line.starts_with('{') {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if let Some(m) = v["message"].as_str() {
                return m.to_owned();
            }
        }
    }
    line.to_owned()
}

/// A path in the temporary directory, unique to this process.
pub fn temp_path(prefix: &str, ext: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("{prefix}-{}-{n}.{ext}", std::process::id()))
}

/// The gateway command for `yaml` config, listening on a free port; not yet started.
pub fn gateway_command(yaml: &str) -> (Command, TempFile) {
    gateway_command_on("127.0.0.1:0", yaml)
}

/// The gateway command for `yaml` config, listening on `listen`; not yet started.
pub fn gateway_command_on(listen: &str, yaml: &str) -> (Command, TempFile) {
    let path = temp_path("gateway", "yaml");
    std::fs::write(&path, yaml).expect("write gateway config");
    let mut cmd = Command::new(bin("registry-gateway"));
    cmd.arg("--listen")
        .arg(listen)
        .arg("--grpc-listen")
        .arg("127.0.0.1:0")
        .arg("--config")
        .arg(&path);
    cmd.env("GATEWAY_LOG", "info");
    for (k, _) in std::env::vars() {
        if k.starts_with("GATEWAY_") && k != "GATEWAY_LOG" {
            cmd.env_remove(k);
        }
    }
    (cmd, TempFile(path))
}

/// Starts a gateway with `yaml` config (two workers) on a free port.
pub fn gateway(yaml: &str) -> Proc {
    gateway_on("127.0.0.1:0", yaml)
}

/// Starts a gateway with `yaml` config (two workers) on `listen` (to restart one on the same port).
pub fn gateway_on(listen: &str, yaml: &str) -> Proc {
    let yaml = if yaml.contains("workers:") {
        yaml.to_owned()
    } else {
        format!("workers: 2\n{yaml}")
    };
    let (cmd, file) = gateway_command_on(listen, &yaml);
    Proc::spawn(cmd, vec![file])
}

/// Starts `demo-http --name NAME --port PORT` with `extra` flags (port 0: any free one).
pub fn demo_on(name: &str, port: u16, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(bin("demo-http"));
    cmd.arg("--name")
        .arg(name)
        .arg("--port")
        .arg(port.to_string())
        .args(extra);
    Proc::spawn(cmd, Vec::new())
}

/// Starts a demo replica on a free port.
pub fn demo(name: &str, extra: &[&str]) -> Proc {
    demo_on(name, 0, extra)
}

/// Starts `demo-grpc --name NAME --port 0` with `extra` flags.
pub fn demo_grpc(name: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(bin("demo-grpc"));
    cmd.arg("--name")
        .arg(name)
        .arg("--port")
        .arg("0")
        .args(extra);
    Proc::spawn(cmd, Vec::new())
}

/// A free TCP port on 127.0.0.1 (bound and released; the caller binds it right away).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A real `redis-server` on 127.0.0.1, without persistence; killed when dropped.
pub struct Redis {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl Redis {
    /// Starts one on a free port.
    pub fn start() -> Redis {
        Redis::start_on(free_port())
    }

    /// Starts one on `port` (to restart it where the gateways expect it).
    pub fn start_on(port: u16) -> Redis {
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("redis-server exited ({status}) on port {port}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port }
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops it (SIGKILL) and waits until it is gone.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Runs `redis-cli` against it and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// nginx (Debian's package) in front of `gateways`, with the repository's `config/nginx.conf`.
pub fn nginx(gateways: &[&str]) -> Proc {
    let prefix = std::env::temp_dir().join(format!("nginx-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&prefix).expect("nginx prefix");
    let listen = format!("127.0.0.1:{}", free_port());
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/nginx.conf"),
    )
    .expect("config/nginx.conf");
    let servers: String = gateways
        .iter()
        .map(|g| format!("server {g};\n    "))
        .collect();
    let conf = template
        .replace("__PREFIX__", &prefix.to_string_lossy())
        .replace("__LISTEN__", &listen)
        .replace("__GATEWAYS__", servers.trim_end());
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let bin = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|b| Command::new(b).arg("-v").output().is_ok())
        .expect("nginx must be installed (scripts/test.sh installs it)");
    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(&prefix)
        .arg("-g")
        .arg("daemon off;");
    // nginx prints nothing when it starts: announce the address the way the other processes do.
    let mut wrapper = Command::new("sh");
    wrapper.arg("-c").arg(format!(
        "echo 'nginx listening on http://{listen}'; exec \"$0\" \"$@\""
    ));
    wrapper.arg(cmd.get_program()).args(cmd.get_args());
    let p = Proc::spawn(wrapper, vec![TempFile(conf_path)]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not listen on {listen}:\n{}",
            p.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p
}
