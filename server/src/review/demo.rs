//! The demo's walk through the whole chain after the draw: a task of its own
//! is drawn, two simulated phones per record fill and sign it offline and
//! sync through the real sync exchange, a supervisor returns one record,
//! approves and publishes others. A newcomer starting `serve --demo` sees
//! published results (one clean, one with a 责令改正 that is an open follow-up,
//! one 无法联系 that is a 经营异常名录 candidate to decide), a returned record
//! and a record waiting for review.

use crate::store::sql::Tx;
use suiji_mobile_core::record::SubmitOutcome;
use suiji_mobile_core::vocab::{FollowUpMeasure, Method, ResultCategory};

use super::publication::publish_record;
use super::records::{Decision, decide};
use crate::actor::Actor;
use crate::auth::Role;
use crate::calendar::Calendar;
use crate::draw::{self, records};
use crate::error::{Error, Result};
use crate::memory_phone::MemoryPhone;
use crate::plans::{self, Conditions, NewTask, TaskItemInput};
use crate::sync::{SyncMemory, exchange};

/// Syncs `phone` through the real exchange inside the demo's transaction.
fn sync(phone: &mut MemoryPhone, tx: &Tx<'_>, states: &SyncMemory) -> Result<()> {
    let syncer = phone.syncer();
    phone
        .sync(|request| exchange(tx, states, &syncer, request))
        .map(|_rounds| ())
}

fn demo_err(e: suiji_mobile_core::Error) -> Error {
    Error::Internal(format!("demo record: {e}"))
}

/// Fills a record on phone `a` while `b` takes the party's statement, both
/// offline; then they sync, both sign, and `a` submits.
/// What the inspectors record: a finding for every item, the results, and a
/// rectification deadline if they ordered one.
struct Answers<'a>(&'a str, &'a [ResultCategory], Option<&'a str>);

fn inspect(
    tx: &Tx<'_>,
    states: &SyncMemory,
    (a, b): (&mut MemoryPhone, &mut MemoryPhone),
    id: &str,
    Answers(finding, results, rectify_by): Answers<'_>,
) -> Result<()> {
    let doc = a.doc(id)?;
    for item in doc.assignment().map_err(demo_err)?.items {
        doc.set_checked(&item.code, true).map_err(demo_err)?;
        doc.set_methods(&item.code, &[Method::OnSite])
            .map_err(demo_err)?;
        doc.set_finding(&item.code, finding).map_err(demo_err)?;
    }
    doc.set_result_categories(results).map_err(demo_err)?;
    match rectify_by {
        Some(date) => doc.set_follow_up(
            Some(FollowUpMeasure::OrderRectification),
            date.parse().ok(),
            Some("责令限期整改"),
        ),
        None => doc.set_follow_up(Some(FollowUpMeasure::None), None, None),
    }
    .map_err(demo_err)?;
    b.doc(id)?
        .set_party_statement("对检查结果无异议")
        .map_err(demo_err)?;
    sync(a, tx, states)?;
    sync(b, tx, states)?;
    sync(a, tx, states)?;
    for phone in [&mut *a, &mut *b] {
        phone.sign(id)?;
        sync(phone, tx, states)?;
    }
    sync(a, tx, states)?;
    let me = a.inspector_id();
    match a.doc(id)?.submit(&me).map_err(demo_err)? {
        SubmitOutcome::Submitted { .. } => sync(a, tx, states),
        SubmitOutcome::Incomplete { missing } => Err(Error::Internal(format!(
            "demo record {id} incomplete: {missing:?}"
        ))),
    }
}

