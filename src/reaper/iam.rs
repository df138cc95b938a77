//! The IAM actions the reaper's AWS calls need, per deletable type: what
//! [`super::aws::inspect`] (the last-moment re-read of existence, tags and dependencies) and
//! [`super::aws::delete`] call for that type, as IAM names them. Each type's actions sit next
//! to its calls in the service's file under [`super::aws`] (its [`super::aws::Kind`] entry,
//! found by [`super::aws::iam_actions`]); [`crate::iam`] builds the printed policy from these
//! and nothing else.
//!
//! Architecture Invariant: a type's actions are exactly those of the calls its deleter can
//! make — no wildcard, no "just in case". A type without its registry entry fails `every_type_has_exactly_one_kind`;
//! a row that is not concrete actions of its own service, able to look and delete, fails
//! `reaper::aws::tests`; a call a deleter makes that its row misses fails the integration test
//! `iam::every_row_is_exactly_what_its_deleter_calls` (which also fails on an action no call
//! needs).

use strum::VariantArray;

use crate::model::ResourceType;

/// The account check before the first deletion in an account (`GetCallerIdentity`; AWS allows
/// it to every principal, it is listed so the policy names every call).
pub const VERIFY_ACCOUNT_ACTIONS: &[&str] = &["sts:GetCallerIdentity"];

/// The actions of `resource_type`'s calls, sorted.
pub fn actions_for(resource_type: ResourceType) -> &'static [&'static str] {
    super::aws::iam_actions(resource_type)
}

/// The deleting actions of `resource_type`'s row that AWS can refuse on the resource's tags;
/// sorted, a subset of [`actions_for`].
pub fn tag_conditioned(resource_type: ResourceType) -> &'static [&'static str] {
    super::aws::iam_tag_conditioned(resource_type)
}

/// `(resource type, IAM actions)` for every deletable type, in [`ResourceType`] order.
pub fn reap_actions() -> impl Iterator<Item = (ResourceType, &'static [&'static str])> {
    ResourceType::VARIANTS.iter().map(|t| (*t, actions_for(*t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`crate::iam`] relies on: every type once, in order, with its own calls' actions.
    #[test]
    fn reap_actions_list_every_type_once_with_its_actions() {
        let rows: Vec<(ResourceType, &[&str])> = reap_actions().collect();
        let types: Vec<ResourceType> = rows.iter().map(|(t, _)| *t).collect();
        assert_eq!(types, ResourceType::VARIANTS);
        for (t, actions) in rows {
            assert!(!actions.is_empty(), "{t}");
            assert_eq!(actions, super::super::aws::iam_actions(t), "{t}");
        }
    }
}
