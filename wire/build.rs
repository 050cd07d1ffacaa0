//! Generates the Rust message types from `proto/lars.proto` with quick-protobuf's `pb-rs`, so the
//! types can never drift from the schema. The generated file is post-processed in two small ways:
//! its inner attributes are dropped (the including module carries them, since `include!` cannot
//! take inner attributes) and the `.proto` comments are copied onto the generated structs and
//! fields as doc comments, so `cargo doc` documents every public item.

use pb_rs::{ConfigBuilder, types::FileDescriptor};
use std::collections::HashMap;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let proto_dir = manifest.join("proto");
    let proto = proto_dir.join("lars.proto");
    println!("cargo:rerun-if-changed={}", proto.display());

    let out = PathBuf::from(env("OUT_DIR"));
    let gen_dir = out.join("pb-rs");
    if gen_dir.exists() {
        std::fs::remove_dir_all(&gen_dir).expect("clear old generated code");
    }
    std::fs::create_dir_all(&gen_dir).expect("create generated code dir");
    let config = ConfigBuilder::new(
        std::slice::from_ref(&proto),
        None,
        Some(&gen_dir),
        &[proto_dir],
    )
    .expect("pb-rs config")
    .dont_use_cow(true)
    .build();
    FileDescriptor::run(&config).expect("pb-rs generates lars.proto");

    let generated = std::fs::read_to_string(gen_dir.join("lars.rs")).expect("read generated code");
    let schema = std::fs::read_to_string(&proto).expect("read lars.proto");
    let docs = proto_docs(&schema);
    let documented = add_docs(&generated, &docs);
    std::fs::write(out.join("lars.rs"), documented).expect("write documented code");
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name}"))
}

/// Maps "Message" and "Message.field" to the `//` comment lines just above them in the schema.
fn proto_docs(schema: &str) -> HashMap<String, Vec<String>> {
    let mut docs = HashMap::new();
    let mut pending: Vec<String> = Vec::new();
    let mut message = String::new();
    for line in schema.lines().map(str::trim) {
        if let Some(text) = line.strip_prefix("//") {
            pending.push(text.trim().to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("message ") {
            message = rest.trim_end_matches('{').trim().to_string();
            docs.insert(message.clone(), std::mem::take(&mut pending));
        } else if line.ends_with(';') && line.contains('=') && !message.is_empty() {
            let before_eq = line.split('=').next().unwrap_or_default();
            if let Some(field) = before_eq.split_whitespace().last() {
                docs.insert(format!("{message}.{field}"), std::mem::take(&mut pending));
            }
        } else {
            pending.clear();
        }
    }
    docs
}

fn add_docs(generated: &str, docs: &HashMap<String, Vec<String>>) -> String {
    let mut out = String::with_capacity(generated.len() * 2);
    let mut current = String::new();
    for line in generated.lines() {
        if line.starts_with("#![") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("pub struct ") {
            current = rest.trim_end_matches('{').trim().to_string();
            push_doc(&mut out, "", docs.get(&current), &current);
        } else if let Some((field, _)) = line
            .strip_prefix("    pub ")
            .and_then(|rest| rest.split_once(':'))
        {
            let key = format!("{current}.{field}");
            push_doc(&mut out, "    ", docs.get(&key), &key);
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn push_doc(out: &mut String, indent: &str, doc: Option<&Vec<String>>, what: &str) {
    let lines = doc
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| panic!("lars.proto has no comment for {what}"));
    for text in lines {
        out.push_str(indent);
        out.push_str("/// ");
        out.push_str(text);
        out.push('\n');
    }
}
