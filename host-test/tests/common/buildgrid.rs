//! A real BuildGrid (the REAPI v2 remote execution server, from PyPI, in the
//! venv `make tools` makes under target/) with its own PostgreSQL, each on a
//! free loopback port with a temporary directory, for the remote execution
//! tests and benchmarks. Self-contained (std, tempfile, libc, tokio, tonic,
//! bazel-remote-apis), so a benchmark can include it by `#[path]`.
//!
//! No process outlives its owner. Dropping a [`BuildGrid`] kills the whole
//! process group of the server, then stops PostgreSQL (`pg_ctl stop -m
//! immediate`) and removes the directories; a panic unwinding through a
//! half-started one does the same. Should this process die without dropping
//! them (killed, or exiting with one in a static), a watchdog `sh` beside
//! each reads a pipe from this process and cleans up when it closes.

#![allow(dead_code)]

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bazel_remote_apis::build::bazel::remote::execution::v2::{
    capabilities_client::CapabilitiesClient, GetCapabilitiesRequest, ServerCapabilities,
};

/// How long the server may take to answer Capabilities (it takes ~10 s).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// `bgd`: `$RUNQUEUE_BGD`, else the one `make tools` installs in
/// `target/buildgrid/venv`.
pub fn bgd_program() -> PathBuf {
    if let Some(p) = std::env::var_os("RUNQUEUE_BGD") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/buildgrid/venv/bin/bgd");
    assert!(
        p.is_file(),
        "{} is missing: run make tools (it installs BuildGrid there)",
        p.display()
    );
    p
}

