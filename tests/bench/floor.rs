//! The overhead floor: `tests/programs/bare_sys_exit.bpf.c`, an empty program attached
//! to every system call's exit, which costs whatever attaching there costs at all.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The empty program, loaded and attached until dropped.
pub struct Bare {
    _object: libbpf_rs::Object,
    _link: libbpf_rs::Link,
}

impl Bare {
    pub fn attach(object_file: &Path) -> Bare {
        let object = libbpf_rs::ObjectBuilder::default()
            .open_file(object_file)
            .and_then(|open| open.load())
            .expect("the bare program loads");
        let link = object
            .progs_mut()
            .next()
            .expect("one program")
            .attach()
            .expect("the bare program attaches");
        Bare {
            _object: object,
            _link: link,
        }
    }
}

/// Builds the program with clang into `dir`; returns the object file.
pub fn build_bare(dir: &Path) -> PathBuf {
    let source = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/programs/bare_sys_exit.bpf.c"
    );
    let object = dir.join("bare_sys_exit.bpf.o");
    let built = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-c", source, "-o"])
        .arg(&object)
        .status()
        .expect("clang runs (make deps installs it)");
    assert!(built.success(), "building {source} failed");
    object
}
