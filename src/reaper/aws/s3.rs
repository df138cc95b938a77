//! S3 buckets: emptied of every object version in watched batches, then deleted.

use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use super::*;

const NO_BUCKET: &[&str] = &["NoSuchBucket"];

/// Keys per ListObjectVersions page and per DeleteObjects call (both AWS maxima).
const PAGE: i32 = 1000;

/// A client for the bucket's own region (S3 redirects requests sent to another region), or
/// `None` when the bucket does not exist. Path-style addressing when an endpoint is set:
/// an emulator on a loopback port has no per-bucket host names.
async fn client_for_bucket(
    sdk: &SdkConfig,
    bucket: &str,
) -> Result<Option<aws_sdk_s3::Client>, DeleteError> {
    let base = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(base.clone());
    let location = match s3
        .get_bucket_location()
        .bucket(bucket)
        .send()
        .await
        .map_err(fail("GetBucketLocation"))
    {
        Ok(out) => out,
        Err(f) if f.is(NO_BUCKET) => return Ok(None),
        Err(f) => return Err(f.into_error(&[])),
    };
    // No constraint is us-east-1; `EU` is the legacy name of eu-west-1.
    let region = match location.location_constraint().map(|c| c.as_str()) {
        None | Some("") => "us-east-1",
        Some("EU") => "eu-west-1",
        Some(other) => other,
    };
    if sdk.region().map(Region::as_ref) == Some(region) {
        return Ok(Some(s3));
    }
    let conf = base
        .to_builder()
        .region(Region::new(region.to_owned()))
        .build();
    Ok(Some(aws_sdk_s3::Client::from_conf(conf)))
}

/// The IAM actions of the calls below, sorted: GetBucketLocation, GetBucketTagging;
/// ListObjectVersions, DeleteObjects, DeleteBucket. ListObjectVersions is authorized as
/// `s3:ListBucketVersions`, and DeleteObjects as `s3:DeleteObject` per key plus
/// `s3:DeleteObjectVersion` for keys given with a version id (the deleter always gives one).
pub(super) const ACTIONS: &[&str] = &[
    "s3:DeleteBucket",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:GetBucketLocation",
    "s3:GetBucketTagging",
    "s3:ListBucketVersions",
];

pub(super) async fn inspect(sdk: &SdkConfig, bucket: &str) -> Result<Inspection, DeleteError> {
    let Some(s3) = client_for_bucket(sdk, bucket).await? else {
        return Ok(Inspection::Gone);
    };
    match tags_of(&s3, bucket).await {
        Ok(tags) => Ok(live(tags)),
        Err(f) if f.is(NO_BUCKET) => Ok(Inspection::Gone),
        Err(f) => Err(f.into_error(&[])),
    }
}

