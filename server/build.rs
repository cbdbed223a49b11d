//! Generates the gRPC code of `proto/geodir/v1/*.proto` (protoc: Debian's
//! `protobuf-compiler`, installed by scripts/setup).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto/geodir/v1/replication.proto");
    println!("cargo:rerun-if-changed=../proto/geodir/v1/directory.proto");
    tonic_prost_build::configure().compile_protos(
        &[
            "../proto/geodir/v1/replication.proto",
            "../proto/geodir/v1/directory.proto",
        ],
        &["../proto"],
    )?;
    Ok(())
}
