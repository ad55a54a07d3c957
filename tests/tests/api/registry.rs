//! Items (versioned), targets, CSV import, inspectors and rules.

use reqwest::StatusCode;
use serde_json::json;
use suiji_server::uscc;
use suiji_tests::{TestServer, item_body, seed_registry, target_body};

#[tokio::test]
async fn item_without_legal_basis_is_refused() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    seed_registry(&planner).await;
    let mut body = item_body("SCJG-X-001", "SCJG", "食品安全");
    body["legal_basis"] = json!("  ");
    let (status, err) = planner.post("/api/v1/items", &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "legal_basis");
    body.as_object_mut().unwrap().remove("legal_basis");
    let (status, err) = planner.post("/api/v1/items", &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "legal_basis");
    let (_, items) = planner.get("/api/v1/items").await;
    assert_eq!(items.as_array().unwrap().len(), 2, "nothing was added");
}

#[tokio::test]
async fn item_changes_make_versions_and_old_versions_stay_readable() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    seed_registry(&planner).await;
    let mut v2 = item_body("SCJG-SP-002", "SCJG", "食品安全");
    v2.as_object_mut().unwrap().remove("code");
    v2["legal_basis"] = json!("《中华人民共和国食品安全法》（2021年修正）第一百一十条");
    let (status, updated) = planner.put("/api/v1/items/SCJG-SP-002", &v2).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["version"], 2);
    // Sending the same content again makes no new version.
    let (_, same) = planner.put("/api/v1/items/SCJG-SP-002", &v2).await;
    assert_eq!(same["version"], 2);
    // Nor the same methods in another order (a form lists them in its own order).
    v2["methods"] = json!(["on_site", "documentary"]);
    let (_, v3) = planner.put("/api/v1/items/SCJG-SP-002", &v2).await;
    assert_eq!(v3["version"], 3);
    v2["methods"] = json!(["documentary", "on_site"]);
    let (_, reordered) = planner.put("/api/v1/items/SCJG-SP-002", &v2).await;
    assert_eq!(reordered["version"], 3, "{reordered}");
    let (status, v1) = planner.get("/api/v1/items/SCJG-SP-002/versions/1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v1["legal_basis"],
        "《中华人民共和国食品安全法》第一百一十条"
    );
    assert_eq!(v1["current"], false);
    let (_, all) = planner.get("/api/v1/items/SCJG-SP-002/versions").await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_eq!(
        planner.get("/api/v1/items/SCJG-SP-002/versions/4").await.0,
        StatusCode::NOT_FOUND
    );
    let (_, public) = suiji_tests::Client::anonymous(&server.base)
        .get("/api/v1/public/items")
        .await;
    assert_eq!(
        public[0]["version"], 3,
        "the public list shows the version in force"
    );
}

#[tokio::test]
async fn targets_are_validated_created_and_searched() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let mut bad = target_body(1, "杭州甲餐饮管理有限公司");
    bad["uscc"] = json!("91350100M000100Y44");
    let (status, err) = planner.post("/api/v1/targets", &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "uscc");
    assert!(
        err["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("check character")
    );

    let (status, created) = planner
        .post("/api/v1/targets", &target_body(1, "杭州甲餐饮管理有限公司"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, _) = planner
        .post("/api/v1/targets", &target_body(1, "重复"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let mut d = target_body(2, "杭州乙化工有限公司");
    d["risk_class"] = json!("d");
    d["industry"] = json!("化学原料和化学制品制造业");
    let (status, second) = planner.post("/api/v1/targets", &d).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(second["risk_class"], "D", "risk class is normalised");

    let (_, page) = planner.get("/api/v1/targets?q=化工").await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["name"], "杭州乙化工有限公司");
    let code = created["uscc"].as_str().unwrap();
    let (_, page) = planner
        .get(&format!("/api/v1/targets?q={}", &code[..10]))
        .await;
    assert_eq!(page["items"][0]["id"], created["id"]);
    let (_, page) = planner.get("/api/v1/targets?risk_class=D&per_page=1").await;
    assert_eq!(page["total"], 1);
    let (status, _) = planner.get("/api/v1/targets?per_page=100000").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let mut edit = target_body(1, "杭州甲餐饮管理有限公司");
    edit["flag_abnormal"] = json!(true);
    let (status, edited) = planner
        .put(&format!("/api/v1/targets/{}", created["id"]), &edit)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(edited["flag_abnormal"], true);
}

fn csv_row(serial: u32, name: &str) -> String {
    let code = uscc::generate('9', '1', "330106", serial);
    format!("{code},{name},enterprise,餐饮业,西湖区,文三路{serial}号,张三,存续,B,否,否,0\n")
}

const HEADER: &str = "uscc,name,target_type,industry,region,address,legal_rep,reg_status,risk_class,flag_abnormal,flag_serious,complaints\n";

#[tokio::test]
async fn csv_import_with_bad_rows_commits_all_or_nothing_as_asked() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let mut csv = HEADER.to_owned();
    csv += &csv_row(1, "好一");
    csv += "91350100M000100Y44,坏代码,enterprise,餐饮业,西湖区,地址,李四,存续,B,否,否,0\n";
    csv += &csv_row(3, "好三");
    csv += &csv_row(4, "坏风险").replace(",B,", ",X,");
    csv += &csv_row(5, "坏投诉").replace(",0\n", ",many\n");

    let (status, report) = planner
        .post_bytes(
            "/api/v1/targets/import",
            "text/csv",
            csv.clone().into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
    assert_eq!(report["committed"], false);
    let bad: Vec<(i64, String)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_i64().unwrap(),
                e["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        bad,
        vec![
            (3, "uscc".into()),
            (5, "risk_class".into()),
            (6, "complaints".into())
        ]
    );
    let (_, page) = planner.get("/api/v1/targets").await;
    assert_eq!(page["total"], 0, "all_or_nothing wrote nothing");

    let (status, report) = planner
        .post_bytes(
            "/api/v1/targets/import?mode=valid_rows",
            "text/csv",
            csv.into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["created"], 2);
    assert_eq!(report["errors"].as_array().unwrap().len(), 3);
    let (_, page) = planner.get("/api/v1/targets").await;
    assert_eq!(page["total"], 2);

    // Re-importing a known code updates instead of duplicating.
    let again = format!("{HEADER}{}", csv_row(1, "好一（更名）"));
    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", "text/csv", again.into_bytes())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (report["created"].as_i64(), report["updated"].as_i64()),
        (Some(0), Some(1))
    );
    let (_, page) = planner.get("/api/v1/targets?q=更名").await;
    assert_eq!(page["total"], 1);
}

#[tokio::test]
async fn csv_import_names_rows_as_a_spreadsheet_shows_them() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    // Row 2 has an address over two lines (one row in Excel, two lines in the file); row 3 is
    // blank; row 4 is bad. Excel and WPS show the bad row as row 4, on line 5 of the file.
    let mut csv = HEADER.to_owned();
    csv += &csv_row(1, "好一").replace("文三路1号", "\"文三路1号，\n东门\"");
    csv += "\n";
    csv += &csv_row(3, "坏风险").replace(",B,", ",X,");
    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", "text/csv", csv.into_bytes())
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
    assert_eq!(report["format"], "csv");
    let errors = report["errors"].as_array().unwrap();
    let at: Vec<_> = errors
        .iter()
        .map(|e| (e["row"].as_i64(), e["line"].as_i64(), e["field"].as_str()))
        .collect();
    // The address itself is refused (one line of text), on row 2.
    assert_eq!(
        at,
        vec![
            (Some(2), Some(2), Some("address")),
            (Some(4), Some(5), Some("risk_class"))
        ],
        "{report}"
    );
}

