//! Compiles `proto/` with a vendored `protoc` (unless `PROTOC` names another), so the build
//! needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => path.into(),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let protos = [
        root.join("nimbus/invoker/v1/invoker.proto"),
        root.join("nimbus/dlq/v1/dlq.proto"),
    ];
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    tonic_prost_build::configure().compile_with_config(config, &protos, &[root])?;
    Ok(())
}
