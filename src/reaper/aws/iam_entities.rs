//! IAM roles, instance profiles, customer managed policies and OIDC providers (global: their
//! ARNs have no region; any region's client reaches them). Not `reaper::iam`, the policy
//! printer.
//!
//! What is part of deleting each, as detaching a gateway is part of deleting it: a role's
//! sessions are revoked first (the standard inline deny on `aws:TokenIssueTime`, as the
//! console's "Revoke active sessions"), its managed policies are detached, its inline
//! policies deleted and it is removed from its instance profiles; an instance profile's roles are removed from it (the roles stay); a
//! policy's non-default versions are deleted. A policy still attached to anything is in use
//! (`DeleteConflict`): it is never detached from roles, users or groups it does not own —
//! the roles of its own lease rank before it and take their attachments with them.
//! Service-linked roles (path `/aws-service-role/`), IAM Identity Center's roles
//! (`/aws-reserved/`) and AWS managed policies are refused.
//! Order: instance profiles after the instances that use them, roles after the instance
//! profiles and functions that hold them, policies after the roles.

use aws_sdk_iam::types::Tag;

use super::*;

const NO_ENTITY: &[&str] = &["NoSuchEntity"];
const CONFLICT: &[&str] = &["DeleteConflict"];

/// The IAM actions of the calls below, sorted, one table a type.
pub(super) const ROLE_ACTIONS: &[&str] = &[
    "iam:DeleteRole",
    "iam:DeleteRolePolicy",
    "iam:DetachRolePolicy",
    "iam:GetRole",
    "iam:ListAttachedRolePolicies",
    "iam:ListInstanceProfilesForRole",
    "iam:ListRolePolicies",
    "iam:PutRolePolicy",
    "iam:RemoveRoleFromInstanceProfile",
];

/// The inline policy that revokes a role's sessions: the name the IAM console's "Revoke
/// active sessions" uses, so operators recognise it.
pub const REVOKE_POLICY: &str = "AWSRevokeOlderSessions";

/// The standard revocation: every action denied to sessions issued before `now`.
fn revoke_document(now: chrono::DateTime<chrono::Utc>) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Deny",
            "Action": ["*"],
            "Resource": ["*"],
            "Condition": {"DateLessThan": {
                "aws:TokenIssueTime": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            }},
        }],
    })
    .to_string()
}
pub(super) const INSTANCE_PROFILE_ACTIONS: &[&str] = &[
    "iam:DeleteInstanceProfile",
    "iam:GetInstanceProfile",
    "iam:RemoveRoleFromInstanceProfile",
];
pub(super) const POLICY_ACTIONS: &[&str] = &[
    "iam:DeletePolicy",
    "iam:DeletePolicyVersion",
    "iam:GetPolicy",
    "iam:ListPolicyVersions",
];
pub(super) const USER_ACTIONS: &[&str] = &[
    "iam:DeleteLoginProfile",
    "iam:DeleteSSHPublicKey",
    "iam:DeleteSigningCertificate",
    "iam:DeleteUser",
    "iam:DeleteUserPolicy",
    "iam:DetachUserPolicy",
    "iam:GetUser",
    "iam:ListAccessKeys",
    "iam:ListAttachedUserPolicies",
    "iam:ListGroupsForUser",
    "iam:ListSSHPublicKeys",
    "iam:ListSigningCertificates",
    "iam:ListUserPolicies",
    "iam:RemoveUserFromGroup",
];
pub(super) const ACCESS_KEY_ACTIONS: &[&str] = &[
    "iam:DeleteAccessKey",
    "iam:GetUser",
    "iam:ListAccessKeys",
    "iam:UpdateAccessKey",
];
pub(super) const OIDC_PROVIDER_ACTIONS: &[&str] = &[
    "iam:DeleteOpenIDConnectProvider",
    "iam:GetOpenIDConnectProvider",
];

fn client(sdk: &SdkConfig) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(sdk)
}

fn iam_tags(tags: &[Tag]) -> Tags {
    Tags::from_pairs(tags.iter().map(|t| (t.key(), t.value())))
}

