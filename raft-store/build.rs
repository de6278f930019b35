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
        // Every applied write decodes a `RaftCmdRequest` and builds a `RaftCmdResponse`;
        // unboxed, the rarely set fields made them 344 and 872 bytes (a `Request` 520),
        // thousands per round. Boxed: 136, 56 and 232 bytes, and only a rare command
        // (admin, scan, delete range, compare-and-swap) or an error pays an allocation.
        .boxed(".raft_cmdpb.RaftCmdRequest.admin_request")
        .boxed(".raft_cmdpb.RaftCmdResponse.admin_response")
        .boxed(".raft_cmdpb.ResponseHeader.error")
        .boxed(".raft_cmdpb.Request.delete_range")
        .boxed(".raft_cmdpb.Request.scan")
        .boxed(".raft_cmdpb.Request.cas")
        .boxed(".raft_cmdpb.Response.scan")
        .boxed(".raft_cmdpb.Response.snap")
        .boxed(".raft_cmdpb.Response.cas")
        .compile_protos(&protos, &["proto", "../raft-core/proto"])?;
    Ok(())
}
