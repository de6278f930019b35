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
        // A session keeps up to 1024 results in a sorted `Vec` and drops its acknowledged
        // prefix on every command: boxed, a result is 16 bytes to shift instead of a whole
        // response (a client with hundreds of writes in flight made that shift most of
        // the session bookkeeping in apply).
        .boxed(".raft_serverpb.SessionResult.response")
        .compile_protos(&protos, &["proto", "../raft-core/proto"])?;
    Ok(())
}
