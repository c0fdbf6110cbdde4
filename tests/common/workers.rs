//! `pedulicovid worker` child processes for the multi-process tests
//! (`engine`, `chaos`), killed when dropped so a failing test leaks none.
//! Each child's stderr goes to a log file, whose tail is printed when the
//! test fails.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use carrier_sim::SimHandle;
use pedulicovid::app::App;
use rand::Rng;

pub struct Workers {
    dir: tempfile::TempDir,
    config: PathBuf,
    db_url: String,
    env: Vec<(String, String)>,
    /// Every child ever started, with its log; killed ones stay (reaped).
    children: Vec<(Child, PathBuf)>,
    /// Indices into `children` of the ones alive.
    alive: Vec<usize>,
}

impl Workers {
    /// `env` comes on top of what every worker here needs: the database, a
    /// gateway "sim" at the simulator's URL, the public URL of the test's HTTP server (for the
    /// `dlr-url`; the callback token is shared through the database).
    pub fn new(db_url: &str, sim: &SimHandle, app: &App, env: &[(&str, &str)]) -> Workers {
        let dir = tempfile::tempdir().expect("temp dir");
        // An empty settings file, so a `pedulicovid.toml` in the working
        // directory cannot interfere: everything comes from the environment.
        let config = dir.path().join("workers-test.toml");
        std::fs::write(&config, "# worker processes: see the environment\n").expect("config file");
        let port = app.port().expect("the test app serves HTTP");
        let mut all: Vec<(String, String)> = vec![
            ("PEDULICOVID__DATABASE_URL".into(), db_url.into()),
            // The test's simulator, as a real Kannel-dialect gateway named
            // like the test app's (same callback token in the database).
            ("PEDULICOVID__GATEWAYS__0__NAME".into(), "sim".into()),
            (
                "PEDULICOVID__GATEWAYS__0__KANNEL__SENDSMS_URL".into(),
                sim.sendsms_url(),
            ),
            (
                "PEDULICOVID__HTTP__PUBLIC_URL".into(),
                format!("http://127.0.0.1:{port}"),
            ),
            ("RUST_LOG".into(), "warn".into()),
        ];
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Workers {
            dir,
            config,
            db_url: db_url.into(),
            env: all,
            children: vec![],
            alive: vec![],
        }
    }

    /// Starts one more worker process; returns its pid.
    pub fn spawn(&mut self) -> u32 {
        let log = self
            .dir
            .path()
            .join(format!("worker-{}.log", self.children.len()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pedulicovid"));
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--database-url")
            .arg(&self.db_url)
            .arg("worker")
            // Same templates directory as the test process.
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"));
        for (k, _) in std::env::vars() {
            if k.starts_with("PEDULICOVID__") {
                cmd.env_remove(k);
            }
        }
        // Each worker's metrics on a free port (several share this host).
        cmd.env("PEDULICOVID__METRICS__LISTEN", "127.0.0.1:0");
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let child = cmd.spawn().expect("worker process starts");
        let pid = child.id();
        self.alive.push(self.children.len());
        self.children.push((child, log));
        pid
    }

    /// SIGKILL (`Child::kill`) to the `i`-th worker started, reaped at once;
    /// returns its pid.
    pub fn kill(&mut self, i: usize) -> u32 {
        self.alive.retain(|&a| a != i);
        let (child, _) = &mut self.children[i];
        let pid = child.id();
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        pid
    }

    /// SIGKILLs a random live worker and reaps it; returns its pid.
    pub fn kill_random(&mut self) -> u32 {
        let i = self.alive[rand::thread_rng().gen_range(0..self.alive.len())];
        self.kill(i)
    }

    /// No live worker exited on its own (a crash or a refused setting).
    pub fn assert_alive(&mut self) {
        for &i in &self.alive {
            let (child, log) = &mut self.children[i];
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "worker {i} exited by itself ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for (i, (child, log)) in self.children.iter_mut().enumerate() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail = &text[text.len().saturating_sub(4000)..];
                eprintln!("--- worker {i} stderr (tail) ---\n{tail}");
            }
        }
    }
}