/// Draws a small task of its own in `plan_id` and walks its records through
/// inspection, review and publication.
pub fn walk(
    tx: &Tx<'_>,
    plan_id: i64,
    seal: &draw::seal::SealKey,
    calendar: &Calendar,
) -> Result<()> {
    let task = plans::insert_task(
        tx,
        "demo",
        plan_id,
        &NewTask {
            number: "HZ-2026-SJ-01-004".into(),
            name: "2026年餐饮服务单位复查抽查".into(),
            directed: true,
            conditions: Conditions {
                industries: vec!["餐饮业".into()],
                reg_statuses: vec!["存续".into()],
                risk_classes: vec!["A".into()],
                ..Conditions::default()
            },
            ratio: None,
            count: Some(5),
            items: vec![TaskItemInput {
                code: "SCJG-SP-002".into(),
                version: None,
                department: None,
            }],
            window_start: "2026-10-08"
                .parse()
                .map_err(|_| Error::Internal("date".into()))?,
            window_end: "2026-11-20"
                .parse()
                .map_err(|_| Error::Internal("date".into()))?,
            department: None,
            joint: false,
        },
    )?;
    let commitment = draw::commit(
        tx,
        "planner",
        task.id,
        &draw::CommitRequest::default(),
        seal,
    )?;
    let ceremony = draw::Ceremony {
        commitment_id: commitment.id,
        entropy: vec![
            draw::algorithm::Entropy {
                observer: "区政协委员 陈静".into(),
                value: "314159".into(),
            },
            draw::algorithm::Entropy {
                observer: "《杭州日报》记者 吴涛".into(),
                value: "西湖".into(),
            },
        ],
        beacon_value: None,
    };
    draw::execute(tx, "planner", task.id, ceremony, seal, calendar)?;
    draw::publish(tx, "planner", task.id)?;
    let list = records::list(tx, Some(task.id), None)?;
    let supervisor: i64 = tx.query_row(
        "SELECT id FROM users WHERE username = 'supervisor'",
        [],
        |r| r.get(0),
    )?;
    let user = Actor {
        user_id: supervisor,
        username: "supervisor".into(),
        roles: vec![Role::Supervisor],
    };
    let states = SyncMemory::default();
    for (n, record) in list.iter().take(5).enumerate() {
        let (Some(&lead), Some(&second)) = (record.group.first(), record.group.get(1)) else {
            continue;
        };
        let mut a = MemoryPhone::new(lead, &format!("de{n:02}0a"))?;
        let mut b = MemoryPhone::new(second, &format!("de{n:02}0b"))?;
        a.register_key(tx)?;
        b.register_key(tx)?;
        sync(&mut a, tx, &states)?;
        sync(&mut b, tx, &states)?;
        let id = record.id.as_str();
        match n {
            0 => {
                inspect(
                    tx,
                    &states,
                    (&mut a, &mut b),
                    id,
                    Answers("证照齐全，后厨卫生良好", &[ResultCategory::NoProblem], None),
                )?;
                decide(tx, &user, id, &Decision::Approve(Some("同意".into())))?;
                publish_record(tx, &user, id)?;
            }
            1 => {
                inspect(
                    tx,
                    &states,
                    (&mut a, &mut b),
                    id,
                    Answers(
                        "部分从业人员健康证明过期",
                        &[ResultCategory::Rectified],
                        Some("2026-12-31"),
                    ),
                )?;
                decide(tx, &user, id, &Decision::Approve(None))?;
                publish_record(tx, &user, id)?;
            }
            2 => {
                inspect(
                    tx,
                    &states,
                    (&mut a, &mut b),
                    id,
                    Answers("正常", &[ResultCategory::NoProblem], None),
                )?;
                decide(
                    tx,
                    &user,
                    id,
                    &Decision::Return("检查情况过于简略，请写明查验的证照和加工场所情况".into()),
                )?;
                // The phones learn of the return at their next sync.
                sync(&mut a, tx, &states)?;
                sync(&mut b, tx, &states)?;
            }
            3 => {
                // Nobody at the registered address: published, it makes the target a
                // 经营异常名录 candidate for a supervisor to decide on.
                inspect(
                    tx,
                    &states,
                    (&mut a, &mut b),
                    id,
                    Answers(
                        "登记住所大门紧闭，两次上门及电话均无法联系",
                        &[ResultCategory::Unreachable],
                        None,
                    ),
                )?;
                decide(tx, &user, id, &Decision::Approve(None))?;
                publish_record(tx, &user, id)?;
            }
            _ => {
                inspect(
                    tx,
                    &states,
                    (&mut a, &mut b),
                    id,
                    Answers(
                        "冷藏设施运行正常，进货查验记录完整",
                        &[ResultCategory::NoProblem],
                        None,
                    ),
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::calendar::Calendar;
    use crate::db::Db;

    #[test]
    fn the_demo_has_published_results_a_returned_record_and_one_to_review() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("d.db")).unwrap();
        crate::demo::seed(&db, &Calendar::official(), &crate::demo::seal_of(&db)).unwrap();
        db.write_blocking(super::super::refresh_stale).unwrap();
        let states: Vec<(String, i64)> = db
            .read_blocking(|c| {
                let mut stmt = c.prepare(
                    "SELECT r.review_state, COUNT(*) FROM records r JOIN tasks t ON t.id = r.task_id
                     WHERE t.number = 'HZ-2026-SJ-01-004' AND r.review_state <> 'open' GROUP BY r.review_state ORDER BY 1",
                )?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .unwrap();
        assert_eq!(
            states,
            [
                ("published".to_owned(), 3),
                ("returned".to_owned(), 1),
                ("submitted".to_owned(), 1)
            ]
        );
        let follow_ups: i64 = db
            .read_blocking(|c| c.query_row("SELECT COUNT(*) FROM follow_ups", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(follow_ups, 1, "the 责令改正 is an open follow-up");
        let pending: i64 = db
            .read_blocking(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM abnormal_candidates WHERE status = 'pending'",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert_eq!(pending, 1, "the 无法联系 result is a candidate to decide");
    }
}
