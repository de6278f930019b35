//! Compiles the Raft wire types with the protoc shipped by `protoc-bin-vendored`, so a build
//! needs nothing installed on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    println!("cargo:rerun-if-changed=proto/eraftpb.proto");
    prost_build::Config::new()
        .protoc_executable(protoc)
        .bytes(["."])
        // A message is moved several times on its way through a node; keeping the rare,
        // large snapshot behind a pointer makes each move copy 128 bytes instead of 272.
        .boxed(".eraftpb.Message.snapshot")
        .compile_protos(&["proto/eraftpb.proto"], &["proto"])?;
    Ok(())
}
