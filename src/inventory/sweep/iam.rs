//! The sweep of IAM, global: listed in one region of each account only (the first the
//! account walks; see `tasks::walk`), so each entity is found once. ARNs are the ones the list
//! calls return (no region, the path included). The credentials (roles, instance profiles,
//! users, access keys: [`ResourceType::CREDENTIALS`]) come with their tags, for the Resource
//! Groups Tagging API lists no IAM entity: they are judged by their lease like anything
//! tagged, and listed every pass (see `tasks::walk`). Skipped: service-linked roles (their service
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

fn iam_tags(tags: &[aws_sdk_iam::types::Tag]) -> Tags {
    Tags::from_pairs(tags.iter().map(|t| (t.key(), t.value())))
}

/// Every page of `GetAccountAuthorizationDetails` for `filter` (roles or users): the one IAM
/// call that returns entities *with their tags*, a page of up to 1,000 at a time — where
/// `ListRoles` and `ListUsers` return none and a call per entity would be needed.
async fn authorization_details(
    ctx: &Ctx<'_>,
    iam: &aws_sdk_iam::Client,
    limiter: &RateLimiter,
    filter: aws_sdk_iam::types::EntityType,
    mut take: impl FnMut(&aws_sdk_iam::operation::get_account_authorization_details::GetAccountAuthorizationDetailsOutput),
) -> Result<(), SweepError> {
    list_pages(
        ctx,
        limiter,
        ("iam", "GetAccountAuthorizationDetails"),
        |marker| {
            iam.get_account_authorization_details()
                .filter(filter.clone())
                .max_items(1000)
                .set_marker(marker)
                .send()
        },
        |page| {
            take(&page);
            page.is_truncated()
                .then(|| page.marker().map(str::to_owned))
                .flatten()
        },
    )
    .await
}

pub(super) async fn roles(
    ctx: &Ctx<'_>,
    iam: &aws_sdk_iam::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    authorization_details(
        ctx,
        iam,
        limiter,
        aws_sdk_iam::types::EntityType::Role,
        |page| {
            for r in page.role_detail_list() {
                let path = r.path().unwrap_or_default();
                if path.starts_with("/aws-service-role/") || path.starts_with("/aws-reserved/") {
                    continue;
                }
                if let Some(mut f) = r.arn().and_then(|a| found(a, r.create_date())) {
                    f.tags = iam_tags(r.tags());
                    out.push(f);
                }
            }
        },
    )
    .await?;
    Ok(out)
}

/// Users, with their tags: listed once per sweep, for `iam:user` and `iam:access-key` alike.
pub(super) async fn users(
    ctx: &Ctx<'_>,
    c: &Clients<'_>,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    c.iam_users
        .get_or_try_init(|| async {
            let mut out = Vec::new();
            authorization_details(
                ctx,
                c.iam,
                limiter,
                aws_sdk_iam::types::EntityType::User,
                |page| {
                    for u in page.user_detail_list() {
                        if let Some(mut f) = u.arn().and_then(|a| found(a, u.create_date())) {
                            f.tags = iam_tags(u.tags());
                            out.push(f);
                        }
                    }
                },
            )
            .await?;
            Ok(out)
        })
        .await
        .cloned()
}

/// Every user's access keys (`ListAccessKeys`, a call per user), each with its user's tags (a
/// key has none of its own) and its status (`Active`, `Inactive`) as its state. Named
/// `arn:…:iam::ACCOUNT:access-key/USER/KEY_ID`: AWS gives keys no ARN.
pub(super) async fn access_keys(
    ctx: &Ctx<'_>,
    c: &Clients<'_>,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let iam = c.iam;
    let users = users(ctx, c, limiter).await?;
    let mut out = Vec::new();
    for user in users {
        let Some((_, name)) = user.arn.iam_entity("user") else {
            continue;
        };
        list_pages(
            ctx,
            limiter,
            ("iam", "ListAccessKeys"),
            |marker| {
                iam.list_access_keys()
                    .user_name(name)
                    .set_marker(marker)
                    .send()
            },
            |page| {
                for k in page.access_key_metadata() {
                    let Some(id) = k.access_key_id() else {
                        continue;
                    };
                    let Some(arn) = Arn::access_key(&user.arn, id) else {
                        continue;
                    };
                    out.push(Found {
                        arn,
                        tags: user.tags.clone(),
                        created_at: time(k.create_date()),
                        state: k.status().map(|s| s.as_str().to_owned()),
                    });
                }
                page.is_truncated()
                    .then(|| page.marker().map(str::to_owned))
                    .flatten()
            },
        )
        .await?;
    }
    Ok(out)
}

/// Instance profiles, with the tags the list gives; one that came without any has them read
/// (`ListInstanceProfileTags`: AWS's list leaves tags out, so that is a call per profile).
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
                if let Some(mut f) = found(p.arn(), Some(p.create_date())) {
                    f.tags = iam_tags(p.tags());
                    out.push((p.instance_profile_name().to_owned(), f));
                }
            }
            page.is_truncated()
                .then(|| page.marker().map(str::to_owned))
                .flatten()
        },
    )
    .await?;
    let mut profiles = Vec::with_capacity(out.len());
    for (name, mut f) in out {
        if f.tags.is_empty() {
            let mut tags = Vec::new();
            list_pages(
                ctx,
                limiter,
                ("iam", "ListInstanceProfileTags"),
                |marker| {
                    iam.list_instance_profile_tags()
                        .instance_profile_name(&name)
                        .set_marker(marker)
                        .send()
                },
                |page| {
                    tags.extend(page.tags().iter().cloned());
                    page.is_truncated()
                        .then(|| page.marker().map(str::to_owned))
                        .flatten()
                },
            )
            .await?;
            f.tags = iam_tags(&tags);
        }
        profiles.push(f);
    }
    Ok(profiles)
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
