//! Signing keys and signatures on the phone: one Ed25519 key per inspector who signs here.
//!
//! The store's own inspector gets a key the first time one is needed; their login registers it
//! with the server (`sync::client::log_in`), and until then the server refuses signatures made
//! with it. A partner signing on this phone logs in here with their own password first
//! (`sync::client::add_signer`), which creates and registers a key for them bound to this
//! device; without that they cannot sign here. Private keys never leave the database file:
//! nothing returns them.

use super::Store;
use super::blobs::{self, BlobRole};
use super::outbox::{self, OutboxItem};
use crate::error::{Error, Result};
use crate::ids::{BlobHash, InspectorId, RecordId};
use crate::record::{InspectorSignature, PartySignature, SigningKey, public_key_hex};
use chrono::Utc;
use rusqlite::{OptionalExtension, params};

/// Largest handwritten signature image taken, in bytes.
pub const MAX_SIGNATURE_IMAGE: usize = 1024 * 1024;
/// Largest width or height of a handwritten signature image, in pixels.
pub const MAX_SIGNATURE_PIXELS: u32 = 4096;

/// An inspector who can sign on this phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The inspector.
    pub inspector_id: InspectorId,
    /// Their public key (hex).
    pub public_key: String,
    /// Whether the server took the key under their login.
    pub registered: bool,
}

impl Store {
    /// The public key (hex) this phone signs with for `inspector`, creating the key if this is
    /// the store's own inspector or a partner about to register one (`sync::client`).
    pub fn signing_public_key(&self, inspector: &InspectorId) -> Result<String> {
        Ok(public_key_hex(
            &self.signing_key_or_new(inspector)?.verifying_key(),
        ))
    }

    /// Notes that the server registered `public_key` for `inspector` on this device.
    pub fn mark_signer_registered(&self, inspector: &InspectorId, public_key: &str) -> Result<()> {
        let w = self.lock_writer();
        let n = w.conn.execute(
            "UPDATE signing_keys SET registered_at = ?3 WHERE inspector_id = ?1 AND public_key = ?2",
            params![inspector.as_str(), public_key, Utc::now().to_rfc3339()],
        )?;
        if n == 0 {
            return Err(Error::NotFound(format!(
                "no signing key {public_key} for inspector {inspector} on this phone"
            )));
        }
        Ok(())
    }

