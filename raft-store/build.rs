//! Compiles raft-store's wire types with the protoc shipped by `protoc-bin-vendored`. The
//! Raft messages themselves come from raft-core (`eraftpb`), shared by path.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let protos = [
        "proto/metapb.proto",
        "proto/errorpb.proto",
        "proto/raft_serverpb.proto",
        "proto/raft_cmdpb.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    prost_build::Config::new()
        .protoc_executable(protoc)
        .bytes(["."])
        .extern_path(".eraftpb", "::raft_core::eraftpb")
        .compile_protos(&protos, &["proto", "../raft-core/proto"])?;
    Ok(())
}