/// Where PostgreSQL's programs are: `pg_config --bindir`.
pub fn pg_bindir() -> PathBuf {
    let out = Command::new("pg_config").arg("--bindir").output();
    let dir = out
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match dir {
        Some(d) if d.join("initdb").is_file() && d.join("pg_ctl").is_file() => d,
        _ => panic!("PostgreSQL is missing (pg_config --bindir has no initdb): run make tools"),
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// The uid and gid of the `postgres` user, which runs PostgreSQL when this
/// process is root (initdb and pg_ctl refuse root).
fn postgres_user() -> (u32, u32) {
    let name = std::ffi::CString::new("postgres").unwrap();
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "running as root, and no postgres user to run PostgreSQL as"
    );
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

/// `program` run in `dir`, as `postgres` when we are root.
fn as_postgres(program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
    let mut c = Command::new(program);
    c.current_dir(dir);
    if is_root() {
        let (uid, gid) = postgres_user();
        c.uid(uid).gid(gid);
    }
    c
}

/// A PostgreSQL program run in `dir`, as `postgres` when we are root.
fn pg_command(program: &str, dir: &Path) -> Command {
    as_postgres(pg_bindir().join(program), dir)
}

/// Runs `c` to its end and panics with its output when it fails.
fn run(c: &mut Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `sh` that runs `script` once its stdin closes (as it does when this
/// process ends, however), signals ignored; in its own process group.
fn watchdog(mut c: Command, script: &str) -> Child {
    c.arg("-c")
        .arg(format!("trap '' INT TERM HUP; read _; {script}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start a watchdog sh")
}

/// Whether process `pid` exists and is not a zombie.
pub fn pid_is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Runs `f` on a small runtime of its own thread, so that it works from any
/// thread, in a runtime or not.
fn block_on<T: Send>(f: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(f)
        })
        .join()
        .unwrap()
    })
}

/// A PostgreSQL server of its own, with database `bgd`, trusting any local
/// connection.
pub struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    pid: Option<u32>,
    watchdog: Child,
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("runqueue-pg-")
            .tempdir()
            .unwrap();
        if is_root() {
            let (uid, gid) = postgres_user();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let script = format!(
            "'{}' -D data stop -m immediate -w; rm -rf '{}'",
            pg_bindir().join("pg_ctl").display(),
            dir.path().display()
        );
        let watchdog = watchdog(as_postgres("sh", dir.path()), &script);
        let mut pg = Postgres {
            dir,
            port: free_port(),
            pid: None,
            watchdog,
        };
        pg.boot();
        pg
    }

    /// initdb, start, create the database.
    fn boot(&mut self) {
        let d = self.dir.path();
        run(
            pg_command("initdb", d).args([
                "-D",
                "data",
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ]),
            "initdb",
        );
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories='' \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port
        );
        run(
            pg_command("pg_ctl", d)
                .args(["-D", "data", "-l", "postgres.log", "-w", "-t", "60", "-o"])
                .arg(opts)
                .arg("start"),
            "pg_ctl start",
        );
        let pidfile = std::fs::read_to_string(d.join("data/postmaster.pid")).unwrap();
        self.pid = pidfile.lines().next().and_then(|l| l.trim().parse().ok());
        run(
            Command::new(pg_bindir().join("createdb"))
                .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
                .arg(self.port.to_string())
                .arg("bgd"),
            "createdb",
        );
    }

    /// `postgresql://postgres@127.0.0.1:PORT/bgd`
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/bgd", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's pid.
    pub fn pid(&self) -> u32 {
        self.pid.expect("PostgreSQL started")
    }

    /// PostgreSQL's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = pg_command("pg_ctl", self.dir.path())
            .args(["-D", "data", "stop", "-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

/// A running `bgd server start`: a watchdog `sh` leads its process group,
/// `bgd` (and whatever it starts) joins it; dropping it kills the group.
struct Server {
    watchdog: Child,
    bgd: Option<Child>,
}

impl Server {
    fn pgid(&self) -> i32 {
        self.watchdog.id() as i32
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        unsafe { libc::kill(-self.pgid(), libc::SIGKILL) };
        let _ = self.watchdog.wait();
        if let Some(bgd) = &mut self.bgd {
            let _ = bgd.wait();
        }
    }
}

/// A BuildGrid serving the REAPI (Capabilities, Execution, Operations,
/// ActionCache, CAS, ByteStream) and the Remote Workers API (Bots) for
/// instance [`BuildGrid::instance`] on `127.0.0.1:PORT`, without TLS or
/// authentication; CAS on disk, its scheduler in its own PostgreSQL.
pub struct BuildGrid {
    dir: tempfile::TempDir,
    port: u16,
    instance: String,
    server: Option<Server>,
    pg: Postgres,
}

impl BuildGrid {
    /// PostgreSQL, the migrated database, the config, the server: started
    /// and answering Capabilities (about 15 s).
    pub fn start() -> BuildGrid {
        let t = Instant::now();
        let pg = Postgres::start();
        let pg_time = t.elapsed();
        let t = Instant::now();
        run(
            Command::new(bgd_program())
                .args(["migrate", "apply"])
                .arg(pg.url()),
            "bgd migrate apply",
        );
        let migrate_time = t.elapsed();
        let mut bg = BuildGrid {
            dir: tempfile::Builder::new()
                .prefix("runqueue-bgd-")
                .tempdir()
                .unwrap(),
            port: free_port(),
            instance: "main".to_string(),
            server: None,
            pg,
        };
        std::fs::write(bg.config_path(), bg.config()).unwrap();
        let t = Instant::now();
        bg.start_server();
        eprintln!(
            "BuildGrid at {}: PostgreSQL {pg_time:.1?}, migrate {migrate_time:.1?}, server {:.1?}",
            bg.url(),
            t.elapsed()
        );
        bg
    }

    /// The server's configuration (YAML).
    pub fn config(&self) -> String {
        format!(
            r#"# runqueue's test BuildGrid: REAPI and Bots for instance "{instance}"
server:
  - !channel
    address: "127.0.0.1:{port}"
    insecure-mode: true

# Every Execute stream holds one of the server's threads until its
# action is done (the default pool: 5 per CPU, 10 on two cores).
thread-pool-size: 128
authorization:
  method: none

connections:
  - !sql-connection &sql
    connection-string: "{db}"
    pool-size: 10
    max-overflow: 20

storages:
  - !disk-storage &cas
    path: "{cas}"

caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 100000
    allow-updates: true
    cache-failed-actions: false

schedulers:
  - !sql-scheduler &scheduler
    sql: *sql
    storage: *cas
    action-cache: *ac
    poll-interval: 0.1
    bot-poll-interval: 0.1
    # A bot silent for 15 s is gone: its leases go back to the queue.
    bot-session-keepalive-timeout: 15
    session-expiry-timer-interval: 1.0
    # On completing a lease, a bot gets the next queued job at once.
    proactive-fetch-full-queue: true
    assigners:
      - !priority-age-assigner
        count: 1
        interval: 0.05
        jitter-factor: 0.0
        failure-backoff: 0.5

instances:
  - name: "{instance}"
    services:
      - !action-cache
        cache: *ac
      - !execution
        scheduler: *scheduler
        endpoints: [execution, operations]
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
      # UpdateBotSession long-polls only for a bot holding no lease: else
      # one with room for more waits (80% of its deadline) for work, and
      # its report of a finished lease behind that wait.
      - !bots
        scheduler: *scheduler
        long-poll-during-execution: false
"#,
            port = self.port,
            db = self.pg.url(),
            cas = self.dir.path().join("cas").display(),
            instance = self.instance,
        )
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("bgd.yml")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("bgd.log")
    }

    /// `grpc://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The REAPI instance name the server serves ("main").
    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn postgres(&self) -> &Postgres {
        &self.pg
    }

    /// The pid of `bgd` (its process group's is [`BuildGrid::server_pgid`]).
    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref()?.bgd.as_ref().map(Child::id)
    }

    /// The process group of the server: `bgd`, what it starts, a watchdog.
    pub fn server_pgid(&self) -> Option<u32> {
        self.server.as_ref().map(|s| s.pgid() as u32)
    }

    /// The server's output so far (its log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Kills the server (its whole process group); the database stays.
    pub fn stop_server(&mut self) {
        self.server = None;
    }

    /// Starts the server (again) on the same port; returns once it answers.
    pub fn start_server(&mut self) {
        assert!(self.server.is_none(), "the BuildGrid server is running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let (config, dir) = (self.config_path(), self.dir.path().to_path_buf());
        let script = format!("rm -rf '{}'; kill -KILL 0", dir.display());
        let watchdog = watchdog(Command::new("sh"), &script);
        let server = self.server.insert(Server {
            watchdog,
            bgd: None,
        });
        let pgid = server.pgid();
        let bgd = Command::new(bgd_program())
            .args(["server", "start", "-v"])
            .arg(config)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(pgid)
            .spawn()
            .expect("start bgd server");
        server.bgd = Some(bgd);
        self.wait_ready();
    }

    /// Waits until the server answers Capabilities, or panics.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let err = match self.capabilities() {
                Ok(_) => return,
                Err(e) => e,
            };
            let bgd = self.server.as_mut().and_then(|s| s.bgd.as_mut()).unwrap();
            if let Ok(Some(status)) = bgd.try_wait() {
                panic!("bgd server exited ({status}):\n{}", self.log_tail());
            }
            if Instant::now() > deadline {
                panic!(
                    "BuildGrid did not answer Capabilities at {} within {START_TIMEOUT:?}: {err}\n\
                     --- its log, last lines:\n{}",
                    self.url(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A Capabilities call to the server for its instance (5 s at most).
    pub fn capabilities(&self) -> Result<ServerCapabilities, String> {
        let endpoint = format!("http://127.0.0.1:{}", self.port);
        let instance_name = self.instance.clone();
        block_on(async move {
            let channel = tonic::transport::Endpoint::from_shared(endpoint)
                .map_err(|e| e.to_string())?
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(5))
                .connect()
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let request = GetCapabilitiesRequest { instance_name };
            CapabilitiesClient::new(channel)
                .get_capabilities(request)
                .await
                .map(|r| r.into_inner())
                .map_err(|e| format!("GetCapabilities: {e}"))
        })
    }
}

impl Drop for BuildGrid {
    fn drop(&mut self) {
        self.stop_server();
    }
}
