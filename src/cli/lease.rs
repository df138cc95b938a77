//! Leases: acquire, show, renew, beat, release, list, and their tags for tools.

use super::*;

pub(super) async fn lease(args: ClientArgs, cmd: LeaseCmd) -> anyhow::Result<ExitCode> {
    let client = args.client()?;
    let mut out = std::io::stdout().lock();
    let show = |out: &mut dyn Write, l: &LeaseView| -> anyhow::Result<()> {
        match args.output {
            Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(l)?)?,
            Output::Table | Output::Csv => write!(out, "{}", output::lease_details(l))?,
        }
        Ok(())
    };
    match cmd {
        LeaseCmd::Acquire {
            spec,
            heartbeat_interval,
            format,
        } => {
            let l = client.acquire(&spec.request(heartbeat_interval)).await?;
            match format {
                Some(TagFormat::Env) => write!(out, "{}", output::tags_env(&l))?,
                Some(TagFormat::Json) => write!(out, "{}", output::tags_json(&l.tags))?,
                Some(TagFormat::Terraform) => write!(out, "{}", output::tags_terraform(&l))?,
                None => show(&mut out, &l)?,
            }
        }
        LeaseCmd::Renew { id, ttl } => show(&mut out, &client.renew(&id, ttl).await?)?,
        LeaseCmd::Heartbeat { id } => show(&mut out, &client.post_empty(&id, "heartbeat").await?)?,
        LeaseCmd::Release { id } => match client.post_empty(&id, "release").await {
            Ok(l) => show(&mut out, &l)?,
            // Sent again after no answer: the first attempt released it.
            Err(e)
                if client.retried() > 0
                    && e.downcast_ref::<client::ApiFailure>()
                        .is_some_and(|f| f.code == "lease-released") =>
            {
                show(&mut out, &client.show(&id).await?)?
            }
            Err(e) => return Err(e),
        },
        LeaseCmd::Show {
            id,
            timeline: false,
        } => show(&mut out, &client.show(&id).await?)?,
        LeaseCmd::Show { id, timeline: true } => {
            let tl = client.timeline(&id).await?;
            match args.output {
                Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&tl)?)?,
                Output::Table | Output::Csv => write!(out, "{}", output::timeline_table(&tl))?,
            }
        }
        LeaseCmd::Run {
            spec,
            heartbeat_interval,
            tfvars,
            if_unavailable,
            command,
        } => {
            drop(out);
            let req = spec.request(Some(heartbeat_interval));
            return run(&args, &client, req, tfvars, if_unavailable, &command).await;
        }
        LeaseCmd::List {
            project,
            state,
            owner,
            limit,
            cursor,
        } => {
            let mut q: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            for (k, v) in [
                ("project", project),
                ("state", state),
                ("owner", owner),
                ("cursor", cursor),
            ] {
                if let Some(v) = v {
                    q.push((k, v));
                }
            }
            let page = client.list(&q).await?;
            match args.output {
                Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&page)?)?,
                Output::Table | Output::Csv => {
                    write!(out, "{}", output::lease_table(&page.items))?;
                    if let Some(c) = &page.next_cursor {
                        eprintln!("more: --cursor {c}");
                    }
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Whether `e` says the registry is out of reach (no answer, or a 5xx after the client's
/// retries), as opposed to a refusal (forbidden, quota, bad request), which always fails.
fn unavailable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<reqwest::Error>().is_some()
        || e.downcast_ref::<client::ApiFailure>()
            .is_some_and(|f| f.status.is_server_error())
}

/// `lease run`: acquire, run the command with the lease in its environment while heartbeating,
/// release when it ends, and exit with its status (128 + N when signal N ended it).
async fn run(
    args: &ClientArgs,
    client: &client::Client,
    req: AcquireRequest,
    tfvars: Option<PathBuf>,
    if_unavailable: IfUnavailable,
    command: &[String],
) -> anyhow::Result<ExitCode> {
    let lease = match client.acquire(&req).await {
        Ok(l) => Some(l),
        Err(e) if if_unavailable == IfUnavailable::Proceed && unavailable(&e) => {
            eprintln!(
                "ephemera: WARNING: {}; running `{}` WITHOUT a lease (--if-unavailable proceed): what it creates carries no lease tags",
                crate::error_chain(e.as_ref()),
                command.join(" ")
            );
            None
        }
        Err(e) => return Err(e.context("cannot take the lease; not running the command")),
    };
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..]);
    if let Some(l) = &lease {
        eprintln!(
            "ephemera: lease {} ({} / {}) until {}",
            l.id, l.project, l.task, l.expires_at
        );
        cmd.envs(lease_env(l));
        if let Some(path) = &tfvars
            && let Err(e) = std::fs::write(path, output::tags_terraform(l))
        {
            release(client, &l.id).await;
            return Err(anyhow::Error::new(e)
                .context(format!("cannot write {}; lease released", path.display())));
        }
    }
    let status = match cmd.spawn() {
        Ok(child) => {
            let beats = async {
                match &lease {
                    Some(l) => heartbeat(args, l).await,
                    None => std::future::pending().await,
                }
            };
            wait_forwarding_signals(child, beats).await
        }
        Err(e) => {
            eprintln!("ephemera: cannot run `{}`: {e}", command[0]);
            // As a shell answers a command it cannot find or run.
            Err(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            })
        }
    };
    if let Some(l) = &lease {
        if let Some(path) = &tfvars {
            let _ = std::fs::remove_file(path);
        }
        // A client made anew: the token file may have been refreshed while the command ran.
        match args.client() {
            Ok(client) => release(&client, &l.id).await,
            Err(e) => eprintln!(
                "ephemera: WARNING: cannot release lease {}: {e:#}; it ends on its own when heartbeats stop",
                l.id
            ),
        }
    }
    let code = match status {
        Ok(s) => exit_code_of(s),
        Err(code) => code,
    };
    Ok(ExitCode::from(code))
}

