//! Who hears about a lease's resources: owners written as an e-mail address, a handle (a
//! GitHub login, say) mapped to an address by `[handles]`, or a team's name; teams with their
//! own mail and on-call addresses and the projects they own (`[[team]]`).
//!
//! Handles and team names are compared as identities, not raw strings: trimmed and ASCII
//! lower-cased, as GitHub and GitLab treat logins.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::Policy;
use crate::model::ProjectName;

/// A team: who gets its mail, who is on call for it, which projects it owns, who is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    /// Normalized (see [`handle_key`]).
    pub name: String,
    /// Where notices for leases the team owns go (owner = the team, or a member without an
    /// address of their own).
    pub mail: Vec<String>,
    /// The team's on-call: its share of each pass's summary, and notices of its projects that
    /// no owner can be found for.
    pub oncall: Vec<String>,
    pub projects: BTreeSet<ProjectName>,
    /// Handles (normalized) or addresses of the people in it.
    pub members: BTreeSet<String>,
}

/// The handle → address table and the teams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    /// Normalized handle → address.
    pub handles: BTreeMap<String, String>,
    /// By normalized name.
    pub teams: BTreeMap<String, Team>,
}

/// How a recipient was found, lowest precedence last. Told to the reader of a message, so
/// they know why it reached them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "via", rename_all = "kebab-case")]
pub enum Via {
    /// The owner is an e-mail address.
    Address,
    /// The owner is a handle with an address in `[handles]`.
    Handle { handle: String },
    /// The owner is a team: its `mail` (or its `oncall` when it has no `mail`).
    Team { team: String },
    /// The owner is a handle without an address, a member of this team.
    Member { handle: String, team: String },
    /// No owner could be reached; the team owning the project hears instead.
    ProjectTeam { team: String },
}

impl Via {
    /// Whether the message reaches someone other than the owner (an on-call stand-in).
    pub fn unowned(&self) -> bool {
        matches!(self, Via::ProjectTeam { .. })
    }
}

/// Where a notice goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub to: Vec<String>,
    #[serde(flatten)]
    pub via: Via,
}

/// Whether `a` is an e-mail address (as the mail relay will take it).
pub fn is_address(a: &str) -> bool {
    a.parse::<lettre::Address>().is_ok()
}

