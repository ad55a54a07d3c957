//! Concurrent different answers to one question, kept by automerge and listed for inspectors.

use super::{RecordDoc, actor_inspector, actor_label, keys};
use crate::error::Result;
use crate::ids::{InspectorId, ItemCode};
use automerge::{ObjId, ReadDoc, ScalarValue, Value};
use serde::Serialize;

/// One field with competing values after a merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// Where, as a path of the record layout (`items/A01/finding`, `results/rectified`...).
    pub field: String,
    /// The item concerned, for per-item fields.
    pub item: Option<ItemCode>,
    /// The competing values, each with who wrote it.
    pub values: Vec<ConflictValue>,
}

/// One of the competing values of a [`Conflict`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConflictValue {
    /// The value as text (JSON for structured values).
    pub value: String,
    /// Who wrote it: the inspector id, `server`, or the actor in hex.
    pub actor: String,
    /// The inspector who wrote it, when an inspector did.
    pub inspector_id: Option<InspectorId>,
}

impl RecordDoc {
    /// Every field where concurrent edits left different values. Setting the field again
    /// (through the usual setter) resolves its conflict.
    pub fn conflicts(&self) -> Result<Vec<Conflict>> {
        let mut out = Vec::new();
        let items = self.root_map(keys::ITEMS)?;
        for code in self.doc.keys(&items).collect::<Vec<_>>() {
            let item = self.map_at(&items, &code)?;
            let item_code = Some(ItemCode::new(code.clone()));
            for key in [keys::CHECKED, keys::FINDING, keys::DISPOSITION] {
                let field = format!("items/{code}/{key}");
                self.scan(&item, key, field, &item_code, &mut out)?;
            }
            let methods = self.map_at(&item, keys::METHODS)?;
            for m in self.doc.keys(&methods).collect::<Vec<_>>() {
                let field = format!("items/{code}/methods/{m}");
                self.scan(&methods, &m, field, &item_code, &mut out)?;
            }
        }
        for (map, fixed) in [
            (keys::RESULTS, None),
            (
                keys::FOLLOW_UP,
                Some(&[keys::MEASURE, keys::DEADLINE, keys::DETAIL][..]),
            ),
            (keys::PARTY, Some(&[keys::STATEMENT, keys::SIGNATURE][..])),
            (keys::NOTES, None),
            (keys::PHOTOS, None),
            (keys::SIGNATURES, None),
        ] {
            let obj = self.root_map(map)?;
            let names: Vec<String> = match fixed {
                Some(names) => names.iter().map(|s| s.to_string()).collect(),
                None => self.doc.keys(&obj).collect(),
            };
            for key in names {
                let field = format!("{map}/{key}");
                self.scan(&obj, &key, field, &None, &mut out)?;
            }
        }
        Ok(out)
    }

    fn scan(
        &self,
        obj: &ObjId,
        key: &str,
        field: String,
        item: &Option<ItemCode>,
        out: &mut Vec<Conflict>,
    ) -> Result<()> {
        let all = self.doc.get_all(obj, key)?;
        if all.len() < 2 {
            return Ok(());
        }
        let values: Vec<ConflictValue> = all
            .iter()
            .map(|(value, id)| {
                let (actor, inspector_id) = match id {
                    ObjId::Id(_, actor, _) => (actor_label(actor), actor_inspector(actor)),
                    ObjId::Root => ("root".to_owned(), None),
                };
                ConflictValue {
                    value: render(value),
                    actor,
                    inspector_id,
                }
            })
            .collect();
        let first = &values[0].value;
        if values.iter().all(|v| &v.value == first) {
            // Two people gave the same answer: nothing to settle.
            return Ok(());
        }
        out.push(Conflict {
            field,
            item: item.clone(),
            values,
        });
        Ok(())
    }
}

fn render(value: &Value<'_>) -> String {
    match value {
        Value::Object(t) => format!("<{t:?}>"),
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(text) => text.to_string(),
            ScalarValue::Boolean(b) => b.to_string(),
            ScalarValue::Uint(n) => n.to_string(),
            ScalarValue::Int(n) => n.to_string(),
            ScalarValue::F64(n) => n.to_string(),
            ScalarValue::Null => "null".into(),
            other => format!("{other:?}"),
        },
    }
}