/// The environment a command run under `lease` gets: what `lease acquire --format env`
/// prints, and Terraform's `TF_VAR_` variables of the same names as `--format terraform`.
fn lease_env(l: &LeaseView) -> Vec<(String, String)> {
    let tags = serde_json::to_string(&l.tags).unwrap_or_default();
    let [id_var, tags_var] = output::TERRAFORM_VARIABLES;
    vec![
        ("EPHEMERA_LEASE_ID".into(), l.id.clone()),
        ("EPHEMERA_PROJECT".into(), l.project.clone()),
        ("EPHEMERA_TASK".into(), l.task.clone()),
        ("EPHEMERA_OWNER".into(), l.owner.clone()),
        ("EPHEMERA_LEASE_EXPIRES_AT".into(), l.expires_at.clone()),
        ("EPHEMERA_TAGS".into(), tags.clone()),
        (format!("TF_VAR_{id_var}"), l.id.clone()),
        // A JSON object is also an HCL object expression, as TF_VAR_ values are read.
        (format!("TF_VAR_{tags_var}"), tags),
    ]
}

/// Heartbeats every third of the lease's heartbeat interval, for ever (until dropped); a
/// failed beat is said on stderr and the next one tried (a lease that ended is said once).
/// Each beat makes its client anew, so a `--token-file` kept fresh (a short-lived CI ID
/// token) is read again.
async fn heartbeat(args: &ClientArgs, l: &LeaseView) {
    let every = l
        .heartbeat_interval
        .as_deref()
        .and_then(|i| crate::model::HumanDuration::parse(i).ok())
        .map_or(std::time::Duration::from_secs(100), |d| {
            std::time::Duration::from_secs((d.as_secs() / 3).max(1))
        });
    let id = &l.id;
    let mut ended = false;
    {
        loop {
            tokio::time::sleep(every).await;
            let beat = match args.client() {
                Ok(client) => client.post_empty(id, "heartbeat").await,
                Err(e) => Err(e),
            };
            match beat {
                Ok(_) => ended = false,
                Err(e) => {
                    let gone = e
                        .downcast_ref::<client::ApiFailure>()
                        .is_some_and(|f| f.status == reqwest::StatusCode::CONFLICT);
                    if gone && !ended {
                        eprintln!(
                            "ephemera: WARNING: lease {id} has ended ({}); what the command creates from now on may be reaped",
                            crate::error_chain(e.as_ref())
                        );
                        ended = true;
                    } else if !gone {
                        eprintln!(
                            "ephemera: heartbeat of lease {id} failed: {}; trying again in {}s",
                            crate::error_chain(e.as_ref()),
                            every.as_secs()
                        );
                    }
                }
            }
        }
    }
}

/// Waits for `child`, passing on SIGTERM and SIGHUP (a CI runner stopping the job signals this
/// process) and SIGINT unless stdin is a terminal: Ctrl-C there already reached the whole
/// process group, and a second SIGINT makes tools such as Terraform abort instead of stopping
/// cleanly.
async fn wait_forwarding_signals(
    mut child: tokio::process::Child,
    beside: impl std::future::Future<Output = ()>,
) -> Result<std::process::ExitStatus, u8> {
    use std::io::IsTerminal;
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::interrupt()),
    ) else {
        return child.wait().await.map_err(|_| 1);
    };
    let tty = std::io::stdin().is_terminal();
    let mut beside = std::pin::pin!(beside);
    let pid = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(i32::try_from(p).ok()?));
    loop {
        let sig = tokio::select! {
            s = child.wait() => return s.map_err(|_| 1),
            () = &mut beside => continue,
            _ = term.recv() => rustix::process::Signal::TERM,
            _ = hup.recv() => rustix::process::Signal::HUP,
            _ = int.recv() => {
                if tty {
                    continue;
                }
                rustix::process::Signal::INT
            }
        };
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }
}

/// A shell's exit code for `status`: its code, or 128 + the signal that ended it.
fn exit_code_of(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(255),
        (None, None) => 1,
    }
}

/// Releases lease `id`, saying so; a failure is said and left to the heartbeat interval.
async fn release(client: &client::Client, id: &str) {
    match client.post_empty(id, "release").await {
        Ok(_) => eprintln!("ephemera: lease {id} released"),
        Err(e)
            if e.downcast_ref::<client::ApiFailure>()
                .is_some_and(|f| f.code == "lease-released") =>
        {
            eprintln!("ephemera: lease {id} released")
        }
        Err(e) => eprintln!(
            "ephemera: WARNING: cannot release lease {id}: {}; it ends on its own when heartbeats stop",
            crate::error_chain(e.as_ref())
        ),
    }
}
