//! The reaper: plans the deletion of what policy marked, and carries it out behind every guard
//! once armed. [`plan`] decides (pure), [`run`] acts (the pass's act step and on-call reaping),
//! [`aws`] holds the per-type inspect and delete calls, [`iam`] the IAM actions each type's calls
//! need.

pub mod aws;
pub mod iam;
pub mod plan;
pub mod run;

#[cfg(test)]
mod tests {
    use strum::VariantArray;

    use crate::model::ResourceType;

    /// The config accepts exactly the types that have a deleter, in the deleters' order.
    #[test]
    fn resource_types_are_the_deletable_types() {
        let names: Vec<&str> = ResourceType::VARIANTS.iter().map(|t| t.as_str()).collect();
        assert_eq!(names, super::aws::DELETABLE_TYPES);
    }
}
