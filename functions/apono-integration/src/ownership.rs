//! Which integrations this resource may change or delete: the physical ID says whether it
//! created or adopted one, and a mark in the integration says which stack resource made it.

use custom_resource::response::truncate_utf8;

/// How an integration is known to be this resource's own. Apono integrations carry no tags;
/// what marks one is a sentence in its `custom_access_details` (the note Apono shows to
/// requesters, at most 400 characters) naming the stack by its unique ID (a stack re-created
/// under the same name is another owner) and the resource's logical ID. Integration names are
/// unique in an Apono account, so a Create that finds its name taken by an integration with
/// this mark is meeting its own earlier attempt (a process killed after its POST, a second
/// delivery of the event), not something to adopt; and a failed Create's rollback can find
/// and remove what a POST left behind without its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerMark(String);

impl OwnerMark {
    pub fn of(stack_id: &str, logical_id: &str) -> Self {
        // arn:aws:cloudformation:REGION:ACCOUNT:stack/NAME/UUID: the UUID is the stack's own.
        let stack = stack_id.rsplit('/').next().unwrap_or(stack_id);
        OwnerMark(format!(
            "(stack {}, resource {})",
            truncate_utf8(stack, 64),
            truncate_utf8(logical_id, 255)
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The whole note: at most 30 + 338 + 25 characters, within Apono's 400.
    pub fn note(&self) -> String {
        format!(
            "Managed by AWS CloudFormation {}: change it in the stack.",
            self.0
        )
    }
}

/// The physical ID of a failed Create whose POST may have been carried out without its answer
/// reaching us: `pending:<name>`. The rollback's Delete removes an integration of that name
/// only if it carries this resource's [`OwnerMark`].
pub const PENDING_PREFIX: &str = "pending:";

/// Whether this resource created the integration (and so may delete it) or found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    Created,
    Adopted,
}

impl Ownership {
    fn prefix(self) -> &'static str {
        match self {
            Ownership::Created => "created:",
            Ownership::Adopted => "adopted:",
        }
    }

    /// The physical ID: `created:<id>` or `adopted:<id>`.
    pub fn physical_id(self, integration_id: &str) -> String {
        format!("{}{integration_id}", self.prefix())
    }

    pub fn parse(physical_id: &str) -> Option<(Ownership, &str)> {
        [Ownership::Created, Ownership::Adopted]
            .into_iter()
            .find_map(|o| physical_id.strip_prefix(o.prefix()).map(|id| (o, id)))
            .filter(|(_, id)| !id.is_empty())
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Ownership::Created => "created",
            Ownership::Adopted => "adopted",
        }
    }
}
