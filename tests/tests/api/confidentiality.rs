//! Who sees a drawn list (docs/draw.md): every role — anonymous, admin,
//! planner, supervisor, an inspector of a group and an inspector of none —
//! walked through every API route and console page that shows drawn targets
//! or records, before the list is published, after a record is submitted and
//! after publication. The rule is written once here, as [`Walk::sees`], and
//! each answer is checked against it: status codes, and whether each record's
//! target name and id appear in the body.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use suiji_mobile_core::RecordId;
use suiji_mobile_core::vocab::{FollowUpMeasure, Method as InspectionMethod, ResultCategory};
use suiji_tests::{
    Client, Phone, TestServer, console_session, drawn_task, http, publish_drawn_list,
    sign_and_submit,
};

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Admin,
    Planner,
    Supervisor,
    /// An inspector in the group of the first record.
    Assigned,
    /// An inspector of another department, in no group of the task.
    Unassigned,
}

const EVERYONE: [Who; 6] = [
    Who::Anonymous,
    Who::Admin,
    Who::Planner,
    Who::Supervisor,
    Who::Assigned,
    Who::Unassigned,
];

/// How far the test's rule lets someone see a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum See {
    Nothing,
    /// Its line in the task's lists, not the record.
    Line,
    Whole,
}

/// Where the walk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Drawn, nothing submitted, the list not published.
    Drawn,
    /// The first record submitted, the list still not published.
    Submitted,
    /// The list published, the first record's result published.
    Published,
}

/// One drawn record as the test knows it.
struct Rec {
    id: String,
    name: String,
    target_id: i64,
    group: Vec<i64>,
    /// From which phase it is submitted.
    submitted_from: Option<Phase>,
    /// From which phase its result is public.
    result_from: Option<Phase>,
}

impl Rec {
    fn submitted(&self, phase: Phase) -> bool {
        self.submitted_from.is_some_and(|p| phase >= p)
    }
    fn result_public(&self, phase: Phase) -> bool {
        self.result_from.is_some_and(|p| phase >= p)
    }
    /// The record's id as it appears in JSON.
    fn json_id(&self) -> String {
        format!("\"{}\"", self.id)
    }
}

struct Walk {
    server: TestServer,
    task_id: i64,
    draw_id: i64,
    photo: String,
    records: Vec<Rec>,
    assigned: i64,
    unassigned: i64,
    clients: Vec<(Who, Client)>,
    jars: Vec<(Who, Option<String>)>,
    failures: Vec<String>,
}

impl Walk {
    /// The rule, written once: admins and planners see every record; an
    /// inspector the records of their current group; a supervisor a record
    /// once submitted and every record's line once the list is published;
    /// the public nothing.
    fn sees(&self, who: Who, r: &Rec, phase: Phase) -> See {
        match who {
            Who::Admin | Who::Planner => See::Whole,
            Who::Assigned if r.group.contains(&self.assigned) => See::Whole,
            Who::Unassigned if r.group.contains(&self.unassigned) => See::Whole,
            Who::Supervisor if r.submitted(phase) => See::Whole,
            Who::Supervisor if phase >= Phase::Published => See::Line,
            _ => See::Nothing,
        }
    }

    fn list_public(phase: Phase) -> bool {
        phase >= Phase::Published
    }

    fn client(&self, who: Who) -> &Client {
        &self.clients.iter().find(|(w, _)| *w == who).unwrap().1
    }

    fn jar(&self, who: Who) -> Option<&str> {
        self.jars
            .iter()
            .find(|(w, _)| *w == who)
            .unwrap()
            .1
            .as_deref()
    }

