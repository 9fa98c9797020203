//! docker-compose.yml cannot run here (no Docker engine): check it statically against the real binaries.

use std::process::Command;

use e2e::process::bin;
use serde_yaml_ng::Value;

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn help(binary: &str) -> String {
    let out = Command::new(bin(binary))
        .arg("--help")
        .output()
        .expect("run --help");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn compose_file_parses_and_names_only_real_images_flags_and_variables() {
    let root = repo_root();
    let text =
        std::fs::read_to_string(root.join("docker-compose.yml")).expect("docker-compose.yml");
    let mut doc: Value = serde_yaml_ng::from_str(&text).expect("valid YAML");
    doc.apply_merge().expect("YAML merge keys resolve");
    let services = doc["services"].as_mapping().expect("services mapping");
    assert!(services.len() >= 4, "gateway and three replicas");
    let names: Vec<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    let demo_help = help("demo-http");
    let grpc_help = help("demo-grpc");
    let mut saw_gateway = false;
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        assert!(
            svc["healthcheck"]["test"].is_sequence(),
            "{name}: no health check"
        );
        let deps: Vec<&str> = match &svc["depends_on"] {
            Value::Sequence(s) => s.iter().filter_map(|d| d.as_str()).collect(),
            Value::Mapping(m) => m.keys().filter_map(|d| d.as_str()).collect(),
            _ => Vec::new(),
        };
        for d in deps {
            assert!(names.contains(&d), "{name} depends on unknown service {d}");
        }
        if let Some(image) = svc["image"].as_str() {
            // Off-the-shelf images (redis, nginx): their mounted files must exist in the repository.
            assert!(
                svc["build"].is_null(),
                "{name}: both image {image} and build"
            );
            for v in svc["volumes"].as_sequence().into_iter().flatten() {
                let src = v.as_str().unwrap().split(':').next().unwrap();
                assert!(root.join(src).exists(), "{name}: mounts missing {src}");
            }
            continue;
        }
        let build = &svc["build"];
        let dockerfile = build["dockerfile"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no build.dockerfile"));
        let df = std::fs::read_to_string(root.join(dockerfile))
            .unwrap_or_else(|_| panic!("{name}: {dockerfile} missing"));
        if df.contains("registry-gateway") {
            saw_gateway = true;
            // Every GATEWAY_* variable must be one the gateway accepts: start it with exactly those.
            let mut cmd = Command::new(bin("registry-gateway"));
            cmd.arg("--listen").arg("127.0.0.1:0").env_clear();
            for (k, v) in svc["environment"].as_mapping().into_iter().flatten() {
                let (k, v) = (k.as_str().unwrap(), v.as_str().unwrap());
                // The container listens on all interfaces; the check binds loopback.
                let v = if k == "GATEWAY_LISTEN" || k == "GATEWAY_GRPC_LISTEN" {
                    "127.0.0.1:0"
                } else {
                    v
                };
                cmd.env(k, v);
            }
            // Accepted once it says it listens (it reads its environment before that); a refused
            // environment ends the process with the reason on stderr instead.
            eprintln!("{name}: starting the gateway with its compose environment");
            // Panics with the gateway's output if it exits before listening.
            let gateway = e2e::Proc::spawn(cmd, Vec::new());
            assert!(
                gateway.url.starts_with("http://127.0.0.1:"),
                "{}",
                gateway.url
            );
        } else {
            let binary = svc["entrypoint"][0].as_str().unwrap_or("demo-http");
            assert!(
                df.contains(binary),
                "{name}: {dockerfile} does not ship {binary}"
            );
            let help = if binary == "demo-grpc" {
                &grpc_help
            } else {
                &demo_help
            };
            for arg in svc["command"].as_sequence().expect("command list") {
                let arg = arg.as_str().unwrap();
                if arg.starts_with("--") {
                    assert!(help.contains(arg), "{name}: {binary} has no flag {arg}");
                }
            }
        }
    }
    assert!(saw_gateway);
}