/// The bucket's tags (none when it has no tag set).
async fn tags_of(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<Tags, Failure> {
    match s3
        .get_bucket_tagging()
        .bucket(bucket)
        .send()
        .await
        .map_err(fail("GetBucketTagging"))
    {
        Ok(out) => Ok(Tags::from_pairs(
            out.tag_set().iter().map(|t| (t.key(), t.value())),
        )),
        Err(f) if f.is(&["NoSuchTagSet"]) => Ok(Tags::default()),
        Err(f) => Err(f),
    }
}

/// Empties the bucket (every object version and delete marker — which covers the plain
/// objects of an unversioned bucket, listed with version `null`), then deletes it.
pub(super) async fn delete(
    sdk: &SdkConfig,
    bucket: &str,
    watch: &dyn Batches,
) -> Result<Deleted, DeleteError> {
    let Some(s3) = client_for_bucket(sdk, bucket).await? else {
        return Ok(Deleted::AlreadyGone);
    };
    match empty(&s3, bucket, watch).await {
        Ok(()) => {}
        // Gone while we emptied it (another pass, or its owner, got there first).
        Err(Stop::Failed(f)) if f.is(NO_BUCKET) => return Ok(Deleted::AlreadyGone),
        Err(Stop::Failed(f)) => return Err(f.into_error(&[])),
        Err(Stop::Told(why)) => return Err(DeleteError::Stopped(why)),
    }
    let r = s3
        .delete_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(fail("DeleteBucket"));
    // Not empty after emptying: someone is still writing to it.
    settle(r, NO_BUCKET, &["BucketNotEmpty", "OperationAborted"])
}

/// Deletes a page of versions at a time, listing from the start again after each: what was
/// deleted is gone from the listing, and moto 5.2.5 answers a page whose marker names a
/// deleted key with nothing (AWS treats markers as positions), which would stop short.
async fn empty(s3: &aws_sdk_s3::Client, bucket: &str, watch: &dyn Batches) -> Result<(), Stop> {
    let mut previous_first: Option<(String, Option<String>)> = None;
    let mut removed: u64 = 0;
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .max_keys(PAGE)
            .send()
            .await
            .map_err(fail("ListObjectVersions"))?;
        let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
        let markers = page
            .delete_markers()
            .iter()
            .map(|m| (m.key(), m.version_id()));
        let entries: Vec<(String, Option<String>)> = versions
            .chain(markers)
            .filter_map(|(key, version)| Some((key?.to_owned(), version.map(str::to_owned))))
            .collect();
        // After a batch (and before the bucket itself goes): the bucket's tags read again (a
        // protection or another lease added meanwhile wins, as it would at the last moment).
        if removed > 0 {
            let tags = tags_of(s3, bucket).await?;
            watch.still_doomed(&tags).map_err(Stop::Told)?;
        }
        let Some(first) = entries.first().cloned() else {
            return Ok(());
        };
        // A version that outlives its successful deletion (say, under a legal hold that
        // DeleteObjects did not report): stop rather than loop.
        if previous_first.as_ref() == Some(&first) {
            return Err(Stop::Failed(Failure {
                code: None,
                message: format!(
                    "DeleteObjects: {:?} version {:?} is still listed after its deletion",
                    first.0, first.1
                ),
                source: None,
            }));
        }
        let batch = entries.len() as u64;
        previous_first = Some(first);
        let objects = entries
            .into_iter()
            .filter_map(|(key, version)| {
                ObjectIdentifier::builder()
                    .key(key)
                    .set_version_id(version)
                    .build()
                    .ok()
            })
            .collect();
        delete_objects(s3, bucket, objects)
            .await
            .map_err(Stop::Failed)?;
        removed += batch;
        watch.progress(removed).await;
    }
}

/// Why emptying ended early: an AWS call failed, or the watcher said stop.
enum Stop {
    Failed(Failure),
    Told(String),
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Self {
        Stop::Failed(f)
    }
}

/// Deletes up to [`PAGE`] object versions in one call; a per-key error fails the whole.
async fn delete_objects(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    objects: Vec<ObjectIdentifier>,
) -> Result<(), Failure> {
    if objects.is_empty() {
        return Ok(());
    }
    let delete = Delete::builder()
        .set_objects(Some(objects))
        .quiet(true)
        .build()
        .map_err(|e| Failure {
            code: None,
            message: format!("DeleteObjects: {e}"),
            source: Some(Box::new(e)),
        })?;
    let out = s3
        .delete_objects()
        .bucket(bucket)
        .delete(delete)
        .send()
        .await
        .map_err(fail("DeleteObjects"))?;
    match out.errors().first() {
        None => Ok(()),
        Some(e) => Err(Failure {
            code: e.code().map(str::to_owned),
            message: format!(
                "DeleteObjects: {} of the keys failed, first {:?} version {:?}: {}: {}",
                out.errors().len(),
                e.key().unwrap_or_default(),
                e.version_id().unwrap_or_default(),
                e.code().unwrap_or_default(),
                e.message().unwrap_or_default()
            ),
            source: None,
        }),
    }
}

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[Kind {
    ty: ResourceType::S3Bucket,
    example: "arn:aws:s3:::bucket-1",
    rank: REST,
    inspect: |sdk, arn| Box::pin(inspect(sdk, arn.resource_id())),
    delete: |sdk, arn, watch| Box::pin(delete(sdk, arn.resource_id(), watch)),
    actions: ACTIONS,
    // DeleteBucket sees a bucket's tags only on buckets with S3's ABAC switched on (off by
    // default, and not something a lessee's Terraform does); DeleteObject and
    // DeleteObjectVersion see the object's tags, never the bucket's. Conditioned, they
    // would refuse every bucket we must delete.
    tag_conditioned: &[],
}];
