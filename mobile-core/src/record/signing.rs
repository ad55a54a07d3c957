//! Inspectors' signatures that anyone can check: Ed25519 over what the inspector saw.
//!
//! Each inspector signs with a key held in the phone store they signed on (the private key
//! never leaves it) and registered with the server through their own login. A signature covers
//! [`InspectorSignature::signed_bytes`]: a fixed context line, the record id, the inspector,
//! the document heads they saw, the content digest at those heads
//! ([`RecordDoc::content_digest`]), the time and the handwritten image's hash if one was drawn.
//! The record id binds it to one record, the heads and digest to one state of it.
//!
//! Checking a signature ([`RecordDoc::check_signature`]) needs only the document and the public
//! keys registered for the group's inspectors, so the server at sync, the supervisor's view and
//! the offline `record verify` command all check the same way:
//!
//! 1. the signature carries a key and a signature that parse, and the key is registered for
//!    that inspector;
//! 2. the Ed25519 signature verifies (strictly) over the signed bytes;
//! 3. the signer is in the record's group;
//! 4. the signed heads are all in the document and the content digest at them is the signed
//!    one (a signature cannot claim content it did not see);
//! 5. the content has not changed since: otherwise the signature is [`SignatureStatus::Stale`]
//!    (it still proves what was signed, but not what the record says now).

use super::{InspectorSignature, RecordDoc};
use crate::error::{Error, Result};
use crate::ids::{BlobHash, InspectorId, RecordId};
use automerge::ChangeHash;
use chrono::SecondsFormat;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::Serialize;

/// First line of every signed message: names the scheme and its version.
pub const SIGNATURE_CONTEXT: &str = "suiji record signature v1";

/// An inspector's Ed25519 public key as records and the server name it: 64 lowercase hex digits.
pub fn public_key_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// Parses a public key from its hex form.
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::InvalidInput("a public key is 64 hex digits".into()))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| Error::InvalidInput("not an Ed25519 public key".into()))
}

/// What checking one signature found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum SignatureStatus {
    /// It verifies and covers the record as it is now.
    Valid,
    /// It verifies, but the record's content changed after it was made.
    Stale,
    /// It does not verify; the text says why.
    Invalid(String),
}

impl SignatureStatus {
    /// A stable code: `valid`, `stale` or `invalid`.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureStatus::Valid => "valid",
            SignatureStatus::Stale => "stale",
            SignatureStatus::Invalid(_) => "invalid",
        }
    }
}

/// One signature of a record with what checking it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureCheck {
    /// The signature as stored.
    pub signature: InspectorSignature,
    /// What checking it found.
    #[serde(flatten)]
    pub status: SignatureStatus,
}

impl InspectorSignature {
    /// The bytes the Ed25519 signature covers, for `record`.
    pub fn signed_bytes(&self, record: &RecordId) -> Vec<u8> {
        let mut heads = self.heads.clone();
        heads.sort();
        format!(
            "{SIGNATURE_CONTEXT}\nrecord: {record}\ninspector: {}\nheads: {}\ncontent: {}\nsigned_at: {}\nimage: {}\n",
            self.inspector_id,
            heads.join(","),
            self.content_sha256,
            self.signed_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            self.image_sha256.as_ref().map_or("", BlobHash::as_str),
        )
        .into_bytes()
    }

    /// Checks the Ed25519 signature over [`Self::signed_bytes`] against the key it names.
    /// Says nothing about whether the key belongs to the inspector or what the record holds.
    pub fn verifies(&self, record: &RecordId) -> std::result::Result<(), String> {
        let key = parse_public_key(&self.public_key)
            .map_err(|_| "the signature names no valid public key".to_owned())?;
        let bytes: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "the signature is not 128 hex digits".to_owned())?;
        key.verify_strict(&self.signed_bytes(record), &Signature::from_bytes(&bytes))
            .map_err(|_| "the Ed25519 signature does not verify".to_owned())
    }
}

impl RecordDoc {
    /// Signs the record as `inspector` with `key`, recording the heads and content digest they
    /// saw and, if drawn, the handwritten signature image's blob.
    pub fn sign(
        &mut self,
        inspector: &InspectorId,
        key: &SigningKey,
        image_sha256: Option<BlobHash>,
    ) -> Result<InspectorSignature> {
        self.ensure_editable()?;
        if self.assignment()?.inspector(inspector).is_none() {
            return Err(Error::InvalidInput(format!(
                "inspector {inspector} is not in this record's group"
            )));
        }
        let record = self.record_id()?;
        let mut signature = InspectorSignature {
            inspector_id: inspector.clone(),
            heads: self.heads_hex(),
            content_sha256: self.content_digest()?,
            signed_at: super::now(),
            image_sha256,
            public_key: public_key_hex(&key.verifying_key()),
            signature: String::new(),
        };
        signature.signature = hex::encode(key.sign(&signature.signed_bytes(&record)).to_bytes());
        self.put_signature(&signature)?;
        Ok(signature)
    }

    /// Checks one signature of this record (see the module doc for the steps). `registered`
    /// says whether a public key (hex) is registered for an inspector.
    pub fn check_signature(
        &mut self,
        signature: &InspectorSignature,
        registered: &mut dyn FnMut(&InspectorId, &str) -> bool,
    ) -> Result<SignatureStatus> {
        let current = self.content_digest()?;
        self.check_signature_against(signature, registered, &current)
    }

    /// [`Self::check_signature`] with the record's current content digest already known.
    fn check_signature_against(
        &mut self,
        signature: &InspectorSignature,
        registered: &mut dyn FnMut(&InspectorId, &str) -> bool,
        current: &str,
    ) -> Result<SignatureStatus> {
        let invalid = |why: String| Ok(SignatureStatus::Invalid(why));
        let who = &signature.inspector_id;
        if !registered(who, &signature.public_key) {
            return invalid(format!(
                "the key {} is not registered for inspector {who}",
                short(&signature.public_key)
            ));
        }
        if let Err(why) = signature.verifies(&self.record_id()?) {
            return invalid(why);
        }
        if self.assignment()?.inspector(who).is_none() {
            return invalid(format!("inspector {who} is not in this record's group"));
        }
        let Ok(heads) = signature
            .heads
            .iter()
            .map(|h| h.parse::<ChangeHash>())
            .collect::<std::result::Result<Vec<_>, _>>()
        else {
            return invalid("the signed heads are not change hashes".into());
        };
        if heads.is_empty()
            || !heads
                .iter()
                .all(|h| self.doc.get_change_by_hash(h).is_some())
        {
            return invalid("the signed heads are not in this document".into());
        }
        if self.content_digest_at(&heads)? != signature.content_sha256 {
            return invalid(
                "the signed content digest is not the content at the signed heads".into(),
            );
        }
        Ok(if current == signature.content_sha256 {
            SignatureStatus::Valid
        } else {
            SignatureStatus::Stale
        })
    }

    /// Every inspector signature of the record with what checking it found.
    pub fn check_signatures(
        &mut self,
        registered: &mut dyn FnMut(&InspectorId, &str) -> bool,
    ) -> Result<Vec<SignatureCheck>> {
        let current = self.content_digest()?;
        let mut checks = Vec::new();
        for signature in self.signatures()? {
            let status = self.check_signature_against(&signature, registered, &current)?;
            checks.push(SignatureCheck { signature, status });
        }
        Ok(checks)
    }
}

/// The first digits of a hex key, for messages.
fn short(hex_key: &str) -> String {
    let end = hex_key
        .char_indices()
        .nth(16)
        .map_or(hex_key.len(), |(i, _)| i);
    format!("{}…", &hex_key[..end])
}
