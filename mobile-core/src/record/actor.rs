//! Who wrote a change: actor ids that say which inspector (or the server) they belong to.
//!
//! An automerge actor id is opaque bytes. suiji fills them with UTF-8 text so that the server
//! can tell, for every incoming change, whose it is:
//!
//! - the server: the fixed bytes `suiji-server`;
//! - a phone: `i<inspector_id>.<device>` where `<device>` is lowercase hex of random bytes chosen
//!   once per store (so two phones of one inspector never share an actor, which automerge
//!   requires). The inspector id is everything between the leading `i` and the last `.`.

use crate::ids::InspectorId;
use automerge::ActorId;

/// The bytes of the server's actor id.
pub const SERVER_ACTOR: &[u8] = b"suiji-server";

/// The server's fixed actor id.
pub fn server_actor() -> ActorId {
    ActorId::from(SERVER_ACTOR)
}

/// The actor id of an inspector's device. `device` is the store's random device id.
pub fn inspector_actor(inspector: &InspectorId, device: &[u8]) -> ActorId {
    ActorId::from(format!("i{}.{}", inspector, hex::encode(device)).into_bytes())
}

/// Whose an actor id is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorIdentity {
    /// The server.
    Server,
    /// An inspector's device.
    Inspector {
        /// The inspector.
        inspector_id: InspectorId,
        /// Hex device id.
        device: String,
    },
    /// Not an actor suiji hands out; the server refuses changes by such actors.
    Unknown,
}

/// Reads who an actor id belongs to.
pub fn actor_identity(actor: &ActorId) -> ActorIdentity {
    let bytes = actor.to_bytes();
    if bytes == SERVER_ACTOR {
        return ActorIdentity::Server;
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return ActorIdentity::Unknown;
    };
    let Some(rest) = text.strip_prefix('i') else {
        return ActorIdentity::Unknown;
    };
    match rest.rsplit_once('.') {
        Some((id, device))
            if !id.is_empty()
                && !device.is_empty()
                && device
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            ActorIdentity::Inspector {
                inspector_id: InspectorId::new(id),
                device: device.to_owned(),
            }
        }
        _ => ActorIdentity::Unknown,
    }
}

/// The inspector an actor id belongs to, if it is an inspector's.
pub fn actor_inspector(actor: &ActorId) -> Option<InspectorId> {
    match actor_identity(actor) {
        ActorIdentity::Inspector { inspector_id, .. } => Some(inspector_id),
        _ => None,
    }
}

/// A short printable name of an actor for conflict lists: `server`, the inspector id, or hex.
pub fn actor_label(actor: &ActorId) -> String {
    match actor_identity(actor) {
        ActorIdentity::Server => "server".into(),
        ActorIdentity::Inspector { inspector_id, .. } => inspector_id.0,
        ActorIdentity::Unknown => actor.to_hex_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspector_actor_parses_back_to_its_inspector_even_with_dots_in_the_id() {
        let id = InspectorId::new("insp.0042");
        let actor = inspector_actor(&id, &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(actor.to_bytes(), b"iinsp.0042.deadbeef");
        assert_eq!(
            actor_identity(&actor),
            ActorIdentity::Inspector {
                inspector_id: id.clone(),
                device: "deadbeef".into()
            }
        );
        assert_eq!(actor_inspector(&actor), Some(id));
    }

    #[test]
    fn server_and_foreign_actors_are_not_inspectors() {
        assert_eq!(actor_identity(&server_actor()), ActorIdentity::Server);
        assert_eq!(actor_inspector(&server_actor()), None);
        assert_eq!(actor_identity(&ActorId::random()), ActorIdentity::Unknown);
        assert_eq!(
            actor_identity(&ActorId::from(b"ix.".as_slice())),
            ActorIdentity::Unknown
        );
        assert_eq!(
            actor_identity(&ActorId::from(b"i.abcd".as_slice())),
            ActorIdentity::Unknown
        );
    }
}