/// Roles AWS Organizations, StackSets and Control Tower make to reach member accounts.
const ORGANIZATION_ROLES: &[&str] = &[
    "OrganizationAccountAccessRole",
    "AWSCloudFormationStackSetExecutionRole",
];
const ORGANIZATION_ROLE_PREFIXES: &[&str] =
    &["AWSControlTower", "aws-controltower-", "stacksets-exec-"];

/// `KIND/PATH/NAME` → NAME ([`Arn::iam_entity`]; role and instance profile names hold no
/// `/`); service-linked, Identity Center and organization roles refused.
pub(super) fn entity_name<'a>(arn: &'a Arn, kind: &str) -> Result<&'a str, DeleteError> {
    if kind == "role" && arn.resource().starts_with("role/aws-service-role/") {
        return Err(DeleteError::Refused(format!(
            "{arn} is a service-linked role (its service deletes it)"
        )));
    }
    if kind == "role" && arn.resource().starts_with("role/aws-reserved/") {
        return Err(DeleteError::Refused(format!(
            "{arn} is an IAM Identity Center role (only it deletes them)"
        )));
    }
    let Some((_, name)) = arn.iam_entity(kind) else {
        return Err(DeleteError::Unsupported(format!("iam:{}", arn.resource())));
    };
    // The roles through which an organization reaches its accounts: deleting one locks its
    // administrators (and often ephemera) out of the account.
    if kind == "role"
        && (ORGANIZATION_ROLES
            .iter()
            .any(|r| name.eq_ignore_ascii_case(r))
            || ORGANIZATION_ROLE_PREFIXES.iter().any(|p| {
                name.to_ascii_lowercase()
                    .starts_with(&p.to_ascii_lowercase())
            }))
    {
        return Err(DeleteError::Refused(format!(
            "{arn} is a role an organization reaches its accounts through"
        )));
    }
    Ok(name)
}

/// `None` for NoSuchEntity, the error otherwise.
fn absent<T>(r: Result<T, Failure>) -> Result<Option<T>, DeleteError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(f) if f.is(NO_ENTITY) => Ok(None),
        Err(f) => Err(f.into_error(&[])),
    }
}

/// A call on a part of the entity (a detach, a removal): a part already gone is fine.
fn part<T>(r: Result<T, Failure>) -> Result<(), DeleteError> {
    absent(r).map(|_| ())
}

/// Every page of a list call on an entity's parts (`$iam.$call().$by($name)`, paged by
/// marker), `take` collecting each page's items: `Some` of them all, `None` when the entity
/// is gone.
macro_rules! entity_parts {
    ($iam:expr, $call:ident, $by:ident($name:expr), $op:literal, |$out:ident| $take:expr) => {{
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let r = $iam
                .$call()
                .$by($name)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(fail($op));
            let Some($out) = absent(r)? else {
                break None;
            };
            all.extend($take);
            match ($out.is_truncated(), $out.marker()) {
                (true, Some(m)) => marker = Some(m.to_owned()),
                _ => break Some(all),
            }
        }
    }};
}

/// Lists an entity's parts ([`entity_parts!`]) and removes each with `$remove` (`$part` bound
/// to it): a part already gone is fine; the entity gone ends its deletion as already done.
macro_rules! remove_parts {
    ($iam:expr, $call:ident, $by:ident($name:expr), $op:literal, |$out:ident| $take:expr,
     |$part:ident| $remove:expr, $remove_op:literal) => {{
        let Some(parts) = entity_parts!($iam, $call, $by($name), $op, |$out| $take) else {
            return Ok(Deleted::AlreadyGone);
        };
        for $part in parts {
            part($remove.send().await.map_err(fail($remove_op)))?;
        }
    }};
}

pub(super) async fn inspect_role(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    let name = entity_name(arn, "role")?;
    let out = absent(
        client(sdk)
            .get_role()
            .role_name(name)
            .send()
            .await
            .map_err(fail("GetRole")),
    )?;
    Ok(match out.as_ref().and_then(|o| o.role()) {
        Some(role) => live(iam_tags(role.tags())),
        None => Inspection::Gone,
    })
}

