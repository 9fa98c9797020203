//! TLS end to end, with certificates made here (rcgen): `https://` replicas trusted through
//! `upstream.tls.ca_file`, refused without it (a connect failure, the next replica answers), mTLS to a
//! replica that requires a client certificate; the HTTP, admin and gRPC listeners over TLS; a listener
//! certificate swapped by SIGHUP; and start-up errors naming the field.

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use e2e::http::health;
use e2e::process::{free_port, gateway_command, temp_path, Proc, TempFile};
use e2e::{demo, gateway, Client};
use http::StatusCode;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const LONG: Duration = Duration::from_secs(30);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A test certificate authority.
struct Pki {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate issued by a [`Pki`], with its key.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Pki { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `names` (IP addresses become IP SANs), or a client certificate.
    fn leaf(&self, names: &[&str], client: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            if client { "gateway" } else { "replica" },
        );
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn server(&self) -> Leaf {
        self.leaf(&["127.0.0.1", "localhost"], false)
    }
}

/// `content` in a temporary file, removed on drop.
fn file(prefix: &str, content: &str) -> TempFile {
    let path = temp_path(prefix, "pem");
    std::fs::write(&path, content).unwrap();
    TempFile(path)
}

fn path(f: &TempFile) -> String {
    f.0.display().to_string()
}

/// What a TLS replica saw of one handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Handshake {
    ok: bool,
    sni: Option<String>,
    client_cert: bool,
}

/// An HTTP/1.1-over-TLS replica in this process (hyper + tokio-rustls), answering every request with
/// its name in the body and in `x-replica`.
struct TlsReplica {
    port: u16,
    handshakes: Arc<Mutex<Vec<Handshake>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsReplica {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsReplica {
    fn handshakes(&self) -> Vec<Handshake> {
        self.handshakes.lock().unwrap().clone()
    }
}

/// Starts a TLS replica serving `leaf`; with `clients`, it requires a client certificate they issued.
async fn tls_replica(name: &'static str, leaf: &Leaf, clients: Option<&Pki>) -> TlsReplica {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match clients {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.cert.der().clone()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let mut config = builder
        .with_single_cert(vec![leaf.der.clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes: Arc<Mutex<Vec<Handshake>>> = Arc::default();
    let seen = Arc::clone(&handshakes);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, seen) = (acceptor.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(_) => {
                        seen.lock().unwrap().push(Handshake {
                            ok: false,
                            sni: None,
                            client_cert: false,
                        });
                        return;
                    }
                };
                let conn = tls.get_ref().1;
                seen.lock().unwrap().push(Handshake {
                    ok: true,
                    sni: conn.server_name().map(str::to_owned),
                    client_cert: conn.peer_certificates().is_some(),
                });
                let svc = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .header("x-replica", name)
                            .body(Full::new(Bytes::from(name)))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    TlsReplica {
        port,
        handshakes,
        task,
    }
}

/// What a gRPC TLS replica saw of one call: the ALPN protocol of its connection and the `:scheme`.
type GrpcSeen = Arc<Mutex<Vec<(Option<Vec<u8>>, Option<String>)>>>;

/// A gRPC replica over TLS in this process (hyper h2 + tokio-rustls, ALPN `h2` only): every call gets
/// one `SayResponse { message: "tls-grpc" }` and `grpc-status: 0`.
async fn grpc_tls_replica(leaf: &Leaf) -> (u16, GrpcSeen, tokio::task::JoinHandle<()>) {
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der.clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: GrpcSeen = Arc::default();
    let calls = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, calls) = (acceptor.clone(), Arc::clone(&calls));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                    let scheme = req.uri().scheme_str().map(str::to_owned);
                    calls.lock().unwrap().push((alpn.clone(), scheme));
                    async move {
                        use prost::Message;
                        let msg = registry_proto::demo::v1::SayResponse {
                            message: "tls-grpc".into(),
                            ..Default::default()
                        }
                        .encode_to_vec();
                        let mut frame = vec![0u8];
                        frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
                        frame.extend_from_slice(&msg);
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        let frames = futures_util::stream::iter([
                            Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(frame))),
                            Ok(hyper::body::Frame::trailers(trailers)),
                        ]);
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(http_body_util::StreamBody::new(frames))
                                .unwrap(),
                        )
                    }
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
            });
        }
    });
    (port, seen, task)
}

