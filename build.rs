//! Compiles every `probes/*.bpf.c` into a libbpf skeleton in OUT_DIR (and lists the
//! compiled objects in OUT_DIR/probe_objects.rs), and turns the
//! integer `#define`s of `probes/common.h` and `probes/stacks.h` into Rust constants
//! (OUT_DIR/common_h.rs, OUT_DIR/stacks_h.rs).
//! It also watches `migrations/`: `sqlx::migrate!` embeds them, and a new file must
//! rebuild the server.
use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let probes =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo")).join("probes");
    println!("cargo:rerun-if-changed={}", probes.display());
    println!("cargo:rerun-if-changed=migrations");
    // The server is position-independent: its relative relocations packed (DT_RELR) take a
    // few KiB instead of most of a megabyte that the loader reads, and keeps resident, at
    // every start. A linker or C library too old for them leaves the usual table.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");

    let mut sources: Vec<PathBuf> = fs::read_dir(&probes)
        .expect("probes/ exists")
        .map(|entry| entry.expect("readable probes/ entry").path())
        .filter(|path| path.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    sources.sort();

    for header in ["common", "stacks"] {
        write_common_constants(
            &probes.join(format!("{header}.h")),
            &out_dir.join(format!("{header}_h.rs")),
        );
    }

    let mut objects = Vec::new();
    for source in sources {
        println!("cargo:rerun-if-changed={}", source.display());
        let file_name = source
            .file_name()
            .and_then(OsStr::to_str)
            .expect("utf-8 file name");
        let name = file_name.trim_end_matches(".bpf.c");
        let skel = out_dir.join(format!("{name}.skel.rs"));
        SkeletonBuilder::new()
            .source(&source)
            .obj(out_dir.join(format!("{name}.bpf.o")))
            .clang_args([OsStr::new("-I"), probes.as_os_str(), OsStr::new("-Wall")])
            .build_and_generate(&skel)
            .unwrap_or_else(|err| panic!("compiling {}: {err:#}", source.display()));
        objects.push(name.to_string());
    }
    write_probe_objects(&objects, &out_dir.join("probe_objects.rs"));
}

/// Each probe's compiled object: `ProbeObject` for its skeleton builder (in the tracker
/// `server/trackers/<name>/`, as libbpf-cargo names it), and the list of them all.
fn write_probe_objects(names: &[String], out: &std::path::Path) {
    let builder = |name: &str| -> String {
        let camel: String = name
            .split('_')
            .map(|part| {
                let mut chars = part.chars();
                chars.next().map_or(String::new(), |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            })
            .collect();
        format!("{name}::skel::{camel}SkelBuilder")
    };
    let mut code = String::new();
    for name in names {
        code += &format!(
            "impl crate::engine::ProbeObject for {} {{\n    \
             const NAME: &'static str = \"{name}\";\n    \
             const OBJECT: &'static [u8] =\n        \
             include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{name}.bpf.o\"));\n}}\n",
            builder(name)
        );
    }
    code += "/// Every probe's name and compiled object.\n\
             pub static PROBE_OBJECTS: &[(&str, &[u8])] = &[\n";
    for name in names {
        let builder = builder(name);
        code += &format!(
            "    (<{builder} as crate::engine::ProbeObject>::NAME, \
             <{builder} as crate::engine::ProbeObject>::OBJECT),\n"
        );
    }
    code += "];\n";
    fs::write(out, code).expect("OUT_DIR is writable");
}

/// `#define NAME 123` lines become `pub const NAME: usize = 123;`.
fn write_common_constants(header: &std::path::Path, out: &std::path::Path) {
    println!("cargo:rerun-if-changed={}", header.display());
    let text = fs::read_to_string(header).expect("probes/common.h is readable");
    let constants: String = text
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("#define"), Some(name), Some(value)) if value.parse::<usize>().is_ok() => {
                    Some(format!("pub const {name}: usize = {value};\n"))
                }
                _ => None,
            }
        })
        .collect();
    fs::write(out, constants).expect("OUT_DIR is writable");
}