pub(super) async fn delete_role(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let name = entity_name(arn, "role")?;
    let iam = client(sdk);
    // First the role's live sessions are revoked (credentials must not outlive their lease):
    // from here on nothing issued before now may act, while the role is taken apart.
    let now = crate::clock::Clock::now(&crate::clock::SystemClock);
    let r = iam
        .put_role_policy()
        .role_name(name)
        .policy_name(REVOKE_POLICY)
        .policy_document(revoke_document(now))
        .send()
        .await
        .map_err(fail("PutRolePolicy"));
    if absent(r)?.is_none() {
        return Ok(Deleted::AlreadyGone);
    }
    // Managed policies attached: detached.
    remove_parts!(
        iam,
        list_attached_role_policies,
        role_name(name),
        "ListAttachedRolePolicies",
        |out| out
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_owned)),
        |policy| iam.detach_role_policy().role_name(name).policy_arn(policy),
        "DetachRolePolicy"
    );
    // Inline policies: deleted (they are part of the role).
    let Some(mut inline) = entity_parts!(
        iam,
        list_role_policies,
        role_name(name),
        "ListRolePolicies",
        |out| out.policy_names().iter().cloned()
    ) else {
        return Ok(Deleted::AlreadyGone);
    };
    // The revocation is the last inline policy deleted (DeleteRole wants none left): by then
    // nothing grants the old sessions anything.
    inline.retain(|p| p != REVOKE_POLICY);
    inline.push(REVOKE_POLICY.to_owned());
    for policy in inline {
        part(
            iam.delete_role_policy()
                .role_name(name)
                .policy_name(policy)
                .send()
                .await
                .map_err(fail("DeleteRolePolicy")),
        )?;
    }
    // Instance profiles holding it: it is removed from them (the profiles stay).
    remove_parts!(
        iam,
        list_instance_profiles_for_role,
        role_name(name),
        "ListInstanceProfilesForRole",
        |out| out
            .instance_profiles()
            .iter()
            .map(|p| p.instance_profile_name().to_owned()),
        |profile| iam
            .remove_role_from_instance_profile()
            .instance_profile_name(profile)
            .role_name(name),
        "RemoveRoleFromInstanceProfile"
    );
    let r = iam
        .delete_role()
        .role_name(name)
        .send()
        .await
        .map_err(fail("DeleteRole"));
    settle(r, NO_ENTITY, CONFLICT)
}

