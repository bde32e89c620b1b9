//! Generates the LeanCloud door's protobuf types (`gateway::proto`) from
//! `proto/messages2.proto`. protox parses the file in Rust, so building
//! needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/messages2.proto");
    let files = protox::compile(["proto/messages2.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(files)?;
    Ok(())
}
