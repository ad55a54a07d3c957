//! Who does something, as the domain sees it: a user with their roles. The
//! HTTP layer's [`crate::auth::AuthUser`] (checked against the sessions table
//! on every request, with its session and device) derefs to one, so handlers
//! pass it on as is, while domain functions never see the transport's view of
//! a caller and can be called from the demo, the CLI and tests with a plain
//! `Actor`.

use crate::auth::Role;
use crate::error::{Error, Result};

/// A user acting in the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// User id.
    pub user_id: i64,
    /// Login name, as audit entries record it.
    pub username: String,
    /// Roles held now.
    pub roles: Vec<Role>,
}

impl Actor {
    /// Whether the actor holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Succeeds if the actor holds at least one of `roles`
    /// ([`Error::RoleNeeded`] otherwise).
    pub fn require(&self, roles: &[Role]) -> Result<()> {
        if roles.iter().any(|r| self.has(*r)) {
            return Ok(());
        }
        Err(Error::RoleNeeded(roles.to_vec()))
    }
}
