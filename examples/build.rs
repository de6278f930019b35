//! Generates the KV service's wire types with a vendored `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/kvrpc.proto";
    println!("cargo:rerun-if-changed={proto}");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.bytes(["."]);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &[proto], &["proto"])?;
    Ok(())
}
