//! Leases: acquire, show, renew, beat, release, list, and their tags for tools.

use super::*;

pub(super) async fn lease(args: ClientArgs, cmd: LeaseCmd) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.addr, args.token.as_deref())?;
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
            project,
            task,
            owner,
            ttl,
            heartbeat_interval,
            labels,
            regions,
            format,
        } => {
            let req = AcquireRequest {
                project,
                task,
                owner,
                ttl,
                heartbeat_interval,
                labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                regions,
            };
            let l = client.acquire(&req).await?;
            match format {
                Some(TagFormat::Env) => write!(out, "{}", output::tags_env(&l))?,
                Some(TagFormat::Json) => write!(out, "{}", output::tags_json(&l.tags))?,
                Some(TagFormat::Terraform) => write!(out, "{}", output::tags_terraform(&l))?,
                None => show(&mut out, &l)?,
            }
        }
        LeaseCmd::Renew { id, ttl } => show(&mut out, &client.renew(&id, ttl).await?)?,
        LeaseCmd::Heartbeat { id } => show(&mut out, &client.post_empty(&id, "heartbeat").await?)?,
        LeaseCmd::Release { id } => show(&mut out, &client.post_empty(&id, "release").await?)?,
        LeaseCmd::Show { id } => show(&mut out, &client.show(&id).await?)?,
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
