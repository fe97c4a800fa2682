//! A private PostgreSQL cluster for a test: `initdb` and `pg_ctl` as the `postgres`
//! user (PostgreSQL refuses to run as root), on a free loopback port, removed when
//! dropped, as the Docker tests start their own dockerd.

use std::path::PathBuf;
use std::process::Command;

pub struct Postgres {
    bin: PathBuf,
    dir: super::TempDir,
    /// The server's options (port, socket directory), for a start again.
    options: String,
    pub url: String,
}

/// The directory of `initdb` and `pg_ctl`: on PATH, else Debian's versioned directory.
fn server_binaries() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"));
    on_path
        .chain(debian)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

fn as_postgres(bin: &std::path::Path, tool: &str, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join(tool))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    /// Starts a cluster, or skips (fails in CI) where PostgreSQL's server is missing.
    pub fn start_or_skip(test: &str) -> Option<Postgres> {
        let Some(bin) = server_binaries() else {
            super::skip(
                test,
                "needs PostgreSQL's initdb and pg_ctl (Debian: postgresql)",
            );
            return None;
        };
        let dir = super::TempDir::new("postgres");
        let owner = |path: &std::path::Path| {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(path)
                .status()
                .unwrap();
            assert!(status.success(), "chown postgres {}", path.display());
        };
        owner(dir.path());
        let data = dir.join("data");
        let data_arg = data.to_str().unwrap();
        as_postgres(
            &bin,
            "initdb",
            &["-D", data_arg, "-A", "trust", "-U", "postgres"],
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.path().display()
        );
        let postgres = Postgres {
            bin,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            options,
            dir,
        };
        postgres.start();
        Some(postgres)
    }

    /// Starts the server (again), on the same port and data.
    pub fn start(&self) {
        let (data, log) = (self.dir.join("data"), self.dir.join("log"));
        let (data, log) = (data.to_str().unwrap(), log.to_str().unwrap());
        as_postgres(
            &self.bin,
            "pg_ctl",
            &["-D", data, "-o", &self.options, "-l", log, "-w", "start"],
        );
    }

    /// Stops the server at once, cutting every connection (an outage).
    pub fn stop(&self) {
        let data = self.dir.join("data");
        as_postgres(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Runs `sql` with psql; returns its unaligned output.
    /// Waits until `sql` answers `want` (within `within`), as rows written by a server's
    /// tasks appear; fails with the last answer.
    pub fn wait_for(&self, sql: &str, want: &str, within: std::time::Duration) {
        let deadline = std::time::Instant::now() + within;
        loop {
            let got = self.psql(sql);
            if got == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{sql}: {got}, not {want}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                &self.url,
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}