#[tokio::test]
async fn csv_import_reads_gbk() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let text = format!(
        "统一社会信用代码,名称,类型,行业,区域,地址,法定代表人,登记状态,风险等级\n{},杭州味道餐饮有限公司,企业,餐饮业,西湖区,文三路1号,王五,存续,C\n",
        uscc::generate('9', '1', "330106", 99)
    );
    let (gbk, _, _) = encoding_rs::GBK.encode(&text);
    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", "text/csv", gbk.into_owned())
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["encoding"], "gbk");
    let (_, page) = planner.get("/api/v1/targets?q=味道").await;
    assert_eq!(page["items"][0]["name"], "杭州味道餐饮有限公司");
}

#[tokio::test]
async fn hundred_thousand_rows_import_in_one_call() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let mut csv = String::with_capacity(100_000 * 120);
    csv += HEADER;
    for i in 0..100_000 {
        csv += &csv_row(i, &format!("批量企业{i}"));
    }
    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", "text/csv", csv.into_bytes())
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["created"], 100_000);
    let (_, page) = planner.get("/api/v1/targets?per_page=1").await;
    assert_eq!(page["total"], 100_000);
}

#[tokio::test]
async fn inspectors_need_a_certificate_an_inspector_account_and_declare_conflicts() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let admin = server.login("admin").await;
    seed_registry(&planner).await;
    let (_, users) = admin.get("/api/v1/users").await;
    let user_id = |name: &str| {
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == name)
            .unwrap()["id"]
            .clone()
    };
    let mut body = json!({
        "user_id": user_id("inspector"), "name": "李明", "cert_no": "",
        "department": "SCJG", "expertise": ["食品安全"], "region": "西湖区",
    });
    let (status, err) = planner.post("/api/v1/inspectors", &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "cert_no");
    body["cert_no"] = json!("浙SCJG33010020001");
    body["user_id"] = user_id("supervisor");
    let (status, err) = planner.post("/api/v1/inspectors", &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["field"], "user_id");
    body["user_id"] = user_id("inspector");
    let (status, inspector) = planner.post("/api/v1/inspectors", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{inspector}");
    assert_eq!(inspector["active"], true);

    let (_, target) = planner
        .post("/api/v1/targets", &target_body(5, "杭州丙餐饮有限公司"))
        .await;
    let path = format!("/api/v1/inspectors/{}/conflicts", inspector["id"]);
    let conflict = json!({"target_id": target["id"], "reason": "配偶在该单位任职"});
    let (status, with) = planner.post(&path, &conflict).await;
    assert_eq!(status, StatusCode::CREATED, "{with}");
    assert_eq!(with["conflicts"][0]["target_name"], "杭州丙餐饮有限公司");
    assert_eq!(planner.post(&path, &conflict).await.0, StatusCode::CONFLICT);
    let (_, listed) = planner.get("/api/v1/inspectors?expertise=食品安全").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let (_, listed) = planner.get("/api/v1/inspectors?department=YJGL").await;
    assert_eq!(listed.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn rules_are_checked_and_changed() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let (status, mut rules) = planner.get("/api/v1/rules").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rules["group_size"], 2);
    rules.as_object_mut().unwrap().remove("updated_at");
    let mut bad = rules.clone();
    bad["ratios"]["C"] = json!(1.5);
    let (status, err) = planner.put("/api/v1/rules", &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "ratios.C");
    let mut bad = rules.clone();
    bad["group_size"] = json!(1);
    let (status, err) = planner.put("/api/v1/rules", &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "group_size");
    rules["group_size"] = json!(3);
    let (status, saved) = planner.put("/api/v1/rules", &rules).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["group_size"], 3);
}