/// A handle or team name as an identity: trimmed, ASCII lower-case.
pub fn handle_key(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

impl Directory {
    /// The team owning `project`, if one lists it.
    pub fn team_of_project(&self, project: &str) -> Option<&Team> {
        self.teams
            .values()
            .find(|t| t.projects.iter().any(|p| p.as_str() == project))
    }

    /// Whether `owner` names someone this directory can reach by itself (an address, a known
    /// handle, a team, or a member of a team), whatever the project.
    pub fn knows(&self, owner: &str) -> bool {
        self.route(Some(owner), None)
            .is_some_and(|r| !r.via.unowned())
    }

    /// Where a notice about a resource of `owner` in `project` goes. Precedence: the owner as
    /// an address; as a handle with an address; as a team; as a member of a team (the
    /// project's team first, else the first by name); then the on-call of the team owning the
    /// project. `None`: nobody here; the caller falls back to `[smtp] oncall` (or drops it).
    pub fn route(&self, owner: Option<&str>, project: Option<&str>) -> Option<Route> {
        let project_team = project.and_then(|p| self.team_of_project(p));
        if let Some(owner) = owner.map(str::trim).filter(|o| !o.is_empty()) {
            if is_address(owner) {
                return Some(Route {
                    to: vec![owner.to_owned()],
                    via: Via::Address,
                });
            }
            let key = handle_key(owner);
            if let Some(addr) = self.handles.get(&key) {
                return Some(Route {
                    to: vec![addr.clone()],
                    via: Via::Handle { handle: key },
                });
            }
            if let Some(team) = self.teams.get(&key)
                && let Some(to) = first_nonempty(&team.mail, &team.oncall)
            {
                return Some(Route {
                    to,
                    via: Via::Team { team: key },
                });
            }
            let member_of = project_team
                .into_iter()
                .chain(self.teams.values())
                .find(|t| t.members.contains(&key) && !t.mail.is_empty());
            if let Some(team) = member_of {
                return Some(Route {
                    to: team.mail.clone(),
                    via: Via::Member {
                        handle: key,
                        team: team.name.clone(),
                    },
                });
            }
        }
        let team = project_team?;
        Some(Route {
            to: first_nonempty(&team.oncall, &team.mail)?,
            via: Via::ProjectTeam {
                team: team.name.clone(),
            },
        })
    }
}

fn first_nonempty(a: &[String], b: &[String]) -> Option<Vec<String>> {
    [a, b]
        .into_iter()
        .find(|l| !l.is_empty())
        .map(<[_]>::to_vec)
}

impl Policy {
    /// The handles and teams of the rules.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn team(
        name: &str,
        mail: &[&str],
        oncall: &[&str],
        projects: &[&str],
        members: &[&str],
    ) -> Team {
        let list = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
        Team {
            name: name.into(),
            mail: list(mail),
            oncall: list(oncall),
            projects: projects
                .iter()
                .map(|p| ProjectName::parse(p).expect("valid fixture"))
                .collect(),
            members: members.iter().map(|m| handle_key(m)).collect(),
        }
    }

    fn directory() -> Directory {
        let mut d = Directory::default();
        d.handles
            .insert("octocat".into(), "octo@example.com".into());
        for t in [
            team(
                "web-platform",
                &["web@example.com"],
                &["web-oncall@example.com"],
                &["web"],
                &["hubot", "mona"],
            ),
            team(
                "data",
                &[],
                &["data-oncall@example.com"],
                &["data"],
                &["mona"],
            ),
            team("quiet", &[], &[], &["ml"], &[]),
        ] {
            d.teams.insert(t.name.clone(), t);
        }
        d
    }

    #[test]
    fn owners_route_by_precedence() {
        let d = directory();
        let r = |owner: Option<&str>, project: Option<&str>| {
            d.route(owner, project).map(|r| (r.to.join(","), r.via))
        };
        let s = |x: &str| x.to_owned();
        // (owner, project, recipients, via)
        type Case<'a> = (Option<&'a str>, Option<&'a str>, Option<(String, Via)>);
        let table: Vec<Case<'_>> = vec![
            (
                Some("a@example.com"),
                Some("web"),
                Some((s("a@example.com"), Via::Address)),
            ),
            // Handles are identities: case and whitespace do not matter.
            (
                Some(" OctoCat "),
                None,
                Some((
                    s("octo@example.com"),
                    Via::Handle {
                        handle: s("octocat"),
                    },
                )),
            ),
            (
                Some("web-platform"),
                None,
                Some((
                    s("web@example.com"),
                    Via::Team {
                        team: s("web-platform"),
                    },
                )),
            ),
            // A team without mail is reached through its on-call.
            (
                Some("DATA"),
                Some("web"),
                Some((s("data-oncall@example.com"), Via::Team { team: s("data") })),
            ),
            (
                Some("hubot"),
                Some("data"),
                Some((
                    s("web@example.com"),
                    Via::Member {
                        handle: s("hubot"),
                        team: s("web-platform"),
                    },
                )),
            ),
            // A member of several teams is routed to the project's team if it has mail,
            // else to the first team with mail.
            (
                Some("mona"),
                Some("data"),
                Some((
                    s("web@example.com"),
                    Via::Member {
                        handle: s("mona"),
                        team: s("web-platform"),
                    },
                )),
            ),
            (
                Some("stranger"),
                Some("web"),
                Some((
                    s("web-oncall@example.com"),
                    Via::ProjectTeam {
                        team: s("web-platform"),
                    },
                )),
            ),
            (
                None,
                Some("data"),
                Some((
                    s("data-oncall@example.com"),
                    Via::ProjectTeam { team: s("data") },
                )),
            ),
            (
                Some(""),
                Some("web"),
                Some((
                    s("web-oncall@example.com"),
                    Via::ProjectTeam {
                        team: s("web-platform"),
                    },
                )),
            ),
            (Some("stranger"), None, None),
            (Some("stranger"), Some("nosuch"), None),
            // A team with neither list reaches nobody.
            (Some("quiet"), Some("ml"), None),
            (None, None, None),
        ];
        for (owner, project, want) in table {
            assert_eq!(r(owner, project), want, "{owner:?} in {project:?}");
        }
    }

    #[test]
    fn known_owners_and_unowned_routes() {
        let d = directory();
        for (owner, known) in [
            ("a@example.com", true),
            ("OCTOCAT", true),
            ("web-platform", true),
            ("hubot", true),
            ("stranger", false),
            ("quiet", false),
            ("", false),
        ] {
            assert_eq!(d.knows(owner), known, "{owner}");
        }
        assert!(Via::ProjectTeam { team: "t".into() }.unowned());
        assert!(!Via::Team { team: "t".into() }.unowned());
        assert!(!Via::Address.unowned());
        assert_eq!(
            d.team_of_project("data").map(|t| t.name.as_str()),
            Some("data")
        );
        assert!(d.team_of_project("nosuch").is_none());
    }
}
