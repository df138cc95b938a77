//! The sweep of IAM, global: listed in one region of each account only (the first the
//! account walks; see `tasks::walk`), so each entity is found once. ARNs are the ones the list
//! calls return (no region, the path included). Skipped: service-linked roles (their service
//! deletes them), IAM Identity Center's roles (`/aws-reserved/`, which only it may delete) and
//! AWS managed policies (`Scope = Local`). Other untagged roles AWS or an administrator made
//! (`OrganizationAccountAccessRole`, the role ephemera assumes) are found like any never-tagged
//! resource: protect them before allowing `iam:role` in a dedicated account.

use super::*;

fn found(arn: &str, created: Option<&aws_sdk_iam::primitives::DateTime>) -> Option<Found> {
    Some(Found {
        arn: Arn::parse(arn).ok()?,
        tags: Tags::default(),
        created_at: time(created),
        state: None,
    })
}

pub(super) async fn roles(
    ctx: &Ctx<'_>,
    iam: &aws_sdk_iam::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("iam", "ListRoles"),
        |marker| iam.list_roles().set_marker(marker).send(),
        |page| {
            for r in page.roles() {
                if !r.path().starts_with("/aws-service-role/")
                    && !r.path().starts_with("/aws-reserved/")
                {
                    out.extend(found(r.arn(), Some(r.create_date())));
                }
            }
            page.is_truncated()
                .then(|| page.marker().map(str::to_owned))
                .flatten()
        },
    )
    .await?;
    Ok(out)
}

pub(super) async fn instance_profiles(
    ctx: &Ctx<'_>,
    iam: &aws_sdk_iam::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("iam", "ListInstanceProfiles"),
        |marker| iam.list_instance_profiles().set_marker(marker).send(),
        |page| {
            for p in page.instance_profiles() {
                out.extend(found(p.arn(), Some(p.create_date())));
            }
            page.is_truncated()
                .then(|| page.marker().map(str::to_owned))
                .flatten()
        },
    )
    .await?;
    Ok(out)
}

pub(super) async fn policies(
    ctx: &Ctx<'_>,
    iam: &aws_sdk_iam::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("iam", "ListPolicies"),
        |marker| {
            iam.list_policies()
                .scope(aws_sdk_iam::types::PolicyScopeType::Local)
                .set_marker(marker)
                .send()
        },
        |page| {
            for p in page.policies() {
                if let Some(arn) = p.arn() {
                    out.extend(found(arn, p.create_date()));
                }
            }
            page.is_truncated()
                .then(|| page.marker().map(str::to_owned))
                .flatten()
        },
    )
    .await?;
    Ok(out)
}

/// One call, no pages.
pub(super) async fn oidc_providers(
    ctx: &Ctx<'_>,
    iam: &aws_sdk_iam::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("iam", "ListOpenIDConnectProviders"),
        |_| iam.list_open_id_connect_providers().send(),
        |page| {
            for p in page.open_id_connect_provider_list() {
                if let Some(arn) = p.arn() {
                    out.extend(found(arn, None));
                }
            }
            None
        },
    )
    .await?;
    Ok(out)
}
