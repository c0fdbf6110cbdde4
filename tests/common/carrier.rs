//! The real carrier harness (`shared/carrier`: Kannel bearerbox + smsbox and
//! the SMPP SMSC simulator) for the tests that run against it
//! (`kannel_harness`, `kannel_outage`): start, stop, and what `carrier.env`
//! says.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What the tests need from the running harness (`carrier.env`).
#[derive(Debug, Clone)]
pub struct Carrier {
    pub sendsms_url: String,
    pub username: String,
    pub password: String,
    pub run_dir: PathBuf,
}

impl Carrier {
    /// `127.0.0.1:PORT` of smsbox's sendsms listener.
    pub fn sendsms_addr(&self) -> String {
        let u = url::Url::parse(&self.sendsms_url).expect("KANNEL_SENDSMS_URL is a URL");
        format!(
            "{}:{}",
            u.host_str().unwrap_or("127.0.0.1"),
            u.port_or_known_default().unwrap_or(13913)
        )
    }
}

/// The first start of the harness in this test binary (it may install
/// Kannel with apt-get); the result, or the failure with start.sh's output,
/// is shared by every test in it. `OnceLock::get_or_init` makes concurrent
/// callers wait for the one running initialiser.
pub static CARRIER: OnceLock<Result<Carrier, String>> = OnceLock::new();

/// The running harness, started once per test binary. Panics (fails the
/// test) with start.sh's output when it cannot be started.
pub async fn carrier() -> Carrier {
    let result = tokio::task::spawn_blocking(|| CARRIER.get_or_init(start_harness).clone())
        .await
        .expect("harness start-up thread");
    match result {
        Ok(c) => c,
        Err(e) => panic!("the Kannel carrier harness is not available:\n{e}"),
    }
}

pub fn carrier_dir() -> PathBuf {
    match std::env::var_os("PEDULICOVID_CARRIER_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/carrier"),
    }
}

pub fn run_dir() -> PathBuf {
    std::env::var_os("CARRIER_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/pedulicovid-carrier"))
}

/// Runs `bash <script>` in the carrier directory; `Err` holds its output.
pub fn run_script(name: &str) -> Result<String, String> {
    let dir = carrier_dir();
    let script = dir.join(name);
    if !script.is_file() {
        return Err(format!(
            "carrier harness not found: {} (set PEDULICOVID_CARRIER_DIR)",
            script.display()
        ));
    }
    let started = Instant::now();
    // The scripts send their background processes' output to files in the
    // run directory, so reading stdout/stderr to the end does not wait on
    // them. Each stderr line (the scripts' log) is kept with the time it
    // came, which shows which part of a stop or start took long.
    let mut child = Command::new("bash")
        .arg(&script)
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running bash {}: {e}", script.display()))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let log = std::thread::spawn(move || {
        let mut timed = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            timed.push_str(&format!(
                "{:>8.3}s {line}\n",
                started.elapsed().as_secs_f64()
            ));
        }
        timed
    });
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for bash {}: {e}", script.display()))?;
    let stderr = log.join().unwrap_or_default();
    let output = format!("--- stdout ---\n{stdout}--- stderr ---\n{stderr}");
    if status.success() {
        eprintln!("{name} done after {:?}:\n{stderr}", started.elapsed());
        Ok(output)
    } else {
        Err(format!(
            "bash {} failed ({status}) after {:?}:\n{output}",
            script.display(),
            started.elapsed()
        ))
    }
}

/// Reads `carrier.env` of the running harness.
pub fn read_env(start_output: &str) -> Result<Carrier, String> {
    let env_file = run_dir().join("carrier.env");
    let text = std::fs::read_to_string(&env_file).map_err(|e| {
        format!(
            "reading {}: {e}\nstart.sh said:\n{start_output}",
            env_file.display()
        )
    })?;
    let vars: HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let get = |k: &str| {
        vars.get(k)
            .map(|v| v.to_string())
            .ok_or_else(|| format!("{} has no {k}:\n{text}", env_file.display()))
    };
    Ok(Carrier {
        sendsms_url: get("KANNEL_SENDSMS_URL")?,
        username: get("KANNEL_SENDSMS_USER")?,
        password: get("KANNEL_SENDSMS_PASS")?,
        run_dir: vars
            .get("CARRIER_RUN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(run_dir),
    })
}

/// `start.sh`, made robust for a restart right after a stop: it refuses to
/// start while a port is still taken or part of the harness still runs, so
/// on failure stop what is left, wait, and try again (three times).
pub fn start_harness() -> Result<Carrier, String> {
    let mut errors = vec![];
    for attempt in 0..3 {
        if attempt > 0 {
            let _ = run_script("stop.sh");
            std::thread::sleep(Duration::from_secs(1));
        }
        match run_script("start.sh") {
            Ok(output) => return read_env(&output),
            Err(e) => errors.push(e),
        }
    }
    Err(errors.join("\n\n"))
}

/// `stop.sh`, then wait until nothing listens on the sendsms port any more.
pub fn stop_harness(carrier: &Carrier) {
    if let Err(e) = run_script("stop.sh") {
        panic!("stopping the carrier harness failed:\n{e}");
    }
    let addr = carrier.sendsms_addr();
    let limit = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&addr).is_ok() {
        assert!(
            Instant::now() < limit,
            "sendsms port {addr} still open 20 s after stop.sh"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
