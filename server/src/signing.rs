//! Inspectors' signing keys and the checks of their signatures.
//!
//! A phone registers the Ed25519 public key it signs with for an inspector through that
//! inspector's own session (`POST /api/v1/signing-keys`), so a key is bound to the inspector
//! who logged in and to the device the session was opened for. Keys are kept for good (the
//! table refuses updates and deletions) so that every signature ever accepted can still be
//! checked. The sync endpoint refuses a signature that does not verify against a key
//! registered for its inspector ([`check_new_signatures`]); the record view shows each
//! signature's check; a record downloaded with its signers' keys ([`SignedRecordFile`]) is
//! checked offline by `suiji-server record verify`.

use std::collections::HashSet;

use crate::store::sql::{Conn, OptionalExtension, Tx, params};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use suiji_mobile_core::record::{
    PartySignature, SignatureCheck, WrittenSignatures, parse_public_key,
};
use suiji_mobile_core::{InspectorId, RecordDoc, RecordId};

use crate::AppState;
use crate::audit;
use crate::auth::{AuthUser, Role};
use crate::db::now;
use crate::error::{Error, Result};
use crate::extract::{ApiJson, ApiPath};

/// The `format` of a downloaded signed record.
pub const SIGNED_RECORD_FORMAT: &str = "suiji-signed-record/1";

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/signing-keys", post(register))
        .route("/api/v1/records/{id}/signed-copy", get(signed_copy))
}

/// A registered signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyEntry {
    /// The inspector it signs for, as record documents name them.
    pub inspector_id: InspectorId,
    /// The Ed25519 public key, hex.
    pub public_key: String,
    /// The device (hex id) that holds the private key.
    pub device_id: String,
    /// When it was registered.
    pub registered_at: String,
}

/// Registers `public_key` for `inspector` on `device_id`, under `session` (the inspector's own;
/// `None` only for the demo's seeding). Registering the same key again for the same
/// inspector changes nothing; a key registered for someone else is [`Error::Conflict`].
/// Returns the entry and whether it is new.
pub fn register_key(
    tx: &Tx<'_>,
    inspector: i64,
    device_id: &str,
    session: Option<i64>,
    public_key: &str,
) -> Result<(SigningKeyEntry, bool)> {
    parse_public_key(public_key).map_err(|e| Error::invalid("public_key", e.to_string()))?;
    let existing: Option<(i64, String, String)> = tx
        .prepare_cached(
            "SELECT inspector_id, device_id, registered_at FROM signing_keys WHERE public_key = ?1",
        )?
        .query_row([public_key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    if let Some((owner, device, registered_at)) = existing {
        if owner != inspector || device != device_id {
            return Err(Error::Conflict(
                "this public key is registered for another inspector or device".into(),
            ));
        }
        let entry = SigningKeyEntry {
            inspector_id: InspectorId::new(inspector.to_string()),
            public_key: public_key.to_owned(),
            device_id: device,
            registered_at,
        };
        return Ok((entry, false));
    }
    let registered_at = now();
    tx.prepare_cached(
        "INSERT INTO signing_keys (inspector_id, public_key, device_id, session_id, registered_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        inspector,
        public_key,
        device_id,
        session,
        registered_at
    ])?;
    Ok((
        SigningKeyEntry {
            inspector_id: InspectorId::new(inspector.to_string()),
            public_key: public_key.to_owned(),
            device_id: device_id.to_owned(),
            registered_at,
        },
        true,
    ))
}

/// Every key registered for the inspectors of a record's group.
pub fn keys_of(conn: &Conn, inspectors: &[InspectorId]) -> Result<Vec<SigningKeyEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT inspector_id, public_key, device_id, registered_at FROM signing_keys
         WHERE inspector_id = ?1 ORDER BY id",
    )?;
    let mut keys = Vec::new();
    for inspector in inspectors {
        let Ok(id) = inspector.as_str().parse::<i64>() else {
            continue;
        };
        for entry in stmt.query_map([id], |r| {
            Ok(SigningKeyEntry {
                inspector_id: InspectorId::new(r.get::<_, i64>(0)?.to_string()),
                public_key: r.get(1)?,
                device_id: r.get(2)?,
                registered_at: r.get(3)?,
            })
        })? {
            keys.push(entry?);
        }
    }
    Ok(keys)
}