pub(super) async fn inspect_instance_profile(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Inspection, DeleteError> {
    let name = entity_name(arn, "instance-profile")?;
    let out = absent(
        client(sdk)
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .map_err(fail("GetInstanceProfile")),
    )?;
    Ok(match out.as_ref().and_then(|o| o.instance_profile()) {
        Some(p) => live(iam_tags(p.tags())),
        None => Inspection::Gone,
    })
}

pub(super) async fn delete_instance_profile(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Deleted, DeleteError> {
    let name = entity_name(arn, "instance-profile")?;
    let iam = client(sdk);
    let out = absent(
        iam.get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .map_err(fail("GetInstanceProfile")),
    )?;
    let Some(profile) = out.as_ref().and_then(|o| o.instance_profile()) else {
        return Ok(Deleted::AlreadyGone);
    };
    for role in profile.roles() {
        part(
            iam.remove_role_from_instance_profile()
                .instance_profile_name(name)
                .role_name(role.role_name())
                .send()
                .await
                .map_err(fail("RemoveRoleFromInstanceProfile")),
        )?;
    }
    let r = iam
        .delete_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .map_err(fail("DeleteInstanceProfile"));
    settle(r, NO_ENTITY, CONFLICT)
}

/// AWS managed policies (`arn:aws:iam::aws:policy/…`) are refused.
fn customer_policy(arn: &Arn) -> Result<(), DeleteError> {
    if arn.account() == "aws" {
        return Err(DeleteError::Refused(format!(
            "{arn} is an AWS managed policy"
        )));
    }
    Ok(())
}

pub(super) async fn inspect_policy(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    customer_policy(arn)?;
    let out = absent(
        client(sdk)
            .get_policy()
            .policy_arn(arn.as_str())
            .send()
            .await
            .map_err(fail("GetPolicy")),
    )?;
    Ok(match out.as_ref().and_then(|o| o.policy()) {
        Some(p) => live(iam_tags(p.tags())),
        None => Inspection::Gone,
    })
}

pub(super) async fn delete_policy(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    customer_policy(arn)?;
    let iam = client(sdk);
    let mut versions = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let r = iam
            .list_policy_versions()
            .policy_arn(arn.as_str())
            .set_marker(marker.take())
            .send()
            .await
            .map_err(fail("ListPolicyVersions"));
        let Some(out) = absent(r)? else {
            return Ok(Deleted::AlreadyGone);
        };
        versions.extend(
            out.versions()
                .iter()
                .filter(|v| !v.is_default_version())
                .filter_map(|v| v.version_id().map(str::to_owned)),
        );
        match (out.is_truncated(), out.marker()) {
            (true, Some(m)) => marker = Some(m.to_owned()),
            _ => break,
        }
    }
    for version in versions {
        part(
            iam.delete_policy_version()
                .policy_arn(arn.as_str())
                .version_id(version)
                .send()
                .await
                .map_err(fail("DeletePolicyVersion")),
        )?;
    }
    let r = iam
        .delete_policy()
        .policy_arn(arn.as_str())
        .send()
        .await
        .map_err(fail("DeletePolicy"));
    settle(r, NO_ENTITY, CONFLICT)
}

pub(super) async fn inspect_oidc_provider(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Inspection, DeleteError> {
    let out = absent(
        client(sdk)
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(arn.as_str())
            .send()
            .await
            .map_err(fail("GetOpenIDConnectProvider")),
    )?;
    Ok(match out {
        Some(o) => live(iam_tags(o.tags())),
        None => Inspection::Gone,
    })
}

pub(super) async fn delete_oidc_provider(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Deleted, DeleteError> {
    // AWS answers the deletion of an absent provider with success (it is idempotent), so
    // only a look first tells already gone from deleted.
    if inspect_oidc_provider(sdk, arn).await? == Inspection::Gone {
        return Ok(Deleted::AlreadyGone);
    }
    let r = client(sdk)
        .delete_open_id_connect_provider()
        .open_id_connect_provider_arn(arn.as_str())
        .send()
        .await
        .map_err(fail("DeleteOpenIDConnectProvider"));
    settle(r, NO_ENTITY, CONFLICT)
}

/// `access-key/USER/KEY_ID` → (USER, KEY_ID).
fn access_key_of(arn: &Arn) -> Result<(&str, &str), DeleteError> {
    arn.access_key_parts()
        .ok_or_else(|| DeleteError::Unsupported(format!("iam:{}", arn.resource())))
}

/// A user's tags now; `None` when the user is gone.
async fn user_tags(iam: &aws_sdk_iam::Client, user: &str) -> Result<Option<Tags>, DeleteError> {
    let out = absent(
        iam.get_user()
            .user_name(user)
            .send()
            .await
            .map_err(fail("GetUser")),
    )?;
    Ok(out
        .as_ref()
        .and_then(|o| o.user())
        .map(|u| iam_tags(u.tags())))
}

/// A user's access keys: id and whether it is active; `None` when the user is gone.
async fn access_keys(
    iam: &aws_sdk_iam::Client,
    user: &str,
) -> Result<Option<Vec<(String, bool)>>, DeleteError> {
    Ok(entity_parts!(
        iam,
        list_access_keys,
        user_name(user),
        "ListAccessKeys",
        |out| out.access_key_metadata().iter().filter_map(|k| {
            let active = k.status() == Some(&aws_sdk_iam::types::StatusType::Active);
            k.access_key_id().map(|id| (id.to_owned(), active))
        })
    ))
}

/// Whether the key is active now; `None` when it (or its user) is gone.
async fn key_active(
    iam: &aws_sdk_iam::Client,
    user: &str,
    key: &str,
) -> Result<Option<bool>, DeleteError> {
    Ok(access_keys(iam, user)
        .await?
        .and_then(|keys| keys.into_iter().find(|(id, _)| id == key))
        .map(|(_, active)| active))
}

/// An access key is judged by its user's tags (a key carries none of its own).
pub(super) async fn inspect_access_key(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Inspection, DeleteError> {
    let (user, key) = access_key_of(arn)?;
    let iam = client(sdk);
    if key_active(&iam, user, key).await?.is_none() {
        return Ok(Inspection::Gone);
    }
    Ok(match user_tags(&iam, user).await? {
        Some(tags) => live(tags),
        None => Inspection::Gone,
    })
}

/// How deactivating an access key ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deactivation {
    /// This call made it inactive.
    Deactivated,
    /// It was inactive already (its owner, or an earlier attempt, switched it off).
    AlreadyInactive,
    /// It (or its user) is gone.
    Gone,
}

/// The first, reversible step of deleting an access key: `UpdateAccessKey` to `Inactive`.
pub(super) async fn deactivate_access_key(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Deactivation, DeleteError> {
    let (user, key) = access_key_of(arn)?;
    let iam = client(sdk);
    match key_active(&iam, user, key).await? {
        None => Ok(Deactivation::Gone),
        Some(false) => Ok(Deactivation::AlreadyInactive),
        Some(true) => {
            let r = iam
                .update_access_key()
                .user_name(user)
                .access_key_id(key)
                .status(aws_sdk_iam::types::StatusType::Inactive)
                .send()
                .await
                .map_err(fail("UpdateAccessKey"));
            Ok(match absent(r)? {
                Some(_) => Deactivation::Deactivated,
                None => Deactivation::Gone,
            })
        }
    }
}

/// The second step: the key, inactive since ephemera deactivated it, is deleted. One active
/// again was switched back on by someone after that: it is left alone, never deleted live.
pub(super) async fn delete_access_key(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let (user, key) = access_key_of(arn)?;
    let iam = client(sdk);
    match key_active(&iam, user, key).await? {
        None => return Ok(Deleted::AlreadyGone),
        Some(true) => {
            return Err(DeleteError::Stopped(format!(
                "access key {key} of {user} is active again: someone switched it back on after \
                 it was deactivated, and an active key is never deleted (deactivate it again, \
                 or protect or renew it)"
            )));
        }
        Some(false) => {}
    }
    let r = iam
        .delete_access_key()
        .user_name(user)
        .access_key_id(key)
        .send()
        .await
        .map_err(fail("DeleteAccessKey"));
    settle(r, NO_ENTITY, CONFLICT)
}

/// A user's access keys are its dependencies: each is deleted on its own finding, in its two
/// steps, before the user may go.
pub(super) async fn inspect_user(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    let name = entity_name(arn, "user")?;
    let iam = client(sdk);
    let Some(tags) = user_tags(&iam, name).await? else {
        return Ok(Inspection::Gone);
    };
    let Some(keys) = access_keys(&iam, name).await? else {
        return Ok(Inspection::Gone);
    };
    Ok(Inspection::Live {
        tags,
        depends_on: keys
            .iter()
            .filter_map(|(id, _)| Arn::access_key(arn, id))
            .collect(),
    })
}

/// Deletes a user with what is part of it: its console password, inline policies, SSH keys
/// and signing certificates; its managed policies are detached and it leaves its groups (the
/// policies and groups stay). A user with access keys left is in use (they go first, on their
/// own findings); an MFA device or service credentials left make IAM refuse (`DeleteConflict`,
/// in use) for a person to look at.
pub(super) async fn delete_user(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let name = entity_name(arn, "user")?;
    let iam = client(sdk);
    let Some(keys) = access_keys(&iam, name).await? else {
        return Ok(Deleted::AlreadyGone);
    };
    if let Some((id, _)) = keys.first() {
        return Err(DeleteError::InUse {
            message: format!("{arn} still has access key {id}: its keys are deleted first"),
            source: None,
        });
    }
    part(
        iam.delete_login_profile()
            .user_name(name)
            .send()
            .await
            .map_err(fail("DeleteLoginProfile")),
    )?;
    remove_parts!(
        iam,
        list_user_policies,
        user_name(name),
        "ListUserPolicies",
        |out| out.policy_names().iter().cloned(),
        |policy| iam.delete_user_policy().user_name(name).policy_name(policy),
        "DeleteUserPolicy"
    );
    remove_parts!(
        iam,
        list_attached_user_policies,
        user_name(name),
        "ListAttachedUserPolicies",
        |out| out
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_owned)),
        |policy| iam.detach_user_policy().user_name(name).policy_arn(policy),
        "DetachUserPolicy"
    );
    remove_parts!(
        iam,
        list_groups_for_user,
        user_name(name),
        "ListGroupsForUser",
        |out| out.groups().iter().map(|g| g.group_name().to_owned()),
        |group| iam
            .remove_user_from_group()
            .user_name(name)
            .group_name(group),
        "RemoveUserFromGroup"
    );
    remove_parts!(
        iam,
        list_signing_certificates,
        user_name(name),
        "ListSigningCertificates",
        |out| out
            .certificates()
            .iter()
            .map(|c| c.certificate_id().to_owned()),
        |certificate| iam
            .delete_signing_certificate()
            .user_name(name)
            .certificate_id(certificate),
        "DeleteSigningCertificate"
    );
    remove_parts!(
        iam,
        list_ssh_public_keys,
        user_name(name),
        "ListSSHPublicKeys",
        |out| out
            .ssh_public_keys()
            .iter()
            .map(|k| k.ssh_public_key_id().to_owned()),
        |key| iam
            .delete_ssh_public_key()
            .user_name(name)
            .ssh_public_key_id(key),
        "DeleteSSHPublicKey"
    );
    let r = iam
        .delete_user()
        .user_name(name)
        .send()
        .await
        .map_err(fail("DeleteUser"));
    settle(r, NO_ENTITY, CONFLICT)
}

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[
    Kind {
        ty: ResourceType::IamRole,
        example: "arn:aws:iam::123456789012:role/ci/deploy-role",
        rank: 5,
        inspect: |sdk, arn| Box::pin(inspect_role(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_role(sdk, arn)),
        actions: ROLE_ACTIONS,
        // IAM authorizes these on the role's, profile's or policy's own tags
        // (`aws:ResourceTag`, and `iam:ResourceTag` alike). RemoveRoleFromInstanceProfile is
        // authorized on the instance profile alone: deleting a role removes it from profiles
        // whose tags are not the role's, so it stays unconditioned in both rows.
        tag_conditioned: &[
            "iam:DeleteRole",
            "iam:DeleteRolePolicy",
            "iam:DetachRolePolicy",
            "iam:PutRolePolicy",
        ],
    },
    Kind {
        ty: ResourceType::IamInstanceProfile,
        example: "arn:aws:iam::123456789012:instance-profile/web-profile",
        rank: 4,
        inspect: |sdk, arn| Box::pin(inspect_instance_profile(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_instance_profile(sdk, arn)),
        actions: INSTANCE_PROFILE_ACTIONS,
        tag_conditioned: &["iam:DeleteInstanceProfile"],
    },
    Kind {
        ty: ResourceType::IamPolicy,
        example: "arn:aws:iam::123456789012:policy/ci/web-policy",
        rank: REST,
        inspect: |sdk, arn| Box::pin(inspect_policy(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_policy(sdk, arn)),
        actions: POLICY_ACTIONS,
        tag_conditioned: &["iam:DeletePolicy", "iam:DeletePolicyVersion"],
    },
    Kind {
        ty: ResourceType::IamAccessKey,
        example: "arn:aws:iam::123456789012:access-key/ci-runner/AKIAIOSFODNN7EXAMPLE",
        // Before their user.
        rank: 4,
        inspect: |sdk, arn| Box::pin(inspect_access_key(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_access_key(sdk, arn)),
        actions: ACCESS_KEY_ACTIONS,
        // Authorized on the user, whose tags the key is judged by.
        tag_conditioned: &["iam:DeleteAccessKey", "iam:UpdateAccessKey"],
    },
    Kind {
        ty: ResourceType::IamUser,
        example: "arn:aws:iam::123456789012:user/ci/runner-42",
        rank: 5,
        inspect: |sdk, arn| Box::pin(inspect_user(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_user(sdk, arn)),
        actions: USER_ACTIONS,
        // Authorized on the user. Removing it from a group is authorized on the group alone:
        // it stays unconditioned.
        tag_conditioned: &[
            "iam:DeleteLoginProfile",
            "iam:DeleteSSHPublicKey",
            "iam:DeleteSigningCertificate",
            "iam:DeleteUser",
            "iam:DeleteUserPolicy",
            "iam:DetachUserPolicy",
        ],
    },
    Kind {
        ty: ResourceType::IamOidcProvider,
        example: "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com",
        rank: REST,
        inspect: |sdk, arn| Box::pin(inspect_oidc_provider(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_oidc_provider(sdk, arn)),
        actions: OIDC_PROVIDER_ACTIONS,
        tag_conditioned: &["iam:DeleteOpenIDConnectProvider"],
    },
];
