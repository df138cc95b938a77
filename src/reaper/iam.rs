//! The IAM actions the reaper's AWS calls need, one row per deletable type: what
//! [`super::aws::inspect`] (the last-moment re-read of existence, tags and dependencies) and
//! [`super::aws::delete`] call for that type, as IAM names them. [`crate::iam`] builds the
//! printed policy from this table and nothing else.
//!
//! Architecture Invariant: a row lists exactly the actions of the calls its type's deleter can
//! make — no wildcard, no "just in case". A type in [`super::aws::DELETABLE_TYPES`] without a row
//! fails a unit test here; a call a deleter makes that its row misses fails the integration test
//! `iam::every_row_is_exactly_what_its_deleter_calls` (which also fails on an action no call
//! needs).

/// `(resource type, IAM actions)`, in [`super::aws::DELETABLE_TYPES`] order; actions sorted.
///
/// Where an action name is not the API operation's: S3 `ListObjectVersions` is authorized as
/// `s3:ListBucketVersions`, and `DeleteObjects` as `s3:DeleteObject` per key plus
/// `s3:DeleteObjectVersion` for keys given with a version id (the deleter always gives one).
/// Lambda `GetFunction` returns a function's tags only to a caller also allowed
/// `lambda:ListTags`; without it the re-read fails (AWS withholds the tags) and nothing is
/// deleted.
pub const REAP_ACTIONS: &[(&str, &[&str])] = &[
    // DescribeInstances; TerminateInstances.
    (
        "ec2:instance",
        &["ec2:DescribeInstances", "ec2:TerminateInstances"],
    ),
    // DescribeVolumes, DescribeInstances (the instances it is attached to); DeleteVolume.
    (
        "ec2:volume",
        &[
            "ec2:DeleteVolume",
            "ec2:DescribeInstances",
            "ec2:DescribeVolumes",
        ],
    ),
    // DescribeSnapshots, DescribeImages (the account's AMIs it backs); DeleteSnapshot.
    (
        "ec2:snapshot",
        &[
            "ec2:DeleteSnapshot",
            "ec2:DescribeImages",
            "ec2:DescribeSnapshots",
        ],
    ),
    // DescribeImages; DeregisterImage.
    ("ec2:image", &["ec2:DeregisterImage", "ec2:DescribeImages"]),
    // DescribeSecurityGroups, DescribeInstances and DescribeNetworkInterfaces (its users);
    // DeleteSecurityGroup.
    (
        "ec2:security-group",
        &[
            "ec2:DeleteSecurityGroup",
            "ec2:DescribeInstances",
            "ec2:DescribeNetworkInterfaces",
            "ec2:DescribeSecurityGroups",
        ],
    ),
    // DescribeNetworkInterfaces, DescribeInstances (its instance); DeleteNetworkInterface.
    (
        "ec2:network-interface",
        &[
            "ec2:DeleteNetworkInterface",
            "ec2:DescribeInstances",
            "ec2:DescribeNetworkInterfaces",
        ],
    ),
    // DescribeAddresses, DescribeInstances (its instance); ReleaseAddress.
    (
        "ec2:elastic-ip",
        &[
            "ec2:DescribeAddresses",
            "ec2:DescribeInstances",
            "ec2:ReleaseAddress",
        ],
    ),
    // DescribeKeyPairs (also before deleting: the name from the id); DeleteKeyPair.
    (
        "ec2:key-pair",
        &["ec2:DeleteKeyPair", "ec2:DescribeKeyPairs"],
    ),
    // DescribeLaunchTemplates; DeleteLaunchTemplate.
    (
        "ec2:launch-template",
        &["ec2:DeleteLaunchTemplate", "ec2:DescribeLaunchTemplates"],
    ),
    // GetBucketLocation, GetBucketTagging; ListObjectVersions, DeleteObjects, DeleteBucket.
    (
        "s3:bucket",
        &[
            "s3:DeleteBucket",
            "s3:DeleteObject",
            "s3:DeleteObjectVersion",
            "s3:GetBucketLocation",
            "s3:GetBucketTagging",
            "s3:ListBucketVersions",
        ],
    ),
    // GetQueueUrl, ListQueueTags; DeleteQueue.
    (
        "sqs:queue",
        &["sqs:DeleteQueue", "sqs:GetQueueUrl", "sqs:ListQueueTags"],
    ),
    // GetTopicAttributes, ListTagsForResource; DeleteTopic.
    (
        "sns:topic",
        &[
            "sns:DeleteTopic",
            "sns:GetTopicAttributes",
            "sns:ListTagsForResource",
        ],
    ),
    // DescribeTable, ListTagsOfResource; DeleteTable (DescribeTable again when in use).
    (
        "dynamodb:table",
        &[
            "dynamodb:DeleteTable",
            "dynamodb:DescribeTable",
            "dynamodb:ListTagsOfResource",
        ],
    ),
    // GetFunction (tags need ListTags, see above); DeleteFunction.
    (
        "lambda:function",
        &[
            "lambda:DeleteFunction",
            "lambda:GetFunction",
            "lambda:ListTags",
        ],
    ),
    // DescribeLogGroups, ListTagsForResource; DeleteLogGroup.
    (
        "logs:log-group",
        &[
            "logs:DeleteLogGroup",
            "logs:DescribeLogGroups",
            "logs:ListTagsForResource",
        ],
    ),
];

/// The account check before the first deletion in an account (`GetCallerIdentity`; AWS allows
/// it to every principal, it is listed so the policy names every call).
pub const VERIFY_ACCOUNT_ACTIONS: &[&str] = &["sts:GetCallerIdentity"];

/// The row of `resource_type`, if it has a deleter.
pub fn actions_for(resource_type: &str) -> Option<&'static [&'static str]> {
    REAP_ACTIONS
        .iter()
        .find(|(t, _)| *t == resource_type)
        .map(|(_, a)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reaper::aws::DELETABLE_TYPES;

    #[test]
    fn every_deletable_type_has_exactly_one_row_and_no_row_lacks_a_deleter() {
        let rows: Vec<&str> = REAP_ACTIONS.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            rows, DELETABLE_TYPES,
            "one row per deletable type, same order"
        );
        for t in DELETABLE_TYPES {
            assert!(actions_for(t).is_some_and(|a| !a.is_empty()), "{t}");
        }
        assert_eq!(actions_for("ec2:vpc"), None);
    }

    #[test]
    fn rows_are_sorted_unique_concrete_actions_of_their_own_service() {
        for (t, actions) in REAP_ACTIONS {
            let mut sorted = actions.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(&sorted, actions, "{t}: sorted and unique");
            let service = t.split(':').next().unwrap_or_default();
            for a in *actions {
                let (prefix, name) = a.split_once(':').unwrap_or_default();
                assert_eq!(prefix, service, "{t}: {a} is another service's");
                assert!(
                    !name.is_empty()
                        && !name.contains('*')
                        && name.starts_with(|c: char| c.is_ascii_uppercase()),
                    "{t}: `{a}` is not one concrete action"
                );
            }
            // Every row can look (re-read before deleting) and delete.
            assert!(
                actions.iter().any(|a| {
                    let n = a.split(':').nth(1).unwrap_or_default();
                    ["Delete", "Terminate", "Deregister", "Release"]
                        .iter()
                        .any(|v| n.starts_with(v))
                }),
                "{t}: no deleting action"
            );
        }
    }
}
