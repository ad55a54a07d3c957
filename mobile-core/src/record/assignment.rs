//! The server-written part of a record: what is to be inspected, where, by whom and by when.

use crate::ids::{InspectorId, ItemCode};
use crate::vocab::Method;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Everything the server fixes at the draw for one (task, target) pair.
///
/// Stored in the record document as one JSON string (one automerge operation rather than
/// dozens), because only the server writes it and it is always replaced whole (a redraw).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The plan (抽查计划) this task belongs to.
    pub plan: PlanRef,
    /// The task (抽查任务).
    pub task: TaskRef,
    /// The agency carrying out the inspection (检查实施机关).
    pub agency: String,
    /// The target's dossier as it stood at the draw.
    pub target: TargetSnapshot,
    /// Items to check on this visit; for a joint task, every participating department's items.
    pub items: Vec<AssignedItem>,
    /// The inspector group (at least two).
    pub inspectors: Vec<AssignedInspector>,
    /// First day of the inspection window.
    pub window_start: NaiveDate,
    /// Last day of the inspection window.
    pub window_end: NaiveDate,
    /// Date by which the result must be public (一抽查一公示).
    pub publication_deadline: NaiveDate,
    /// Whether `publication_deadline` is provisional: it runs into a year whose holiday
    /// schedule the server did not have (counted Monday to Friday there). The server writes
    /// the final date into the assignment when the schedule is loaded; it may move.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publication_deadline_provisional: bool,
    /// Set on a 复查 (recheck): the inspection whose order to correct (责令改正) this visit
    /// checks. Absent on records of a draw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recheck_of: Option<RecheckOf>,
}

/// What a 复查 rechecks: the earlier record and the order it gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecheckOf {
    /// The earlier record's id.
    pub record_id: String,
    /// The earlier record's task number.
    pub task_number: String,
    /// The order given (整改要求), as the earlier record wrote it.
    pub detail: Option<String>,
    /// The date the party had to correct by.
    pub deadline: NaiveDate,
}

/// A plan as the record names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRef {
    /// Server id of the plan.
    pub id: String,
    /// Published plan number (抽查计划编号).
    pub number: String,
    /// Plan name (抽查计划名称).
    pub name: String,
}

/// A task as the record names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRef {
    /// Server id of the task.
    pub id: String,
    /// Published task number (抽查任务编号).
    pub number: String,
    /// Task name (抽查任务名称).
    pub name: String,
    /// 定向 (true) or 不定向 (false).
    pub directed: bool,
}

/// The target's dossier (检查对象) frozen at the draw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSnapshot {
    /// Id in the target directory.
    pub id: String,
    /// 统一社会信用代码, when the target has one.
    pub uscc: Option<String>,
    /// Registered name.
    pub name: String,
    /// Registered address (住所 / 经营场所).
    pub address: String,
    /// Legal representative (法定代表人 / 负责人).
    pub legal_representative: Option<String>,
    /// Kind of target (enterprise, social organisation, project, product...).
    pub kind: String,
    /// Industry.
    pub industry: Option<String>,
    /// Region code or name.
    pub region: Option<String>,
    /// Credit-risk class (A to D) when known.
    pub risk_class: Option<String>,
}

/// One item to check, with its legal basis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedItem {
    /// Item code in the item list.
    pub code: ItemCode,
    /// Version of the item list entry.
    pub version: u32,
    /// Item name.
    pub name: String,
    /// Legal basis (法律依据).
    pub legal_basis: String,
    /// What to check (检查内容).
    pub content: String,
    /// Methods the item list foresees.
    pub methods: Vec<Method>,
}

/// One member of the inspector group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedInspector {
    /// Inspector id.
    pub inspector_id: InspectorId,
    /// Name.
    pub name: String,
    /// Law-enforcement certificate number (执法证号).
    pub cert_no: String,
    /// Group leader.
    pub lead: bool,
}

impl Assignment {
    /// The assigned item with this code.
    pub fn item(&self, code: &ItemCode) -> Option<&AssignedItem> {
        self.items.iter().find(|i| &i.code == code)
    }

    /// The assigned inspector with this id.
    pub fn inspector(&self, id: &InspectorId) -> Option<&AssignedInspector> {
        self.inspectors.iter().find(|i| &i.inspector_id == id)
    }

    /// Shape checks the server runs before creating a record: the rules a record relies on.
    pub fn validate(&self) -> Result<(), String> {
        if self.items.is_empty() {
            return Err("an assignment needs at least one item".into());
        }
        let mut codes: Vec<_> = self.items.iter().map(|i| &i.code).collect();
        codes.sort();
        codes.dedup();
        if codes.len() != self.items.len() {
            return Err("item codes repeat".into());
        }
        if let Some(i) = self.items.iter().find(|i| i.legal_basis.trim().is_empty()) {
            return Err(format!("item {} has no legal basis", i.code));
        }
        if let Some(i) = self.items.iter().find(|i| i.code.as_str().is_empty()) {
            return Err(format!("item {:?} has an empty code", i.name));
        }
        let mut ids: Vec<_> = self.inspectors.iter().map(|i| &i.inspector_id).collect();
        ids.sort();
        ids.dedup();
        if ids.len() < 2 || ids.len() != self.inspectors.len() {
            return Err("an inspector group needs at least two distinct inspectors".into());
        }
        if self.window_end < self.window_start {
            return Err("the window ends before it starts".into());
        }
        Ok(())
    }
}