    /// The inspectors who can sign on this phone, the store's own first.
    pub fn signers(&self) -> Result<Vec<Signer>> {
        let conn = self.lock_reader();
        let mut stmt = conn.prepare_cached(
            "SELECT inspector_id, public_key, registered_at IS NOT NULL FROM signing_keys
             ORDER BY inspector_id <> ?1, inspector_id",
        )?;
        let rows = stmt.query_map([self.inspector_id().as_str()], |r| {
            Ok(Signer {
                inspector_id: InspectorId::new(r.get::<_, String>(0)?),
                public_key: r.get(1)?,
                registered: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Signs a record as `signer` with their key on this phone, with their handwritten
    /// signature image (PNG from the signature pad) if one was drawn; the image is kept as a
    /// blob and queued for upload. The store's own inspector can always sign; anyone else
    /// only after logging in here ([`Error::SignerNotLoggedIn`]).
    pub fn sign(
        &self,
        id: &RecordId,
        signer: &InspectorId,
        image_png: Option<&[u8]>,
    ) -> Result<InspectorSignature> {
        let key = if signer == self.inspector_id() {
            self.signing_key_or_new(signer)?
        } else {
            match self.signing_key(signer)? {
                Some((key, true)) => key,
                _ => {
                    return Err(Error::SignerNotLoggedIn {
                        inspector: signer.0.clone(),
                    });
                }
            }
        };
        let image = image_png.map(signature_image).transpose()?;
        let hash = image.as_ref().map(|(hash, _)| hash.clone());
        let blobs = &self.blobs;
        self.edit_with(
            id,
            |doc| {
                doc.ensure_editable()?;
                if let Some((hash, bytes)) = &image {
                    blobs.put(hash, bytes)?;
                }
                doc.sign(signer, &key, hash.clone())
            },
            |tx, _| queue_image(tx, image.as_ref()),
        )
    }

    /// Records the party's handwritten signature (PNG from the signature pad), kept as a blob
    /// and queued for upload.
    pub fn party_sign(
        &self,
        id: &RecordId,
        name: &str,
        role: &str,
        image_png: &[u8],
    ) -> Result<PartySignature> {
        let image = signature_image(image_png)?;
        let blobs = &self.blobs;
        self.edit_with(
            id,
            |doc| {
                doc.ensure_editable()?;
                blobs.put(&image.0, &image.1)?;
                doc.party_sign(name, role, Some(image.0.clone()))
            },
            |tx, _| queue_image(tx, Some(&image)),
        )
    }

    /// The key of `inspector` and whether it is registered, if this phone holds one.
    fn signing_key(&self, inspector: &InspectorId) -> Result<Option<(SigningKey, bool)>> {
        let conn = self.lock_reader();
        let row: Option<(Vec<u8>, bool)> = conn
            .prepare_cached(
                "SELECT seed, registered_at IS NOT NULL FROM signing_keys WHERE inspector_id = ?1",
            )?
            .query_row([inspector.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        row.map(|(seed, registered)| {
            let seed: [u8; 32] = seed
                .try_into()
                .map_err(|_| Error::Malformed("a signing key seed is not 32 bytes".into()))?;
            Ok((SigningKey::from_bytes(&seed), registered))
        })
        .transpose()
    }

    fn signing_key_or_new(&self, inspector: &InspectorId) -> Result<SigningKey> {
        if let Some((key, _)) = self.signing_key(inspector)? {
            return Ok(key);
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::Random(e.to_string()))?;
        let key = SigningKey::from_bytes(&seed);
        let w = self.lock_writer();
        // Another thread may have created one meanwhile: the first key stays.
        w.conn.execute(
            "INSERT OR IGNORE INTO signing_keys (inspector_id, seed, public_key, created_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                inspector.as_str(),
                &seed[..],
                public_key_hex(&key.verifying_key()),
                Utc::now().to_rfc3339()
            ],
        )?;
        drop(w);
        match self.signing_key(inspector)? {
            Some((key, _)) => Ok(key),
            None => Err(Error::NotFound(format!("signing key of {inspector}"))),
        }
    }
}

/// Checks a handwritten signature image: a PNG that decodes, within the size limits. Returns
/// its hash and bytes.
fn signature_image(bytes: &[u8]) -> Result<(BlobHash, Vec<u8>)> {
    if bytes.len() > MAX_SIGNATURE_IMAGE {
        return Err(Error::InvalidInput(format!(
            "a signature image is at most {MAX_SIGNATURE_IMAGE} bytes, not {}",
            bytes.len()
        )));
    }
    if image::guess_format(bytes).ok() != Some(image::ImageFormat::Png) {
        return Err(Error::UnsupportedImage(
            "a handwritten signature is a PNG image".into(),
        ));
    }
    let decoder =
        image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Png);
    let (width, height) = decoder.into_dimensions().map_err(Error::BadImage)?;
    if width == 0 || height == 0 || width > MAX_SIGNATURE_PIXELS || height > MAX_SIGNATURE_PIXELS {
        return Err(Error::InvalidInput(format!(
            "a signature image is at most {MAX_SIGNATURE_PIXELS} pixels a side, not {width}x{height}"
        )));
    }
    image::load_from_memory_with_format(bytes, image::ImageFormat::Png).map_err(Error::BadImage)?;
    Ok((BlobHash::of(bytes), bytes.to_vec()))
}

fn queue_image(tx: &rusqlite::Transaction<'_>, image: Option<&(BlobHash, Vec<u8>)>) -> Result<()> {
    if let Some((hash, bytes)) = image {
        blobs::record_blob(
            tx,
            hash,
            bytes.len() as u64,
            "image/png",
            BlobRole::Original,
        )?;
        outbox::enqueue(tx, OutboxItem::Blob(hash.clone()))?;
    }
    Ok(())
}
