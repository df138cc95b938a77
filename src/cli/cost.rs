//! Spend: `cost`.

use super::*;

pub(super) async fn cost(
    client: ClientArgs,
    by: String,
    since: String,
    refresh: bool,
) -> anyhow::Result<ExitCode> {
    let api = client.client()?;
    if refresh {
        output::while_waiting(
            "refreshing spend from Cost Explorer",
            // A scheduled refresh takes seconds; ten minutes covers a slow Cost Explorer.
            client::start_when_free("cost-running", std::time::Duration::from_secs(600), || {
                api.refresh_cost()
            }),
        )
        .await?;
    }
    let spend = api.cost(&[("by", by.clone()), ("since", since)]).await?;
    match client.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&spend)?),
        Output::Csv => print!("{}", output::cost_csv(&spend)?),
        Output::Table => print!("{}", output::cost_table(&spend)),
    }
    Ok(ExitCode::SUCCESS)
}
