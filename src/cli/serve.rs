//! `pedulicovid run | serve | worker`: the long-running processes, until
//! SIGTERM or Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use crate::app::{App, Parts};
use crate::config::{Dialect, LogFormat, Settings};

pub(super) async fn until_signal(s: Settings, parts: Parts) -> anyhow::Result<ExitCode> {
    // What an operator watching the terminal must see is printed as text
    // with text logs, and logged (so each line stays JSON) with JSON logs.
    let format = s.log.format;
    let say = |msg: &str| match format {
        LogFormat::Text => eprintln!("{msg}"),
        LogFormat::Json => tracing::info!("{msg}"),
    };
    // `run`, `serve`, `worker` are production commands (`demo` is not): a
    // simulator gateway here is almost surely a settings mistake.
    for g in s
        .gateways
        .iter()
        .filter(|g| g.dialect == Dialect::Simulator)
    {
        let msg = format!(
            "gateway {:?} is the built-in simulator: messages sent here reach nobody \
             (set its dialect and URL to a real gateway; use `pedulicovid demo` for a trial)",
            g.name
        );
        tracing::warn!(gateway = %g.name, "{msg}");
        if format == LogFormat::Text {
            eprintln!("WARNING: {msg}");
        }
    }
    let app = App::start(s, parts).await?;
    if let Some(addr) = app.http_addr {
        say(&format!("pedulicovid listening on http://{addr}"));
    }
    if let Some(sim) = &app.simulator {
        say(&format!(
            "built-in carrier simulator on {}",
            sim.sendsms_url()
        ));
    }
    shutdown_signal().await;
    say("shutting down: finishing the batch in hand");
    app.stop(Duration::from_secs(30)).await;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
