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
            project,
            task,
            owner,
            ttl,
            heartbeat_interval,
            labels,
            regions,
            format,
            key,
        } => {
            // A key of this invocation's own makes its retries safe (the first attempt may
            // have made the lease without the answer arriving).
            let key = key.unwrap_or_else(|| format!("cli:{}", uuid::Uuid::new_v4()));
            let req = AcquireRequest {
                project,
                task,
                owner,
                ttl,
                heartbeat_interval,
                labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                regions,
                key: Some(key),
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