/// A lookup of registered keys for [`RecordDoc::check_signature`].
pub fn registry_of(keys: &[SigningKeyEntry]) -> impl FnMut(&InspectorId, &str) -> bool + use<> {
    let known: HashSet<(String, String)> = keys
        .iter()
        .map(|k| (k.inspector_id.0.clone(), k.public_key.clone()))
        .collect();
    move |inspector, key| known.contains(&(inspector.0.clone(), key.to_owned()))
}

/// Checks every signature a phone's changes wrote into `doc` (`written`, from
/// `RecordDoc::check_writes`: each value written, not only the one a merge shows): each inspector's must verify against a key
/// registered for its inspector, over heads in the document and the content at them, and the
/// party's, when signed, must carry its handwritten image. Returns what fails; empty when all
/// hold.
pub fn check_new_signatures(
    conn: &Conn,
    doc: &mut RecordDoc,
    written: &WrittenSignatures,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for party in &written.party {
        if let PartySignature::Signed {
            image_sha256: None, ..
        } = party
        {
            problems.push("the party's signature carries no handwritten image".to_owned());
        }
    }
    let written = &written.inspectors;
    if written.is_empty() {
        return Ok(problems);
    }
    let inspectors: Vec<InspectorId> = written.iter().map(|s| s.inspector_id.clone()).collect();
    let mut registered = registry_of(&keys_of(conn, &inspectors)?);
    for signature in written {
        let status = doc
            .check_signature(signature, &mut registered)
            .map_err(|e| Error::Internal(format!("checking a signature: {e}")))?;
        if let suiji_mobile_core::record::SignatureStatus::Invalid(why) = status {
            problems.push(format!(
                "the signature of inspector {}: {why}",
                signature.inspector_id
            ));
        }
    }
    Ok(problems)
}

/// Every signature of a record with its check against the keys registered now.
pub fn record_signatures(conn: &Conn, doc: &mut RecordDoc) -> Result<Vec<SignatureCheck>> {
    let err = |e: suiji_mobile_core::Error| Error::Internal(format!("record signatures: {e}"));
    let group: Vec<InspectorId> = doc
        .assignment()
        .map_err(err)?
        .inspectors
        .into_iter()
        .map(|i| i.inspector_id)
        .collect();
    let mut registered = registry_of(&keys_of(conn, &group)?);
    doc.check_signatures(&mut registered).map_err(err)
}

/// A record as downloaded for offline checking: its automerge document and the public keys
/// registered for its group's inspectors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedRecordFile {
    /// Always [`SIGNED_RECORD_FORMAT`].
    pub format: String,
    /// The record.
    pub record_id: RecordId,
    /// The automerge document, saved, in standard base64.
    pub document: String,
    /// Keys registered for the group's inspectors when it was downloaded.
    pub signing_keys: Vec<SigningKeyEntry>,
    /// When it was downloaded.
    pub exported_at: String,
}

/// What `record verify` found wrong with a downloaded record.
#[derive(Debug, thiserror::Error)]
pub enum VerifyFailure {
    /// The file is not a signed record this build reads.
    #[error("not a signed record file: {0}")]
    NotARecord(String),
    /// The record carries no inspector signature at all.
    #[error("the record carries no inspector signature")]
    Unsigned,
    /// A signature fails.
    #[error("the signature of inspector {inspector} fails: {reason}")]
    Signature {
        /// Whose.
        inspector: InspectorId,
        /// Why.
        reason: String,
    },
}

