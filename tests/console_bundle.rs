//! The committed console (web/dist) is what its sources build to, as the schema's drift
//! test holds schema/schema.graphql to the code: a fresh build with the locked
//! dependencies, in a scratch directory, must match it byte for byte.

mod common;

use std::process::Command;

#[test]
fn the_committed_console_is_what_its_sources_build() {
    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/web");
    if !std::path::Path::new(web)
        .join("node_modules/typescript")
        .exists()
    {
        common::skip(
            "the_committed_console_is_what_its_sources_build",
            "needs web/node_modules (make deps)",
        );
        return;
    }
    let out = common::TempDir::new("console-build");
    let built = Command::new("node")
        .arg(format!("{web}/build.mjs"))
        .env("CONSOLE_OUT", out.path())
        .output()
        .expect("node runs (make deps installs it)");
    assert!(
        built.status.success(),
        "the console does not build: {}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    for (built, committed) in [
        ("index.html", "dist/index.html"),
        ("console.js", "dist/console.js"),
        ("console.css", "dist/console.css"),
        ("THIRD_PARTY_LICENSES.txt", "THIRD_PARTY_LICENSES.txt"),
    ] {
        let fresh = std::fs::read(out.join(built)).unwrap();
        let kept = std::fs::read(format!("{web}/{committed}")).unwrap();
        assert!(
            fresh == kept,
            "web/{committed} differs from what web/src builds to: run `make console` and commit it"
        );
    }
}
