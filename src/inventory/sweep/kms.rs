//! The sweep of KMS: ListKeys names every key, AWS-managed ones included, and says nothing
//! else, so each key is described (one DescribeKey a key) to skip AWS-managed keys and keys
//! pending deletion and to learn its creation date.

use aws_sdk_kms::types::{KeyManagerType, KeyState};

use super::*;

pub(super) async fn keys(
    ctx: &Ctx<'_>,
    kms: &aws_sdk_kms::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut ids = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("kms", "ListKeys"),
        |marker| kms.list_keys().set_marker(marker).send(),
        |page| {
            ids.extend(
                page.keys()
                    .iter()
                    .filter_map(|k| k.key_id())
                    .map(str::to_owned),
            );
            page.truncated()
                .then(|| page.next_marker().map(str::to_owned))
                .flatten()
        },
    )
    .await?;
    let mut out = Vec::new();
    for id in ids {
        let mut meta = None;
        list_pages(
            ctx,
            limiter,
            ("kms", "DescribeKey"),
            |_| kms.describe_key().key_id(&id).send(),
            |page| {
                meta = page.key_metadata;
                None
            },
        )
        .await?;
        let Some(m) = meta else { continue };
        let going = matches!(
            m.key_state(),
            Some(KeyState::PendingDeletion | KeyState::PendingReplicaDeletion)
        );
        if going || m.key_manager() == Some(&KeyManagerType::Aws) {
            continue;
        }
        out.extend(ctx.found(
            "kms",
            &format!("key/{id}"),
            Tags::default(),
            time(m.creation_date()),
        ));
    }
    Ok(out)
}
