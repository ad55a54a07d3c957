//! Who sees a drawn list: the one rule of docs/draw.md ("Who sees a drawn
//! list"), which every API route and console page that shows drawn targets or
//! records asks, rather than deciding on its own.
//!
//! [`sight`] is the rule itself, a pure function of who is looking
//! ([`Viewer`]) and what the rule needs to know about a record
//! ([`RecordFacts`]). The rest loads those facts with one query and answers
//! the questions routes ask: how far one record may be seen ([`sight_of`],
//! [`ensure_full`]) and which records of a list ([`sights`]).
//!
//! A record the caller may not see is answered exactly like a record that
//! does not exist (404, the same message), so record ids cannot be probed.
//! The facts come from the review index (`records.review_state`); a
//! submission the index has not caught up with yet can only keep a record
//! hidden a little longer, never show one early, since a record never goes
//! back to `open`.

use std::collections::HashMap;

use crate::store::sql::{Conn, params};

use crate::actor::Actor;
use crate::auth::Role;
use crate::draw::records::{self, RecordSummary};
use crate::error::{Error, Result};

/// How much of a record a viewer may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sight {
    /// Nothing, not even that it exists: 404 and absent from every list.
    Hidden,
    /// Its line in the task's lists (target, group, deadline, state), which
    /// the published draw record has made public anyway; not the document.
    Listed,
    /// The whole record: the document, its photos and its review.
    Full,
}

/// Who is looking, as far as the rule needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// Roles held now.
    pub roles: Vec<Role>,
    /// The inspector linked to the account, if any.
    pub inspector_id: Option<i64>,
}

impl Viewer {
    /// The viewer a logged-in user is.
    pub fn of(conn: &Conn, user: &Actor) -> Result<Viewer> {
        Ok(Viewer {
            roles: user.roles.clone(),
            inspector_id: crate::review::inspector_of_user(conn, user.user_id)?,
        })
    }

    fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// What the rule needs to know about a record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFacts {
    /// The inspectors of its current group (not those who stepped aside).
    pub group: Vec<i64>,
    /// Withdrawn (its target was out of scope).
    pub withdrawn: bool,
    /// Submitted at least once: review state `submitted`, `returned`,
    /// `approved` or `published`.
    pub submitted: bool,
    /// Its task's drawn list is published (公示): the task's initial draw
    /// record has been published with `POST /api/v1/tasks/{id}/draw/publish`,
    /// or the task is a 复查 ([`LIST_PUBLISHED_SQL`]).
    pub list_published: bool,
}

/// The rule. Admins and planners see every record. An inspector sees the
/// records whose current group includes them, while not withdrawn. A
/// supervisor sees a record once it is submitted, and the lines of every
/// record of a task once its drawn list is published. Nobody else sees
/// anything; a user with several roles sees what the most seeing of them
/// does. (Separation of duties is about deciding, not seeing: a supervisor who
/// inspected a record sees it, marked, and cannot decide on it.)
pub fn sight(viewer: &Viewer, record: &RecordFacts) -> Sight {
    if viewer.has(Role::Admin) || viewer.has(Role::Planner) {
        return Sight::Full;
    }
    let own = viewer.has(Role::Inspector)
        && !record.withdrawn
        && viewer
            .inspector_id
            .is_some_and(|me| record.group.contains(&me));
    if own || (viewer.has(Role::Supervisor) && record.submitted) {
        return Sight::Full;
    }
    if viewer.has(Role::Supervisor) && record.list_published {
        return Sight::Listed;
    }
    Sight::Hidden
}

/// Whether `viewer` may see the whole of a record.
pub fn may_see_record(viewer: &Viewer, record: &RecordFacts) -> bool {
    sight(viewer, record) == Sight::Full
}

/// SQL, over a `records` row aliased `r`: whether the list its record is on
/// is public. A drawn list is once its task's initial draw record is
/// published; a 复查 (follow_ups.rs) is from the start, since the result
/// whose order it rechecks was published naming the target.
pub const LIST_PUBLISHED_SQL: &str = "(EXISTS(SELECT 1 FROM draws d WHERE d.task_id = r.task_id
        AND d.kind = 'initial' AND d.published_at IS NOT NULL)
     OR EXISTS(SELECT 1 FROM rechecks k WHERE k.task_id = r.task_id))";

