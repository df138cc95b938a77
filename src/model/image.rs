//! The machine image an EC2 instance runs, or a launch template would launch, as inventory
//! found it.

/// An AMI as far as the approved-image catalog cares: its id, and — when EC2 could still
/// describe it — its owner and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Image {
    /// `ami-…` as the instance or template names it (a template may name an SSM parameter,
    /// `resolve:ssm:…`, instead).
    pub id: String,
    /// The owning account (12 digits), when described.
    pub owner: Option<String>,
    /// The owner's alias (`amazon`, `aws-marketplace`), when AWS gives one.
    pub owner_alias: Option<String>,
    /// The AMI's name, when described.
    pub name: Option<String>,
}

impl Image {
    /// An image known only by its id: deregistered, not visible to the account, or not
    /// described yet.
    pub fn by_id(id: impl Into<String>) -> Self {
        Image {
            id: id.into(),
            owner: None,
            owner_alias: None,
            name: None,
        }
    }
}