/// A gateway whose config file the test may rewrite (then SIGHUP).
fn gateway_with_file(yaml: &str) -> (Proc, PathBuf) {
    let (cmd, file) = gateway_command(&format!("workers: 2\n{yaml}"));
    let path = file.0.clone();
    (Proc::spawn(cmd, vec![file]), path)
}

/// A rustls client trusting `cas`, offering `alpn`.
fn client_config(cas: &[&Pki], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca.cert.der().clone()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `addr` (`127.0.0.1:PORT`) checked against `name`.
async fn handshake(
    addr: &str,
    name: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

/// The leaf certificate the peer of `stream` showed.
fn peer_leaf(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// `GET path` on an open HTTP/1.1 connection; returns the status line and the body.
async fn get_on(stream: &mut TlsStream<TcpStream>, path: &str) -> (String, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: gateway\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "connection closed: {}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return (head.lines().next().unwrap().to_owned(), body.to_owned());
            }
        }
    };
    tokio::time::timeout(LONG, read).await.expect("response")
}

/// `curl --cacert ca url`: (HTTP status, body); the status is 000 when curl could not connect.
fn curl(ca: &str, url: &str) -> (String, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "--cacert",
            ca,
            "-w",
            "\n%{http_code}",
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_replica_is_reached_with_the_ca_file_by_ip_and_by_name() {
    let pki = Pki::new("replica CA");
    let replica = tls_replica("secure", &pki.server(), None).await;
    let ca = file("ca", &pki.pem());
    let gw = gateway(&format!(
        "upstream: {{ tls: {{ ca_file: {} }} }}\n\
         services: {{ byip: [\"https://127.0.0.1:{p}\"], byname: [\"https://localhost:{p}\"] }}\n",
        path(&ca),
        p = replica.port
    ));
    let c = Client::new();
    for service in ["byip", "byname"] {
        let r = c.get(&format!("{}/{service}/hello", gw.url)).await;
        assert_eq!(r.status, StatusCode::OK, "{service}: {:?}", r.body);
        assert_eq!(r.header("x-replica"), Some("secure"));
        assert_eq!(&r.body[..], b"secure");
    }
    // SNI: the name when the address has one; none for an IP address (its IP SAN is verified).
    let seen = replica.handshakes();
    assert!(seen.iter().all(|h| h.ok && !h.client_cert), "{seen:?}");
    let snis: std::collections::BTreeSet<_> = seen.iter().map(|h| h.sni.clone()).collect();
    assert_eq!(
        snis,
        [None, Some("localhost".to_owned())].into_iter().collect(),
        "{seen:?}"
    );
    // Keep-alive: more requests reuse the pooled TLS connections (at most one per worker).
    for _ in 0..10 {
        let r = c.get(&format!("{}/byip/again", gw.url)).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let handshakes = replica.handshakes().len();
    assert!(handshakes <= 4, "{handshakes} handshakes for 12 requests");
    // The registry lists it by its https URL.
    let h = health(
        &c,
        &gw.url,
        "byip",
        &format!("https://127.0.0.1:{}", replica.port),
    )
    .await
    .expect("listed");
    assert!(h.is_clean(), "{h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_replica_is_a_connect_failure_and_the_next_replica_answers() {
    let pki = Pki::new("unknown CA");
    let replica = tls_replica("untrusted", &pki.server(), None).await;
    let plain = demo("plain", &[]);
    let tls_url = format!("https://127.0.0.1:{}", replica.port);
    // No ca_file: the platform's roots do not know this CA.
    let gw = gateway(&format!(
        "breaker: {{ failure_threshold: 5 }}\n\
         services: {{ alone: [\"{tls_url}\"], mixed: [\"{tls_url}\", \"{}\"] }}\n",
        plain.url
    ));
    let c = Client::new();
    let r = c.get(&format!("{}/alone/x", gw.url)).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{:?}", r.body);
    let h = health(&c, &gw.url, "alone", &tls_url).await.unwrap();
    assert_eq!((h.failures, h.consecutive_failures), (1, 1), "{h:?}");

    for _ in 0..4 {
        let r = c.get(&format!("{}/mixed/x", gw.url)).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.header("x-replica"), Some("plain"));
    }
    let h = health(&c, &gw.url, "mixed", &tls_url).await.unwrap();
    assert!(h.failures >= 1, "{h:?}");
    // Never trusted: no handshake completed, and the gateway says why.
    let seen = replica.handshakes();
    assert!(!seen.is_empty() && seen.iter().all(|h| !h.ok), "{seen:?}");
    let line = gw.expect_line("TLS handshake with replica failed", LONG);
    assert!(line.contains(&tls_url), "{line}");
    assert!(line.contains("invalid peer certificate"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_requiring_mtls_gets_the_client_certificate_once_configured() {
    let pki = Pki::new("mesh CA");
    let replica = tls_replica("mtls", &pki.server(), Some(&pki)).await;
    let client = pki.leaf(&[], true);
    let (ca, cert, key) = (
        file("ca", &pki.pem()),
        file("client", &client.cert_pem),
        file("client-key", &client.key_pem),
    );
    let services = format!(
        "services: {{ m: [\"https://127.0.0.1:{}\"] }}\n",
        replica.port
    );
    let (gw, config) = gateway_with_file(&format!(
        "upstream: {{ tls: {{ ca_file: {} }} }}\n{services}",
        path(&ca)
    ));
    let c = Client::new();
    let r = c.get(&format!("{}/m/x", gw.url)).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{:?}", r.body);
    assert!(replica.handshakes().iter().all(|h| !h.ok));

    // The client certificate arrives with a reload; new connections show it.
    std::fs::write(
        &config,
        format!(
            "workers: 2\nupstream: {{ tls: {{ ca_file: {}, cert_file: {}, key_file: {} }} }}\n{services}",
            path(&ca),
            path(&cert),
            path(&key)
        ),
    )
    .unwrap();
    gw.hangup();
    let line = gw.expect_line("config reloaded", LONG);
    assert!(line.contains("upstream.tls.cert_file"), "{line}");
    let r = c.get(&format!("{}/m/x", gw.url)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(&r.body[..], b"mtls");
    let last = replica.handshakes().last().cloned().unwrap();
    assert!(last.ok && last.client_cert, "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_and_admin_listeners_speak_tls() {
    let pki = Pki::new("gateway CA");
    let leaf = pki.server();
    let (ca, cert, key) = (
        file("ca", &pki.pem()),
        file("cert", &leaf.cert_pem),
        file("key", &leaf.key_pem),
    );
    let backend = demo("behind", &[]);
    let admin = free_port();
    let gw = gateway(&format!(
        "admin_listen: 127.0.0.1:{admin}\ntls: {{ cert_file: {}, key_file: {} }}\n\
         services: {{ orders: [\"{}\"] }}\n",
        path(&cert),
        path(&key),
        backend.url
    ));
    gw.expect_line("TLS on the HTTP, gRPC and admin listeners", LONG);
    let port = gw.addr.rsplit_once(':').unwrap().1.to_owned();
    let ca = path(&ca);
    for host in ["127.0.0.1", "localhost"] {
        let (code, body) = curl(&ca, &format!("https://{host}:{port}/healthz"));
        assert_eq!(code, "200", "{host}: {body}");
        assert!(body.contains("ok"), "{body}");
    }
    let (code, body) = curl(&ca, &format!("https://127.0.0.1:{port}/orders/echo/x"));
    assert_eq!(code, "200", "{body}");
    // The replica learns that its client came over TLS.
    let echoed: serde_json::Value = serde_json::from_str(&body).unwrap();
    let proto = echoed["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0] == "x-forwarded-proto")
        .map(|p| p[1].clone());
    assert_eq!(proto, Some(serde_json::json!("https")), "{body}");
    let (code, body) = curl(&ca, &format!("https://127.0.0.1:{admin}/registry"));
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("orders"), "{body}");

    // ALPN: a client offering http/1.1 only gets it (h2 clients: see the next test).
    let config = client_config(&[&pki], &[b"http/1.1"]);
    let mut tls = handshake(&gw.addr, "127.0.0.1", config).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(peer_leaf(&tls), leaf.der);
    let (status, _) = get_on(&mut tls, "/healthz").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    // A client that does not trust the CA fails the handshake; plain HTTP gets no answer.
    let other = Pki::new("other CA");
    assert!(
        handshake(&gw.addr, "127.0.0.1", client_config(&[&other], &[]))
            .await
            .is_err()
    );
    let (code, _) = curl(&ca, &format!("http://127.0.0.1:{port}/healthz"));
    assert_ne!(code, "200");
}

/// The value of header `name` in the demo echo's JSON (`headers`: `[name, value]` pairs).
fn echoed_header(echoed: &serde_json::Value, name: &str) -> Option<String> {
    echoed["headers"]
        .as_array()?
        .iter()
        .find(|p| p[0] == name)
        .and_then(|p| p[1].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_http_listener_serves_http2_to_clients_that_choose_it_by_alpn() {
    use http_body_util::BodyExt;
    let pki = Pki::new("gateway CA");
    let leaf = pki.server();
    let (ca, cert, key) = (
        file("ca", &pki.pem()),
        file("cert", &leaf.cert_pem),
        file("key", &leaf.key_pem),
    );
    let backend = demo("behind", &[]);
    let gw = gateway(&format!(
        "tls: {{ cert_file: {}, key_file: {} }}
services: {{ orders: [\"{}\"] }}
",
        path(&cert),
        path(&key),
        backend.url
    ));
    gw.expect_line("TLS on the HTTP and gRPC listeners", LONG);
    let port = gw.addr.rsplit_once(':').unwrap().1.to_owned();

    // A hyper HTTP/2 client over rustls, offering h2 first.
    let tls = handshake(
        &gw.addr,
        "127.0.0.1",
        client_config(&[&pki], &[b"h2", b"http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    // Several requests multiplexed on the one connection, a body among them.
    let mut answers = Vec::new();
    for i in 0..3 {
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("https://127.0.0.1:{port}/orders/echo/{i}?q={i}"))
            .header("te", "trailers")
            .header("x-custom", format!("c{i}"))
            .body(Full::new(Bytes::from(format!("body {i}"))))
            .unwrap();
        answers.push(h2.send_request(req));
    }
    for (i, answer) in answers.into_iter().enumerate() {
        let resp = tokio::time::timeout(LONG, answer).await.unwrap().unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert!(resp.headers().get("connection").is_none());
        assert!(resp.headers().get("x-request-id").is_some());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let echoed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        // The replica gets HTTP/1.1 with its own Host, the client's authority as X-Forwarded-Host, and
        // no HTTP/2-only or hop-by-hop header.
        assert_eq!(echoed["version"], "HTTP/1.1", "{echoed}");
        assert_eq!(echoed["path"], format!("/echo/{i}"));
        assert_eq!(echoed["query"], format!("q={i}"));
        assert_eq!(echoed["body"], format!("body {i}"));
        let backend_authority = backend.url.trim_start_matches("http://");
        assert_eq!(
            echoed_header(&echoed, "host").as_deref(),
            Some(backend_authority)
        );
        assert_eq!(
            echoed_header(&echoed, "x-forwarded-host"),
            Some(format!("127.0.0.1:{port}"))
        );
        assert_eq!(
            echoed_header(&echoed, "x-forwarded-proto").as_deref(),
            Some("https")
        );
        assert_eq!(echoed_header(&echoed, "x-custom"), Some(format!("c{i}")));
        assert_eq!(echoed_header(&echoed, "te"), None, "{echoed}");
        // Via names the protocol the gateway received.
        assert!(
            echoed_header(&echoed, "via").is_some_and(|v| v.starts_with("2 ")),
            "{echoed}"
        );
    }

    // curl (nghttp2) negotiates h2 on its own for https.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--http2", "--cacert", &path(&ca)])
        .args(["-o", "/dev/null", "-w", "%{http_version} %{http_code}"])
        .arg(format!("https://127.0.0.1:{port}/orders/hello"))
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200", "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_service_registers_through_the_rust_sdk_over_https() {
    let pki = Pki::new("gateway CA");
    let leaf = pki.server();
    let (ca, cert, key) = (
        file("ca", &pki.pem()),
        file("cert", &leaf.cert_pem),
        file("key", &leaf.key_pem),
    );
    let gw = gateway(&format!(
        "lease: {{ ttl: 1s, heartbeat_interval: 200ms, preservation_ratio: 1 }}\n\
         tls: {{ cert_file: {}, key_file: {} }}\n",
        path(&cert),
        path(&key),
    ));
    gw.expect_line("TLS on the HTTP and gRPC listeners", LONG);
    let https = format!("https://{}", gw.addr);
    let https_by_name = format!("https://localhost:{}", gw.addr.rsplit_once(':').unwrap().1);
    let ca_path = path(&ca);
    let config = client_config(&[&pki], &[b"http/1.1"]);
    // Lists the replicas of `service` over TLS.
    let replicas = |service: &'static str| {
        let config = Arc::clone(&config);
        let addr = gw.addr.clone();
        async move {
            let mut tls = handshake(&addr, "127.0.0.1", config).await.unwrap();
            let (_, body) = get_on(&mut tls, &format!("/registry/{service}")).await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            v["replicas"].as_array().cloned().unwrap_or_default()
        }
    };

    // Without the CA the gateway's certificate does not verify: the demo runs, never registered.
    let untrusted = demo("u", &["--service", "secure", "--gateway", &https]);
    untrusted.expect_line("registers as secure", LONG);
    // With it, by IP and by name: registered, kept past the 1 s lease TTL by heartbeats over TLS.
    let a = demo(
        "a",
        &[
            "--service",
            "secure",
            "--gateway",
            &https,
            "--gateway-ca",
            &ca_path,
        ],
    );
    let b = demo(
        "b",
        &[
            "--service",
            "secure",
            "--gateway",
            &https_by_name,
            "--gateway-ca",
            &ca_path,
        ],
    );
    e2e::eventually(LONG, "both trusted demos registered", || async {
        (replicas("secure").await.len() == 2).then_some(())
    })
    .await;
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < until {
        let list = replicas("secure").await;
        let mut addresses: Vec<&str> = list.iter().filter_map(|r| r["address"].as_str()).collect();
        addresses.sort();
        let mut want = vec![a.url.as_str(), b.url.as_str()];
        want.sort();
        assert_eq!(addresses, want, "{list:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And traffic reaches them through the TLS listener.
    let (code, body) = curl(&ca_path, &format!("{https}/secure/hello"));
    assert_eq!(code, "200", "{body}");
    drop(untrusted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_is_carried_through_the_tls_listener() {
    let pki = Pki::new("gateway CA");
    let leaf = pki.server();
    let (cert, key) = (file("cert", &leaf.cert_pem), file("key", &leaf.key_pem));
    let backend = demo("behind", &[]);
    let gw = gateway(&format!(
        "tls: {{ cert_file: {}, key_file: {} }}\nservices: {{ chat: [\"{}\"] }}\n",
        path(&cert),
        path(&key),
        backend.url
    ));
    gw.expect_line("TLS on the HTTP and gRPC listeners", LONG);
    let mut tls = handshake(
        &gw.addr,
        "127.0.0.1",
        client_config(&[&pki], &[b"http/1.1"]),
    )
    .await
    .unwrap();
    // The handshake and a masked text frame ("hi") right behind it.
    let mask = [1u8, 2, 3, 4];
    let mut request = format!(
        "GET /chat/ws HTTP/1.1\r\nHost: gateway\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {}\r\n\r\n",
        e2e::websocket::SAMPLE_KEY
    )
    .into_bytes();
    request.extend_from_slice(&[0x81, 0x82]);
    request.extend_from_slice(&mask);
    request.extend(b"hi".iter().zip(mask).map(|(b, m)| b ^ m));
    tls.write_all(&request).await.unwrap();
    let mut got = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = tls.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                if got.len() >= end + 4 + 4 {
                    return end + 4;
                }
            }
        }
    };
    let end = tokio::time::timeout(LONG, read)
        .await
        .expect("101 and echo");
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains(e2e::websocket::SAMPLE_ACCEPT), "{head}");
    // The echo comes back unmasked, over TLS.
    assert_eq!(&got[end..end + 4], &[0x81, 0x02, b'h', b'i']);
}

/// A tonic connector: TLS (ALPN `h2`) to the URI's host and port.
#[derive(Clone)]
struct TlsConnect(Arc<ClientConfig>);

impl tonic::codegen::Service<http::Uri> for TlsConnect {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = Arc::clone(&self.0);
        Box::pin(async move {
            let addr = format!("{}:{}", uri.host().unwrap(), uri.port_u16().unwrap());
            let tls = handshake(&addr, uri.host().unwrap(), config).await?;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            Ok(TokioIo::new(tls))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_listener_speaks_tls_with_h2() {
    let pki = Pki::new("gateway CA");
    let leaf = pki.server();
    let (cert, key) = (file("cert", &leaf.cert_pem), file("key", &leaf.key_pem));
    let gw = gateway(&format!(
        "tls: {{ cert_file: {}, key_file: {} }}\n",
        path(&cert),
        path(&key)
    ));
    // tonic has no TLS of its own here (no `tls-*` feature): the connector does the handshake, so the
    // URI keeps the http scheme.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gw.grpc_addr()))
        .unwrap()
        .connect_with_connector(TlsConnect(client_config(&[&pki], &[b"h2"])))
        .await
        .expect("gRPC over TLS");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "registry.v1.Registry".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    // h2c is no longer spoken there.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", gw.grpc_addr()))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await;
        assert!(r.is_err(), "h2c answered on the TLS listener");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_listener_certificate_for_new_handshakes_only() {
    let (first, second) = (Pki::new("first CA"), Pki::new("second CA"));
    let (a, b) = (first.server(), second.server());
    let (cert, key) = (file("cert", &a.cert_pem), file("key", &a.key_pem));
    let (gw, _config) = gateway_with_file(&format!(
        "tls: {{ cert_file: {}, key_file: {} }}\n",
        path(&cert),
        path(&key)
    ));
    // A fresh client (no session to resume) for every handshake: a resumed TLS session keeps the
    // certificate it was made with.
    let http1 = || client_config(&[&first, &second], &[b"http/1.1"]);
    let h2 = || client_config(&[&first, &second], &[b"h2"]);
    let grpc_addr = gw.grpc_addr();
    let mut old = handshake(&gw.addr, "localhost", http1()).await.unwrap();
    assert_eq!(peer_leaf(&old), a.der);
    let grpc = handshake(&grpc_addr, "localhost", h2()).await;
    assert_eq!(peer_leaf(&grpc.unwrap()), a.der);

    // Renewed in place: same paths, new content.
    std::fs::write(&cert.0, &b.cert_pem).unwrap();
    std::fs::write(&key.0, &b.key_pem).unwrap();
    gw.hangup();
    gw.expect_line("TLS certificate of the listeners reloaded", LONG);
    let new = handshake(&gw.addr, "localhost", http1()).await.unwrap();
    assert_eq!(peer_leaf(&new), b.der);
    let grpc = handshake(&grpc_addr, "localhost", h2()).await;
    assert_eq!(peer_leaf(&grpc.unwrap()), b.der);
    // The connection opened before the reload is untouched.
    let (status, _) = get_on(&mut old, "/healthz").await;
    assert_eq!(status, "HTTP/1.1 200 OK");

    // A bad file on reload: logged naming the field, the running certificate stays.
    std::fs::write(&cert.0, "not a certificate\n").unwrap();
    gw.hangup();
    let line = gw.expect_line("config reload failed", LONG);
    assert!(line.contains("tls.cert_file"), "{line}");
    let again = handshake(&gw.addr, "localhost", http1()).await.unwrap();
    assert_eq!(peer_leaf(&again), b.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_replica_is_reached_over_tls_with_h2() {
    let pki = Pki::new("replica CA");
    let (port, seen, task) = grpc_tls_replica(&pki.server()).await;
    let ca = file("ca", &pki.pem());
    let gw = gateway(&format!(
        "upstream: {{ tls: {{ ca_file: {} }} }}\n",
        path(&ca)
    ));
    let c = Client::new();
    let r = c
        .post_json(
            &format!("{}/register", gw.url),
            &serde_json::json!({
                "service": "echo",
                "address": format!("https://127.0.0.1:{port}"),
                "protocol": "grpc",
                "grpc_services": ["demo.v1.Echo"],
            }),
        )
        .await;
    assert!(r.status.is_success(), "{} {:?}", r.status, r.body);
    let mut echo =
        registry_proto::demo::v1::echo_client::EchoClient::new(e2e::channel(&gw.grpc_url).await);
    for _ in 0..3 {
        let resp = echo
            .say(registry_proto::demo::v1::SayRequest {
                message: "hi".into(),
            })
            .await
            .expect("call over TLS");
        assert_eq!(resp.into_inner().message, "tls-grpc");
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen.iter()
            .all(|(alpn, scheme)| alpn.as_deref() == Some(&b"h2"[..])
                && scheme.as_deref() == Some("https")),
        "{seen:?}"
    );
    task.abort();
}

/// Runs the gateway with `yaml` to its exit: (code, stderr).
fn run(yaml: &str) -> (Option<i32>, String) {
    let (mut cmd, _file) = gateway_command(yaml);
    let out = cmd.stdin(Stdio::null()).output().expect("run gateway");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unreadable_or_mismatched_tls_files_fail_at_start_naming_the_field() {
    let pki = Pki::new("ca");
    let (a, b) = (pki.server(), pki.server());
    let (cert, other_key) = (file("cert", &a.cert_pem), file("key", &b.key_pem));
    let missing = temp_path("missing", "pem").display().to_string();

    let (code, err) = run(&format!(
        "tls: {{ cert_file: {missing}, key_file: {} }}\n",
        path(&other_key)
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "invalid config: tls.cert_file: cannot read {missing}: No such file or directory"
        )),
        "{err}"
    );

    let (code, err) = run(&format!(
        "tls: {{ cert_file: {}, key_file: {} }}\n",
        path(&cert),
        path(&other_key)
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("invalid config: tls.key_file: the key in"),
        "{err}"
    );
    assert!(err.contains("does not match the certificate"), "{err}");

    let (code, err) = run(&format!("upstream: {{ tls: {{ ca_file: {missing} }} }}\n"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("invalid config: upstream.tls.ca_file: cannot read"),
        "{err}"
    );

    let not_pem = file("notpem", "hello\n");
    let (code, err) = run(&format!(
        "upstream: {{ tls: {{ ca_file: {} }} }}\n",
        path(&not_pem)
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("upstream.tls.ca_file: no PEM certificate"),
        "{err}"
    );
}