impl SignedRecordFile {
    /// Checks the file offline: the document loads and is the named record, and every
    /// inspector signature verifies against the file's keys and covers the record as it is.
    /// Returns the checks, or the first thing that fails.
    pub fn verify(&self) -> std::result::Result<Vec<SignatureCheck>, VerifyFailure> {
        use suiji_mobile_core::record::SignatureStatus;
        let not = |why: String| VerifyFailure::NotARecord(why);
        if self.format != SIGNED_RECORD_FORMAT {
            return Err(not(format!("format {:?}", self.format)));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.document)
            .map_err(|e| not(format!("document is not base64: {e}")))?;
        let mut doc = RecordDoc::load(&bytes).map_err(|e| not(e.to_string()))?;
        match doc.record_id() {
            Ok(id) if id == self.record_id => {}
            Ok(id) => return Err(not(format!("the document is record {id}"))),
            Err(e) => return Err(not(e.to_string())),
        }
        let mut registered = registry_of(&self.signing_keys);
        let checks = doc
            .check_signatures(&mut registered)
            .map_err(|e| not(e.to_string()))?;
        if checks.is_empty() {
            return Err(VerifyFailure::Unsigned);
        }
        for check in &checks {
            let reason = match &check.status {
                SignatureStatus::Valid => continue,
                SignatureStatus::Stale => {
                    "the record's content changed after it was signed".to_owned()
                }
                SignatureStatus::Invalid(why) => why.clone(),
            };
            return Err(VerifyFailure::Signature {
                inspector: check.signature.inspector_id.clone(),
                reason,
            });
        }
        Ok(checks)
    }
}

/// Record `id` as a [`SignedRecordFile`]: its document now and the keys registered for its
/// group. Callers check who may see it.
pub fn signed_copy_of(conn: &Conn, id: &str) -> Result<SignedRecordFile> {
    let mut doc = crate::draw::records::load_document(conn, id)?;
    let group: Vec<InspectorId> = doc
        .assignment()
        .map_err(|e| Error::Internal(format!("record {id}: {e}")))?
        .inspectors
        .into_iter()
        .map(|i| i.inspector_id)
        .collect();
    Ok(SignedRecordFile {
        format: SIGNED_RECORD_FORMAT.to_owned(),
        record_id: RecordId::new(id),
        document: base64::engine::general_purpose::STANDARD.encode(doc.save()),
        signing_keys: keys_of(conn, &group)?,
        exported_at: now(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    public_key: String,
}

/// `POST /api/v1/signing-keys`: the caller registers a key for themself on their session's
/// device.
async fn register(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, Json<SigningKeyEntry>)> {
    user.require(&[Role::Inspector])?;
    let Some(device_id) = user.device_id.clone() else {
        return Err(Error::Forbidden(
            "a signing key is registered from a phone: log in there with its device_id".into(),
        ));
    };
    let (entry, created) = state
        .db
        .write(move |tx| {
            let inspector = crate::sync::inspector_of(tx, user.user_id)?;
            let (entry, created) = register_key(
                tx,
                inspector,
                &device_id,
                Some(user.session_id),
                &body.public_key,
            )?;
            if created {
                audit::append(
                    tx,
                    &user.username,
                    "signing_key.register",
                    &format!("inspector:{inspector}"),
                    None,
                    Some(&json!(entry)),
                )?;
            }
            Ok((entry, created))
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(entry)))
}

/// `GET /api/v1/records/{id}/signed-copy`: the record's document with its group's keys, for
/// `suiji-server record verify`. For whoever may see the whole record (`visibility`); 404
/// for anyone else, as for an unknown id.
async fn signed_copy(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SignedRecordFile>> {
    let file = state
        .db
        .read(move |conn| {
            crate::visibility::ensure_full(conn, &user, &id)?;
            signed_copy_of(conn, &id)
        })
        .await?;
    Ok(Json(file))
}