/// The facts of the records of `task_id` (every task with `None`), or of the
/// one record `record_id`, by record id.
pub fn record_facts(
    conn: &Conn,
    task_id: Option<i64>,
    record_id: Option<&str>,
) -> Result<HashMap<String, RecordFacts>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT r.id, r.withdrawn_at IS NOT NULL, r.review_state <> 'open', {LIST_PUBLISHED_SQL},
            (SELECT json_group_array(inspector_id) FROM record_inspectors WHERE record_id = r.id)
         FROM records r
         WHERE (CAST(?1 AS BIGINT) IS NULL OR r.task_id = ?1) AND (CAST(?2 AS TEXT) IS NULL OR r.id = ?2)"
    ))?;
    let rows = stmt.query_map(params![task_id, record_id], |r| {
        let group: String = r.get(4)?;
        Ok((
            r.get::<_, String>(0)?,
            RecordFacts {
                withdrawn: r.get(1)?,
                submitted: r.get(2)?,
                list_published: r.get(3)?,
                group: serde_json::from_str(&group).unwrap_or_default(),
            },
        ))
    })?;
    rows.collect::<std::result::Result<_, _>>()
}

/// How far `user` may see each record of `task_id` (every task with `None`);
/// records they may not see at all are left out.
pub fn sights(conn: &Conn, user: &Actor, task_id: Option<i64>) -> Result<HashMap<String, Sight>> {
    let viewer = Viewer::of(conn, user)?;
    Ok(record_facts(conn, task_id, None)?
        .into_iter()
        .map(|(id, facts)| (id, sight(&viewer, &facts)))
        .filter(|(_, s)| *s > Sight::Hidden)
        .collect())
}

/// How far `user` may see record `record_id` (`Hidden` for an unknown id).
pub fn sight_of(conn: &Conn, user: &Actor, record_id: &str) -> Result<Sight> {
    let viewer = Viewer::of(conn, user)?;
    Ok(record_facts(conn, None, Some(record_id))?
        .get(record_id)
        .map_or(Sight::Hidden, |facts| sight(&viewer, facts)))
}

/// Not found (404) unless `user` may see the whole of record `record_id`;
/// the answer is the same as for an id that does not exist.
pub fn ensure_full(conn: &Conn, user: &Actor, record_id: &str) -> Result<()> {
    match sight_of(conn, user, record_id)? {
        Sight::Full => Ok(()),
        _ => Err(not_found(record_id)),
    }
}

/// The records of a task (every task with `None`) that `user` may see, each
/// with how far: `records::list` through the rule.
pub fn visible_records(
    conn: &Conn,
    user: &Actor,
    task_id: Option<i64>,
) -> Result<Vec<(RecordSummary, Sight)>> {
    let sights = sights(conn, user, task_id)?;
    Ok(records::list(conn, task_id, None)?
        .into_iter()
        .filter_map(|r| sights.get(&r.id).map(|s| (r, *s)))
        .collect())
}

/// The error for a record that does not exist or may not be seen.
pub fn not_found(record_id: &str) -> Error {
    Error::NotFound(format!("record {record_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn viewer(roles: &[Role], inspector_id: Option<i64>) -> Viewer {
        Viewer {
            roles: roles.to_vec(),
            inspector_id,
        }
    }

    fn record(submitted: bool, list_published: bool) -> RecordFacts {
        RecordFacts {
            group: vec![1, 2],
            withdrawn: false,
            submitted,
            list_published,
        }
    }

    #[test]
    fn planners_and_admins_see_everything_the_public_nothing() {
        for roles in [&[Role::Admin][..], &[Role::Planner]] {
            assert_eq!(
                sight(&viewer(roles, None), &record(false, false)),
                Sight::Full
            );
        }
        assert_eq!(
            sight(&viewer(&[], None), &record(true, true)),
            Sight::Hidden
        );
    }

    #[test]
    fn an_inspector_sees_only_the_records_of_their_current_group() {
        let member = viewer(&[Role::Inspector], Some(1));
        let other = viewer(&[Role::Inspector], Some(3));
        assert_eq!(sight(&member, &record(false, false)), Sight::Full);
        assert_eq!(sight(&other, &record(true, true)), Sight::Hidden);
        let withdrawn = RecordFacts {
            withdrawn: true,
            ..record(false, false)
        };
        assert_eq!(sight(&member, &withdrawn), Sight::Hidden);
        // The link alone is not a role.
        assert_eq!(
            sight(&viewer(&[], Some(1)), &record(false, false)),
            Sight::Hidden
        );
    }

    #[test]
    fn a_supervisor_sees_a_record_once_submitted_and_lines_once_the_list_is_published() {
        let supervisor = viewer(&[Role::Supervisor], None);
        assert_eq!(sight(&supervisor, &record(false, false)), Sight::Hidden);
        assert_eq!(sight(&supervisor, &record(false, true)), Sight::Listed);
        assert_eq!(sight(&supervisor, &record(true, false)), Sight::Full);
        assert!(may_see_record(&supervisor, &record(true, true)));
    }
}
