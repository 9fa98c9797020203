//! Compiles the .proto files with protox (pure Rust, no `protoc`) and generates tonic clients and servers.

fn main() {
    let files = ["registry/v1/registry.proto", "demo/v1/demo.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["."]).expect("compile .proto files");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)
        .expect("generate code");
}
