//! Who may write what: checks the changes a replica brought in against the record's rules
//! (only the assigned inspectors write a record, each change under the actor of the one
//! inspector and device that sent it, never the server's; inspectors only put scalars where
//! the layout has answers, never in `assignment` or `review`).

use super::{
    ActorIdentity, Assignment, InspectorSignature, PartySignature, RecordDoc, actor_identity, keys,
};
use crate::error::{Error, Result};
use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{ActorId, ChangeHash, Prop, ROOT, ReadDoc, ScalarValue, Value};
use std::collections::HashMap;

/// What [`RecordDoc::check_writes`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteCheck {
    /// What breaks the rules; empty when everything is allowed.
    pub violations: Vec<String>,
    /// The signature values the changes wrote.
    pub signatures: WrittenSignatures,
}

/// Signature values that changes wrote ([`RecordDoc::check_writes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WrittenSignatures {
    /// Inspector signatures, in the order written.
    pub inspectors: Vec<InspectorSignature>,
    /// Party signatures (or refusals), in the order written.
    pub party: Vec<PartySignature>,
}

impl RecordDoc {
    /// Checks every change in the document that is not reachable from `since` (the heads the
    /// server held before applying a phone's message) and returns what breaks the rules; empty
    /// when everything is allowed. Each such change must be by `writer`, the actor of the
    /// inspector and device the message came from: never the server's actor, never a
    /// partner's, never another device's. The writer must be in the group of the assignment as
    /// it was at `since`, so that incoming changes cannot vouch for themselves by rewriting it.
    pub fn write_violations(
        &mut self,
        since: &[ChangeHash],
        writer: &ActorId,
    ) -> Result<Vec<String>> {
        Ok(self.check_writes(since, writer)?.violations)
    }

    /// [`Self::write_violations`], and in the same pass over the changes the signature values
    /// they wrote (each value every change put, not only the one a merge shows), for the
    /// signature check.
    pub fn check_writes(&mut self, since: &[ChangeHash], writer: &ActorId) -> Result<WriteCheck> {
        let group = self.group_at(since)?;
        let mut problems = Vec::new();
        let mut signatures = WrittenSignatures::default();
        // Many operations land in the same few objects; find each object's path once.
        let mut paths: HashMap<ObjectId, Vec<String>> = HashMap::new();
        for change in self.doc.get_changes(since) {
            if change.actor_id() != writer {
                problems.push(format!(
                    "change {} is by {}, not by this session's inspector on this device ({})",
                    change.hash(),
                    describe(change.actor_id()),
                    describe(writer)
                ));
                continue;
            }
            let inspector = match actor_identity(change.actor_id()) {
                ActorIdentity::Server => {
                    problems.push(format!(
                        "change {} is by the server's actor, which no phone may use",
                        change.hash()
                    ));
                    continue;
                }
                ActorIdentity::Unknown => {
                    problems.push(format!(
                        "change {} is by an actor that is neither the server nor an inspector",
                        change.hash()
                    ));
                    continue;
                }
                ActorIdentity::Inspector { inspector_id, .. } => inspector_id,
            };
            if !group.iter().any(|i| i.inspector_id == inspector) {
                problems.push(format!(
                    "inspector {inspector} is not assigned to this record"
                ));
                continue;
            }
            for op in change.decode().operations {
                let mut path = match paths.get(&op.obj) {
                    Some(path) => path.clone(),
                    None => {
                        let path = self.object_path(&op.obj)?;
                        paths.insert(op.obj.clone(), path.clone());
                        path
                    }
                };
                path.push(match &op.key {
                    Key::Map(name) => name.to_string(),
                    Key::Seq(_) => "[]".to_owned(),
                });
                if !inspector_may_write(&path, &op.action) {
                    problems.push(format!(
                        "inspector {inspector} may not {} {}",
                        match op.action {
                            OpType::Make(_) => "create an object at",
                            OpType::Delete => "delete",
                            _ => "write",
                        },
                        path.join("/")
                    ));
                    continue;
                }
                let OpType::Put(ScalarValue::Str(json)) = &op.action else {
                    continue;
                };
                let p: Vec<&str> = path.iter().map(String::as_str).collect();
                let parsed = match p.as_slice() {
                    [keys::SIGNATURES, _] => {
                        serde_json::from_str(json).map(|s| signatures.inspectors.push(s))
                    }
                    [keys::PARTY, keys::SIGNATURE] => {
                        serde_json::from_str(json).map(|s| signatures.party.push(s))
                    }
                    _ => Ok(()),
                };
                if let Err(e) = parsed {
                    problems.push(format!("{} is not a signature: {e}", path.join("/")));
                }
            }
        }
        Ok(WriteCheck {
            violations: problems,
            signatures,
        })
    }

    /// The inspector group of the assignment as it was at `heads`.
    fn group_at(&self, heads: &[ChangeHash]) -> Result<Vec<super::AssignedInspector>> {
        match self.doc.get_at(ROOT, keys::ASSIGNMENT, heads)? {
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Str(json) => Ok(serde_json::from_str::<Assignment>(json)?.inspectors),
                _ => Err(Error::Malformed("assignment is not a string".into())),
            },
            _ => Err(Error::Malformed("no assignment at the given heads".into())),
        }
    }

    /// The path of map keys from the root to an object.
    fn object_path(&self, obj: &ObjectId) -> Result<Vec<String>> {
        if let ObjectId::Root = obj {
            return Ok(Vec::new());
        }
        let id = self.doc.import_obj(&obj.to_string())?;
        Ok(self
            .doc
            .parents(&id)?
            .path()
            .into_iter()
            .map(|(_, prop)| match prop {
                Prop::Map(name) => name,
                Prop::Seq(i) => format!("[{i}]"),
            })
            .collect())
    }
}

/// Whether an inspector's operation at `path` fits the layout: scalars (or deletions) at
/// answer fields, never objects, never the server's parts.
fn inspector_may_write(path: &[String], action: &OpType) -> bool {
    if !matches!(action, OpType::Put(_) | OpType::Delete) {
        return false;
    }
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match p.as_slice() {
        [keys::ITEMS, _, field] => {
            [keys::CHECKED, keys::FINDING, keys::DISPOSITION].contains(field)
        }
        [keys::ITEMS, _, keys::METHODS, _] => true,
        [keys::FOLLOW_UP, field] => [keys::MEASURE, keys::DEADLINE, keys::DETAIL].contains(field),
        [keys::PARTY, field] => [keys::STATEMENT, keys::SIGNATURE].contains(field),
        [
            keys::RESULTS | keys::NOTES | keys::PHOTOS | keys::SIGNATURES | keys::SUBMISSIONS,
            _,
        ] => true,
        _ => false,
    }
}

/// An actor as messages name it: the server, `inspector N on device D`, or its hex.
fn describe(actor: &ActorId) -> String {
    match actor_identity(actor) {
        ActorIdentity::Server => "the server".into(),
        ActorIdentity::Inspector {
            inspector_id,
            device,
        } => format!("inspector {inspector_id} on device {device}"),
        ActorIdentity::Unknown => format!("actor {actor}"),
    }
}