    async fn api(&self, who: Who, method: Method, path: &str) -> (StatusCode, String) {
        let mut req = self.client(who).raw(method.clone(), path);
        if method == Method::POST {
            req = req.json(&json!({}));
        }
        let response = req.send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    async fn page(&self, who: Who, path: &str) -> (StatusCode, String) {
        let mut req = http().get(format!("{}{path}", self.server.base));
        if let Some(jar) = self.jar(who) {
            req = req.header(reqwest::header::COOKIE, jar);
        }
        let response = req.send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    fn fail(&mut self, what: String) {
        self.failures.push(what);
    }

    fn expect_status(&mut self, ctx: &str, got: StatusCode, want: StatusCode, body: &str) {
        if got != want {
            let body: String = body.chars().take(300).collect();
            self.fail(format!("{ctx}: status {got}, expected {want}: {body}"));
        }
    }

    /// Whether `body` shows each record's name (and, for JSON, its id) as
    /// `shown` says.
    fn expect_shown(&mut self, ctx: &str, body: &str, json: bool, shown: impl Fn(usize) -> bool) {
        let mut wrong = Vec::new();
        for (i, r) in self.records.iter().enumerate() {
            let want = shown(i);
            if body.contains(&r.name) != want {
                wrong.push(format!(
                    "name of {} shown: {}, expected {want}",
                    r.id, !want
                ));
            }
            if json && body.contains(&r.json_id()) != want {
                wrong.push(format!("id {} shown: {}, expected {want}", r.id, !want));
            }
        }
        for w in wrong {
            self.fail(format!("{ctx}: {w}"));
        }
    }

    /// The answer of a route closed to `who`: 401 (API) or the login page
    /// (console) for the public, 403 for the logged-in, and nothing drawn in it.
    fn expect_refused(&mut self, ctx: &str, who: Who, console: bool, got: StatusCode, body: &str) {
        let want = match (who, console) {
            (Who::Anonymous, false) => StatusCode::UNAUTHORIZED,
            (Who::Anonymous, true) => StatusCode::SEE_OTHER,
            _ => StatusCode::FORBIDDEN,
        };
        self.expect_status(ctx, got, want, body);
        self.expect_shown(ctx, body, !console, |_| false);
    }

    /// Walks everyone through everything in `phase`.
    async fn check(&mut self, phase: Phase) {
        for who in EVERYONE {
            self.check_api(who, phase).await;
            self.check_console(who, phase).await;
        }
        assert!(
            self.failures.is_empty(),
            "{phase:?}: {} answers break the rule:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }

    async fn check_api(&mut self, who: Who, phase: Phase) {
        use Who::*;
        let staff = [Admin, Planner, Supervisor].contains(&who);
        let reviewer = [Admin, Supervisor].contains(&who);
        let drawer = [Admin, Planner].contains(&who);
        let inspector = [Assigned, Unassigned].contains(&who);
        let sees: Vec<See> = self
            .records
            .iter()
            .map(|r| self.sees(who, r, phase))
            .collect();
        let at = |route: &str| format!("{phase:?} {who:?} GET {route}");

        // The task's records.
        let path = format!("/api/v1/tasks/{}/records", self.task_id);
        let (s, body) = self.api(who, Method::GET, &path).await;
        if staff {
            self.expect_status(&at(&path), s, StatusCode::OK, &body);
            let lines: Vec<bool> = sees.iter().map(|v| *v >= See::Line).collect();
            self.expect_shown(&at(&path), &body, true, |i| lines[i]);
        } else {
            self.expect_refused(&at(&path), who, false, s, &body);
        }

        // Each record, and an id that does not exist: the same answer when hidden.
        let (_, unknown) = self.api(who, Method::GET, "/api/v1/records/r999-999").await;
        for (i, see) in sees.iter().enumerate() {
            let (id, name) = (self.records[i].id.clone(), self.records[i].name.clone());
            let path = format!("/api/v1/records/{id}");
            let (s, body) = self.api(who, Method::GET, &path).await;
            if !reviewer {
                self.expect_refused(&at(&path), who, false, s, &body);
            } else if *see == See::Whole {
                self.expect_status(&at(&path), s, StatusCode::OK, &body);
                if !body.contains(&name) {
                    self.fail(format!("{}: the record lacks its target", at(&path)));
                }
            } else {
                self.expect_status(&at(&path), s, StatusCode::NOT_FOUND, &body);
                if body.replace(&id, "ID") != unknown.replace("r999-999", "ID") {
                    self.fail(format!("{}: {body} differs from {unknown}", at(&path)));
                }
                self.expect_shown(&at(&path), &body, false, |_| false);
            }
            // A decision on a record one may not see is a 404 like an unknown id.
            if who == Supervisor && *see != See::Whole {
                let path = format!("{path}/approve");
                let (s, body) = self.api(who, Method::POST, &path).await;
                self.expect_status(
                    &format!("{phase:?} POST {path}"),
                    s,
                    StatusCode::NOT_FOUND,
                    &body,
                );
            }
        }

        // The review queue: submitted records one may see.
        let path = "/api/v1/review/queue?status=all";
        let (s, body) = self.api(who, Method::GET, path).await;
        if reviewer {
            self.expect_status(&at(path), s, StatusCode::OK, &body);
            let queued: Vec<bool> = self
                .records
                .iter()
                .zip(&sees)
                .map(|(r, v)| *v == See::Whole && r.submitted(phase))
                .collect();
            self.expect_shown(&at(path), &body, true, |i| queued[i]);
        } else {
            self.expect_refused(&at(path), who, false, s, &body);
        }

        // Deadlines: a record's line while its result is not published.
        let path = "/api/v1/deadlines?within_days=365&as_of=2026-11-01";
        let (s, body) = self.api(who, Method::GET, path).await;
        if staff {
            self.expect_status(&at(path), s, StatusCode::OK, &body);
            let due: Vec<bool> = self
                .records
                .iter()
                .zip(&sees)
                .map(|(r, v)| *v >= See::Line && !r.result_public(phase))
                .collect();
            self.expect_shown(&at(path), &body, true, |i| due[i]);
        } else {
            self.expect_refused(&at(path), who, false, s, &body);
        }

        // A target's outcome counts only the records one may see.
        for (i, see) in sees.iter().enumerate() {
            let path = format!("/api/v1/targets/{}/outcome", self.records[i].target_id);
            let (s, body) = self.api(who, Method::GET, &path).await;
            if staff {
                self.expect_status(&at(&path), s, StatusCode::OK, &body);
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let counted: i64 = v["records_per_year"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|y| y["records"].as_i64().unwrap_or(0))
                    .sum();
                let want = i64::from(*see >= See::Line);
                if counted != want {
                    self.fail(format!(
                        "{}: counts {counted} records, expected {want}",
                        at(&path)
                    ));
                }
            } else {
                self.expect_refused(&at(&path), who, false, s, &body);
            }
        }

        // An inspector's own records.
        let path = "/api/v1/my/records";
        let (s, body) = self.api(who, Method::GET, path).await;
        if inspector {
            self.expect_status(&at(path), s, StatusCode::OK, &body);
            let mine: Vec<bool> = sees.iter().map(|v| *v == See::Whole).collect();
            self.expect_shown(&at(path), &body, true, |i| mine[i]);
        } else {
            self.expect_refused(&at(path), who, false, s, &body);
        }

        // The first record's photo.
        let path = format!("/api/v1/blobs/{}", self.photo);
        let (s, _) = self.api(who, Method::GET, &path).await;
        let want = match (who, sees[0]) {
            (Anonymous, _) => StatusCode::UNAUTHORIZED,
            (_, See::Whole) => StatusCode::OK,
            _ => StatusCode::FORBIDDEN,
        };
        self.expect_status(&at(&path), s, want, "");

        // The draw: for those who run it.
        for path in [
            format!("/api/v1/tasks/{}/draw", self.task_id),
            format!("/api/v1/draws/{}", self.draw_id),
        ] {
            let (s, body) = self.api(who, Method::GET, &path).await;
            if drawer {
                self.expect_status(&at(&path), s, StatusCode::OK, &body);
            } else {
                self.expect_refused(&at(&path), who, false, s, &body);
            }
        }

        // Public draw records: the list once published, with its targets.
        let public = Self::list_public(phase);
        let path = "/api/v1/public/draws";
        let (s, body) = self.api(who, Method::GET, path).await;
        self.expect_status(&at(path), s, StatusCode::OK, &body);
        if body.contains("T-SYNC") != public {
            self.fail(format!("{}: lists the draw: {}", at(path), !public));
        }
        let path = format!("/api/v1/public/draws/{}", self.draw_id);
        let (s, body) = self.api(who, Method::GET, &path).await;
        let want = if public {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        self.expect_status(&at(&path), s, want, &body);
        self.expect_shown(&at(&path), &body, false, |_| public);

        // Public results and exports: published results only.
        for path in [
            "/api/v1/public/results?q=T-SYNC".to_owned(),
            format!("/api/v1/public/tasks/{}/results.json", self.task_id),
            format!("/api/v1/public/tasks/{}/results.csv", self.task_id),
        ] {
            let (s, body) = self.api(who, Method::GET, &path).await;
            self.expect_status(&at(&path), s, StatusCode::OK, &body);
            let published: Vec<bool> = self
                .records
                .iter()
                .map(|r| r.result_public(phase))
                .collect();
            self.expect_shown(&at(&path), &body, false, |i| published[i]);
        }

        // The task's dossier holds every record whole: only for those who see them all, and
        // for a supervisor only once the list is public.
        let path = format!("/api/v1/tasks/{}/dossier.zip", self.task_id);
        let (s, body) = self.api(who, Method::GET, &path).await;
        let all_whole = drawer
            || (who == Supervisor
                && Self::list_public(phase)
                && sees.iter().all(|v| *v == See::Whole));
        if all_whole {
            self.expect_status(&at(&path), s, StatusCode::OK, "");
        } else {
            self.expect_refused(&at(&path), who, false, s, &body);
        }

        // Statistics are counts: never a name or a record id.
        for path in [
            "/api/v1/stats?year=2026",
            "/api/v1/stats?year=2026&format=csv",
        ] {
            let (s, body) = self.api(who, Method::GET, path).await;
            if staff {
                self.expect_status(&at(path), s, StatusCode::OK, &body);
                self.expect_shown(&at(path), &body, true, |_| false);
            } else {
                self.expect_refused(&at(path), who, false, s, &body);
            }
        }
    }

    async fn check_console(&mut self, who: Who, phase: Phase) {
        use Who::*;
        let staff = [Admin, Planner, Supervisor].contains(&who);
        let reviewer = [Admin, Supervisor].contains(&who);
        let drawer = [Admin, Planner].contains(&who);
        let sees: Vec<See> = self
            .records
            .iter()
            .map(|r| self.sees(who, r, phase))
            .collect();
        let at = |route: &str| format!("{phase:?} {who:?} page {route}");

        // The task page: lines one may see, links to records one may open.
        let path = format!("/tasks/{}", self.task_id);
        let (s, body) = self.page(who, &path).await;
        if staff {
            self.expect_status(&at(&path), s, StatusCode::OK, &body);
            let lines: Vec<bool> = sees.iter().map(|v| *v >= See::Line).collect();
            self.expect_shown(&at(&path), &body, false, |i| lines[i]);
            for (i, see) in sees.iter().enumerate() {
                let link = format!("href=\"/records/{}\"", self.records[i].id);
                let want = reviewer && *see == See::Whole;
                if body.contains(&link) != want {
                    self.fail(format!(
                        "{}: link to {} shown: {}",
                        at(&path),
                        self.records[i].id,
                        !want
                    ));
                }
            }
        } else {
            self.expect_refused(&at(&path), who, true, s, &body);
        }

        // Each record page.
        let (_, unknown) = self.page(who, "/records/r999-999").await;
        for (i, see) in sees.iter().enumerate() {
            let path = format!("/records/{}", self.records[i].id);
            let (s, body) = self.page(who, &path).await;
            if !reviewer {
                self.expect_refused(&at(&path), who, true, s, &body);
            } else if *see == See::Whole {
                self.expect_status(&at(&path), s, StatusCode::OK, &body);
                let name = self.records[i].name.clone();
                if !body.contains(&name) {
                    self.fail(format!("{}: the page lacks its target", at(&path)));
                }
            } else {
                self.expect_status(&at(&path), s, StatusCode::NOT_FOUND, &body);
                if body != unknown {
                    self.fail(format!(
                        "{}: the 404 page differs from an unknown record's",
                        at(&path)
                    ));
                }
            }
        }

        // The review queue, deadlines and statistics.
        let path = "/review?status=all";
        let (s, body) = self.page(who, path).await;
        if reviewer {
            self.expect_status(&at(path), s, StatusCode::OK, &body);
            let queued: Vec<bool> = self
                .records
                .iter()
                .zip(&sees)
                .map(|(r, v)| *v == See::Whole && r.submitted(phase))
                .collect();
            self.expect_shown(&at(path), &body, false, |i| queued[i]);
        } else {
            self.expect_refused(&at(path), who, true, s, &body);
        }
        let path = "/deadlines?within=365";
        let (s, body) = self.page(who, path).await;
        if staff {
            self.expect_status(&at(path), s, StatusCode::OK, &body);
            let due: Vec<bool> = self
                .records
                .iter()
                .zip(&sees)
                .map(|(r, v)| *v >= See::Line && !r.result_public(phase))
                .collect();
            self.expect_shown(&at(path), &body, false, |i| due[i]);
            for (i, see) in sees.iter().enumerate() {
                let link = format!("href=\"/records/{}\"", self.records[i].id);
                if body.contains(&link) && !(reviewer && *see == See::Whole) {
                    self.fail(format!("{}: links {}", at(path), self.records[i].id));
                }
            }
        } else {
            self.expect_refused(&at(path), who, true, s, &body);
        }
        let path = "/stats";
        let (s, body) = self.page(who, path).await;
        if staff {
            self.expect_status(&at(path), s, StatusCode::OK, &body);
            self.expect_shown(&at(path), &body, false, |_| false);
        } else {
            self.expect_refused(&at(path), who, true, s, &body);
        }

        // The draw pages: for those who run it.
        for path in [
            format!("/tasks/{}/draw", self.task_id),
            format!("/draws/{}", self.draw_id),
            format!("/draws/{}/record.json", self.draw_id),
        ] {
            let (s, body) = self.page(who, &path).await;
            if drawer {
                self.expect_status(&at(&path), s, StatusCode::OK, &body);
            } else {
                self.expect_refused(&at(&path), who, true, s, &body);
            }
        }

        // The first record's photo.
        let path = format!("/photos/{}", self.photo);
        let (s, _) = self.page(who, &path).await;
        let want = match (who, sees[0]) {
            (Anonymous, _) => StatusCode::SEE_OTHER,
            (_, See::Whole) => StatusCode::OK,
            _ => StatusCode::FORBIDDEN,
        };
        self.expect_status(&at(&path), s, want, "");

        // Public pages.
        let public = Self::list_public(phase);
        let (s, body) = self.page(who, "/public/draws").await;
        self.expect_status(&at("/public/draws"), s, StatusCode::OK, &body);
        if body.contains("T-SYNC") != public {
            self.fail(format!(
                "{}: lists the draw: {}",
                at("/public/draws"),
                !public
            ));
        }
        let path = format!("/public/draws/{}", self.draw_id);
        let (s, body) = self.page(who, &path).await;
        let want = if public {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        self.expect_status(&at(&path), s, want, &body);
        let path = "/public/results?q=T-SYNC";
        let (s, body) = self.page(who, path).await;
        self.expect_status(&at(path), s, StatusCode::OK, &body);
        let published: Vec<bool> = self
            .records
            .iter()
            .map(|r| r.result_public(phase))
            .collect();
        self.expect_shown(&at(path), &body, false, |i| published[i]);
        let (s, body) = self.page(who, "/").await;
        self.expect_status(&at("/"), s, StatusCode::OK, &body);
        self.expect_shown(&at("/"), &body, false, |_| false);
    }
}

fn jpeg(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 ^ seed, y as u8, seed]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

#[tokio::test]
async fn every_role_sees_a_drawn_list_as_the_one_rule_says_before_and_after_publication() {
    let server = TestServer::start().await;
    let (agency, summaries) = drawn_task(&server, 3, 2).await;
    assert!(summaries.len() >= 2, "{summaries:?}");
    let task_id = summaries[0].task_id;
    let draw_id = server
        .state
        .db
        .read(move |c| Ok(suiji_server::draw::draws_of_task(c, task_id)?[0].id))
        .await
        .unwrap();
    let first = summaries[0].clone();
    let assigned = first.group[0];
    let unassigned = agency
        .inspectors
        .iter()
        .find(|(id, dept)| dept == "YJGL" && !summaries.iter().any(|r| r.group.contains(id)))
        .expect("an inspector in no group")
        .0;

    // The first record's group fills it in on their phones, with a photo.
    let rid = RecordId::new(first.id.as_str());
    let (ia, ib) = (first.group[0], first.group[1]);
    let mut a = Phone::open(&server, agency.username_of(ia), ia).await;
    let mut b = Phone::open(&server, agency.username_of(ib), ib).await;
    a.sync(&server.base).await.unwrap();
    b.sync(&server.base).await.unwrap();
    let photo = a
        .store
        .edit(&rid, |doc| {
            for item in doc.assignment()?.items {
                doc.set_checked(&item.code, true)?;
                doc.set_methods(&item.code, &[InspectionMethod::OnSite])?;
                doc.set_finding(&item.code, "证照齐全")?;
            }
            doc.set_result_categories(&[ResultCategory::NoProblem])?;
            doc.set_follow_up(Some(FollowUpMeasure::None), None, None)
        })
        .map(|_| ())
        .and_then(|_| {
            let item = a.store.record(&rid)?.assignment()?.items[0].code.clone();
            a.store.import_photo(&rid, &item, &jpeg(5), "门头照片")
        })
        .unwrap();
    a.sync(&server.base).await.unwrap();

    let mut clients = vec![(Who::Anonymous, Client::anonymous(&server.base))];
    let mut jars = vec![(Who::Anonymous, None)];
    for (who, username) in [
        (Who::Admin, "admin"),
        (Who::Planner, "planner"),
        (Who::Supervisor, "supervisor"),
        (Who::Assigned, agency.username_of(assigned)),
        (Who::Unassigned, agency.username_of(unassigned)),
    ] {
        clients.push((who, server.login(username).await));
        jars.push((who, Some(console_session(&server, username).await)));
    }
    let records: Vec<Rec> = summaries
        .iter()
        .enumerate()
        .map(|(i, r)| Rec {
            id: r.id.clone(),
            name: r.target_name.clone(),
            target_id: r.target_id,
            group: r.group.clone(),
            submitted_from: (i == 0).then_some(Phase::Submitted),
            result_from: (i == 0).then_some(Phase::Published),
        })
        .collect();
    let mut walk = Walk {
        server,
        task_id,
        draw_id,
        photo: photo.sha256.as_str().to_owned(),
        records,
        assigned,
        unassigned,
        clients,
        jars,
        failures: Vec::new(),
    };

    walk.check(Phase::Drawn).await;

    sign_and_submit(&walk.server, &mut a, &mut b, &rid).await;
    walk.check(Phase::Submitted).await;

    publish_drawn_list(walk.client(Who::Planner), task_id).await;
    let supervisor = walk.client(Who::Supervisor).clone();
    let (s, body) = supervisor
        .post(&format!("/api/v1/records/{}/approve", first.id), &json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = supervisor
        .post(&format!("/api/v1/records/{}/publish", first.id), &json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    walk.check(Phase::Published).await;
}

#[tokio::test]
async fn results_wait_for_the_drawn_list() {
    let server = TestServer::start().await;
    let (agency, summaries) = drawn_task(&server, 3, 1).await;
    let record = summaries[0].clone();
    let rid = RecordId::new(record.id.as_str());
    let (ia, ib) = (record.group[0], record.group[1]);
    let mut a = Phone::open(&server, agency.username_of(ia), ia).await;
    let mut b = Phone::open(&server, agency.username_of(ib), ib).await;
    a.sync(&server.base).await.unwrap();
    a.store
        .edit(&rid, |doc| {
            for item in doc.assignment()?.items {
                doc.set_checked(&item.code, true)?;
                doc.set_methods(&item.code, &[InspectionMethod::OnSite])?;
                doc.set_finding(&item.code, "证照齐全")?;
            }
            doc.set_result_categories(&[ResultCategory::NoProblem])?;
            doc.set_follow_up(Some(FollowUpMeasure::None), None, None)
        })
        .unwrap();
    sign_and_submit(&server, &mut a, &mut b, &rid).await;
    let supervisor = server.login("supervisor").await;
    let (s, body) = supervisor
        .post(
            &format!("/api/v1/records/{}/approve", record.id),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // Approved, but its result would name a target of a list still confidential.
    let (s, body) = supervisor
        .post(
            &format!("/api/v1/records/{}/publish", record.id),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("drawn list"),
        "{body}"
    );
    let (_, found) = Client::anonymous(&server.base)
        .get("/api/v1/public/results?q=T-SYNC")
        .await;
    assert_eq!(found["total"], 0, "{found}");
    publish_drawn_list(&server.login("planner").await, record.task_id).await;
    let (s, body) = supervisor
        .post(
            &format!("/api/v1/records/{}/publish", record.id),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
}
