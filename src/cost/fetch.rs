//! The Cost Explorer calls: GetCostAndUsage (daily, one tag × region, every page) and
//! ListCostAllocationTags. The only home of Cost Explorer SDK types.

use aws_config::SdkConfig;
use aws_sdk_costexplorer::error::ProvideErrorMetadata;
use aws_sdk_costexplorer::types::{
    CostAllocationTagStatus, DateInterval, Granularity, GroupDefinition, GroupDefinitionType,
};
use chrono::NaiveDate;

pub use crate::model::DaySpend;

use super::{parse_amount, tag_value};

/// What one grouping's fetch brought back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched {
    pub rows: Vec<DaySpend>,
    /// Every day the answer covered, with its `Estimated` flag.
    pub days: Vec<(NaiveDate, bool)>,
    /// Billed requests made (one per page).
    pub requests: u64,
}

/// Why a cost refresh failed; the SDK's or the store's error, when there is one, is its source.
#[derive(Debug, thiserror::Error)]
pub enum CostError {
    /// A Cost Explorer call failed.
    #[error("{op}: {code}")]
    Aws {
        op: &'static str,
        code: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The store failed.
    #[error("the spend store failed")]
    Store(#[from] crate::store::StoreError),
    /// The cost account is not one the config lists (no credentials or role to reach it).
    #[error(transparent)]
    Account(#[from] crate::inventory::UnknownAccount),
    /// An answer or a setting that cannot be used.
    #[error("{0}")]
    Invalid(String),
}

fn sdk_error<E>(op: &'static str, e: aws_sdk_costexplorer::error::SdkError<E>) -> CostError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    CostError::Aws {
        op,
        code: e.code().unwrap_or("no code").to_owned(),
        source: Box::new(e),
    }
}

/// Daily `metric` for `start..=end_inclusive`, grouped by the tag `tag_key` and by region,
/// following every page. `on_request` is told of each billed request as it is made.
pub async fn cost_by_tag_and_region(
    sdk: &SdkConfig,
    tag_key: &str,
    metric: &str,
    start: NaiveDate,
    end_inclusive: NaiveDate,
    mut on_request: impl FnMut(),
) -> Result<Fetched, CostError> {
    let client = aws_sdk_costexplorer::Client::new(sdk);
    let end = end_inclusive + chrono::TimeDelta::days(1); // the API's end is exclusive
    let period = DateInterval::builder()
        .start(start.to_string())
        .end(end.to_string())
        .build()
        .map_err(|e| CostError::Invalid(format!("time period: {e}")))?;
    let mut out = Fetched::default();
    let mut token: Option<String> = None;
    loop {
        on_request();
        out.requests += 1;
        let page = client
            .get_cost_and_usage()
            .time_period(period.clone())
            .granularity(Granularity::Daily)
            .metrics(metric)
            .group_by(
                GroupDefinition::builder()
                    .r#type(GroupDefinitionType::Tag)
                    .key(tag_key)
                    .build(),
            )
            .group_by(
                GroupDefinition::builder()
                    .r#type(GroupDefinitionType::Dimension)
                    .key("REGION")
                    .build(),
            )
            .set_next_page_token(token.take())
            .send()
            .await
            .map_err(|e| sdk_error("GetCostAndUsage", e))?;
        for r in page.results_by_time() {
            let Some(day) = r
                .time_period()
                .and_then(|p| p.start().parse::<NaiveDate>().ok())
            else {
                return Err(CostError::Invalid(
                    "a result without a valid TimePeriod.Start".into(),
                ));
            };
            // A page boundary may split a day's groups; the flag is the same on both parts.
            if !out.days.iter().any(|(d, _)| *d == day) {
                out.days.push((day, r.estimated()));
            }
            for g in r.groups() {
                let keys = g.keys();
                let (Some(tag), Some(region)) = (keys.first(), keys.get(1)) else {
                    return Err(CostError::Invalid(format!(
                        "{day}: a group with keys {keys:?}"
                    )));
                };
                let key = tag_value(tag).unwrap_or(tag).to_owned();
                let amount = g
                    .metrics()
                    .and_then(|m| m.get(metric))
                    .and_then(|v| v.amount())
                    .unwrap_or("0");
                let micro_usd = parse_amount(amount)
                    .map_err(|e| CostError::Invalid(format!("{day} {tag} {region}: {e}")))?;
                out.rows.push(DaySpend {
                    day,
                    key,
                    region: region.clone(),
                    micro_usd,
                });
            }
        }
        // An emulator may omit the token on the last page where AWS sends none or "".
        match page.next_page_token().filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    Ok(out)
}

/// Which of `keys` are active cost allocation tags: `(key, active)` for each one Cost Explorer
/// knows; a key it does not list has never been seen on a bill (so it reads as inactive).
pub async fn allocation_tags_active(
    sdk: &SdkConfig,
    keys: &[&str],
) -> Result<Vec<(String, bool)>, CostError> {
    let client = aws_sdk_costexplorer::Client::new(sdk);
    let mut found: Vec<(String, bool)> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = client
            .list_cost_allocation_tags()
            .set_next_token(token.take());
        for k in keys {
            req = req.tag_keys(*k);
        }
        let page = req
            .send()
            .await
            .map_err(|e| sdk_error("ListCostAllocationTags", e))?;
        for t in page.cost_allocation_tags() {
            found.push((
                t.tag_key().to_owned(),
                *t.status() == CostAllocationTagStatus::Active,
            ));
        }
        match page.next_token().filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    Ok(keys
        .iter()
        .map(|k| {
            let active = found.iter().any(|(f, a)| f == k && *a);
            ((*k).to_owned(), active)
        })
        .collect())
}
