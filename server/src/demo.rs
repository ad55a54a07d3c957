//! Demo data for `serve --demo`: a realistic agency (departments, inspection
//! items with legal bases, 10,000 targets with valid 统一社会信用代码, 60
//! inspectors with 执法证号 and a few declared conflicts, a published plan)
//! and the demo accounts, all with the password `demo`.
//!
//! Generation is deterministic (a fixed ChaCha seed), so every demo directory
//! holds the same agency.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::accounts;
use crate::auth::{self, Role};
use crate::calendar::Calendar;
use crate::db::{Db, now};
use crate::draw::{self, algorithm::Entropy};
use crate::error::Result;
use crate::plans::{self, Conditions, NewPlan, NewTask, TaskItemInput};
use crate::registry::departments::{self, Department};
use crate::registry::inspectors::{self, InspectorInput};
use crate::registry::items::{self, ItemClass, ItemInput, NewItem};
use crate::registry::targets::{self, TargetInput};
use crate::uscc;

/// The password of every demo account.
pub const DEMO_PASSWORD: &str = "demo";
/// Number of demo inspectors (`inspector1` … `inspector60`).
pub const DEMO_INSPECTORS: usize = 60;
/// Number of demo targets.
pub const DEMO_TARGETS: usize = 10_000;
const ACTOR: &str = "demo";

/// What seeding produced.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Whether the directory was empty and has been filled.
    pub seeded: bool,
    /// Departments created.
    pub departments: usize,
    /// Items created.
    pub items: usize,
    /// Targets created.
    pub targets: usize,
    /// Inspectors created.
    pub inspectors: usize,
    /// Draws made and published.
    pub published_draws: usize,
}

/// The demo accounts and their roles, for printing at start.
pub fn accounts() -> Vec<(String, &'static str)> {
    let mut list = vec![
        ("admin".to_owned(), "admin"),
        ("planner".to_owned(), "planner"),
        ("supervisor".to_owned(), "supervisor"),
    ];
    list.extend((1..=DEMO_INSPECTORS).map(|i| (format!("inspector{i}"), "inspector")));
    list
}

const DEPARTMENTS: &[(&str, &str)] = &[
    ("SCJG", "市场监督管理局"),
    ("STHJ", "生态环境局"),
    ("YJGL", "应急管理局"),
    ("WSJK", "卫生健康委员会"),
    ("ZJ", "住房和城乡建设局"),
    ("JTYS", "交通运输局"),
];

/// (code, department, name, legal basis, target type, methods, content, class, ratio, qualification)
type ItemSpec = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
    ItemClass,
    f64,
    &'static str,
);

const ITEMS: &[ItemSpec] = &[
    (
        "SCJG-GS-001",
        "SCJG",
        "企业公示信息的检查",
        "《企业信息公示暂行条例》第十四条、第十五条",
        "enterprise",
        &["documentary", "on_site", "online_monitoring"],
        "年度报告、即时信息公示的真实性",
        ItemClass::General,
        0.03,
        "企业信息公示",
    ),
    (
        "SCJG-SP-001",
        "SCJG",
        "食品生产者生产活动的检查",
        "《中华人民共和国食品安全法》第一百一十条",
        "enterprise",
        &["on_site", "testing"],
        "生产环境、进货查验、出厂检验记录",
        ItemClass::Key,
        0.10,
        "食品安全",
    ),
    (
        "SCJG-SP-002",
        "SCJG",
        "餐饮服务提供者经营活动的检查",
        "《中华人民共和国食品安全法》第一百一十条；《餐饮服务食品安全操作规范》",
        "enterprise",
        &["on_site"],
        "许可证、从业人员健康证明、加工制作过程",
        ItemClass::Key,
        0.10,
        "食品安全",
    ),
    (
        "SCJG-TZ-001",
        "SCJG",
        "特种设备使用单位的检查",
        "《中华人民共和国特种设备安全法》第五十七条",
        "enterprise",
        &["on_site", "documentary"],
        "使用登记、定期检验、作业人员持证",
        ItemClass::Key,
        0.05,
        "特种设备",
    ),
    (
        "SCJG-ZL-001",
        "SCJG",
        "生产领域产品质量的检查",
        "《中华人民共和国产品质量法》第十五条",
        "product",
        &["testing", "professional_agency"],
        "产品质量监督抽查",
        ItemClass::General,
        0.03,
        "产品质量",
    ),
    (
        "SCJG-JL-001",
        "SCJG",
        "计量器具使用情况的检查",
        "《中华人民共和国计量法》第九条；《中华人民共和国计量法实施细则》",
        "enterprise",
        &["on_site"],
        "强制检定计量器具的检定情况",
        ItemClass::General,
        0.03,
        "计量",
    ),
    (
        "SCJG-GG-001",
        "SCJG",
        "广告发布行为的检查",
        "《中华人民共和国广告法》第四十九条",
        "enterprise",
        &["online_monitoring", "documentary"],
        "广告内容真实性与发布登记",
        ItemClass::General,
        0.03,
        "广告监管",
    ),
    (
        "SCJG-JG-001",
        "SCJG",
        "明码标价和价格行为的检查",
        "《中华人民共和国价格法》第三十四条；《明码标价和禁止价格欺诈规定》",
        "enterprise",
        &["on_site"],
        "明码标价、价格欺诈",
        ItemClass::General,
        0.03,
        "价格监管",
    ),
    (
        "STHJ-PW-001",
        "STHJ",
        "排污单位排污许可执行情况的检查",
        "《排污许可管理条例》第二十八条",
        "enterprise",
        &["on_site", "testing"],
        "持证排污、自行监测、台账记录",
        ItemClass::Key,
        0.05,
        "环境执法",
    ),
    (
        "STHJ-FW-001",
        "STHJ",
        "危险废物规范化环境管理的检查",
        "《中华人民共和国固体废物污染环境防治法》第八十一条",
        "enterprise",
        &["on_site", "documentary"],
        "危险废物贮存、转移联单",
        ItemClass::Key,
        0.05,
        "环境执法",
    ),
    (
        "YJGL-AQ-001",
        "YJGL",
        "生产经营单位安全生产的检查",
        "《中华人民共和国安全生产法》第六十五条",
        "enterprise",
        &["on_site", "documentary"],
        "安全生产责任制、隐患排查治理",
        ItemClass::Key,
        0.05,
        "安全生产",
    ),
    (
        "YJGL-WH-001",
        "YJGL",
        "危险化学品经营单位的检查",
        "《危险化学品安全管理条例》第六条",
        "enterprise",
        &["on_site"],
        "经营许可、储存场所",
        ItemClass::Key,
        0.10,
        "危险化学品",
    ),
    (
        "WSJK-GG-001",
        "WSJK",
        "公共场所卫生的检查",
        "《公共场所卫生管理条例》第十条",
        "enterprise",
        &["on_site", "testing"],
        "卫生许可证、从业人员健康检查、卫生检测",
        ItemClass::General,
        0.05,
        "卫生监督",
    ),
    (
        "WSJK-YS-001",
        "WSJK",
        "生活饮用水卫生的检查",
        "《生活饮用水卫生监督管理办法》第十六条",
        "enterprise",
        &["on_site", "testing"],
        "供水单位卫生许可、水质检测",
        ItemClass::General,
        0.05,
        "卫生监督",
    ),
    (
        "WSJK-YL-001",
        "WSJK",
        "医疗机构依法执业的检查",
        "《医疗机构管理条例》第四十条",
        "public_institution",
        &["on_site", "documentary"],
        "执业许可、人员资质",
        ItemClass::Key,
        0.05,
        "医疗监督",
    ),
    (
        "ZJ-JZ-001",
        "ZJ",
        "建筑市场行为的检查",
        "《中华人民共和国建筑法》第四十三条；《建筑工程施工许可管理办法》",
        "project",
        &["on_site", "documentary"],
        "施工许可、资质、分包",
        ItemClass::General,
        0.05,
        "建筑市场",
    ),
    (
        "ZJ-ZL-001",
        "ZJ",
        "工程质量安全的检查",
        "《建设工程质量管理条例》第四十七条",
        "project",
        &["on_site", "testing"],
        "质量保证体系、材料检测",
        ItemClass::Key,
        0.05,
        "工程质量",
    ),
    (
        "JTYS-DL-001",
        "JTYS",
        "道路运输经营者的检查",
        "《中华人民共和国道路运输条例》第五十八条",
        "enterprise",
        &["on_site", "documentary"],
        "经营许可、车辆技术档案",
        ItemClass::General,
        0.05,
        "道路运输",
    ),
    (
        "JTYS-WX-001",
        "JTYS",
        "危险货物道路运输的检查",
        "《危险货物道路运输安全管理办法》第五十八条",
        "enterprise",
        &["on_site"],
        "从业人员资格、车辆罐体检验",
        ItemClass::Key,
        0.10,
        "危险货物运输",
    ),
    (
        "SCJG-YP-001",
        "SCJG",
        "药品经营企业的检查",
        "《中华人民共和国药品管理法》第九十九条",
        "enterprise",
        &["on_site", "documentary"],
        "药品经营质量管理规范执行情况",
        ItemClass::Key,
        0.10,
        "药品监管",
    ),
];

const REGIONS: &[(&str, &str)] = &[
    ("上城区", "330102"),
    ("拱墅区", "330105"),
    ("西湖区", "330106"),
    ("滨江区", "330108"),
    ("萧山区", "330109"),
    ("余杭区", "330110"),
    ("临平区", "330113"),
    ("钱塘区", "330114"),
];

/// (industry, name suffix, department whose items apply)
const INDUSTRIES: &[(&str, &str)] = &[
    ("餐饮业", "餐饮管理有限公司"),
    ("食品制造业", "食品有限公司"),
    ("批发和零售业", "商贸有限公司"),
    ("建筑业", "建设工程有限公司"),
    ("道路运输业", "物流有限公司"),
    ("住宿业", "酒店管理有限公司"),
    ("化学原料和化学制品制造业", "化工有限公司"),
    ("医药制造业", "医药有限公司"),
    ("通用设备制造业", "机械制造有限公司"),
    ("居民服务业", "家政服务有限公司"),
    ("租赁和商务服务业", "商务咨询有限公司"),
    ("卫生", "医院有限公司"),
];

const NAME_WORDS: &[&str] = &[
    "华", "信", "恒", "盛", "鑫", "达", "宏", "远", "瑞", "丰", "鼎", "新", "泰", "安", "诚", "博",
    "锦", "润", "嘉", "和", "越", "钱", "江", "湖", "西", "东", "明", "德", "顺", "益",
];
const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "林", "罗", "高", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "涛", "明", "超",
    "秀英", "霞", "平", "刚", "建华", "晓东", "海燕", "志强", "文博", "雪", "婷", "浩",
];
const STREETS: &[&str] = &[
    "文三路",
    "文二路",
    "天目山路",
    "学院路",
    "江南大道",
    "滨盛路",
    "解放东路",
    "延安路",
    "莫干山路",
    "金城路",
    "文一西路",
    "临平大道",
    "建国北路",
    "之江路",
    "古墩路",
];

fn pick<'a, T>(rng: &mut ChaCha8Rng, list: &'a [T]) -> &'a T {
    &list[rng.next_u32() as usize % list.len()]
}

fn chance(rng: &mut ChaCha8Rng, per_mille: u32) -> bool {
    rng.next_u32() % 1000 < per_mille
}

fn person_name(rng: &mut ChaCha8Rng) -> String {
    format!("{}{}", pick(rng, SURNAMES), pick(rng, GIVEN))
}

fn demo_target(rng: &mut ChaCha8Rng, serial: usize) -> TargetInput {
    let (region, division) = *pick(rng, REGIONS);
    let (industry, suffix) = *pick(rng, INDUSTRIES);
    let roll = rng.next_u32() % 100;
    let (target_type, authority, kind) = match roll {
        0..=84 => ("enterprise", '9', '1'),
        85..=94 => ("individual_business", '9', '2'),
        95..=97 => ("farmer_coop", '9', '3'),
        _ => ("social_org", '5', '2'),
    };
    let brand = format!("{}{}", pick(rng, NAME_WORDS), pick(rng, NAME_WORDS));
    let name = match target_type {
        "individual_business" => format!(
            "{region}{brand}{}店",
            industry.chars().take(2).collect::<String>()
        ),
        "farmer_coop" => format!("杭州{brand}农产品专业合作社"),
        "social_org" => format!("杭州市{region}{brand}服务中心"),
        _ => format!("杭州{brand}{suffix}"),
    };
    let risk_class = match rng.next_u32() % 100 {
        0..=39 => "A",
        40..=74 => "B",
        75..=92 => "C",
        _ => "D",
    };
    let reg_status = match rng.next_u32() % 100 {
        0..=93 => "存续",
        94..=96 => "停业",
        97..=98 => "吊销",
        _ => "注销",
    };
    TargetInput {
        uscc: uscc::generate(authority, kind, division, 10_000_000 + serial as u32 * 37),
        name: format!(
            "{name}{}",
            if serial.is_multiple_of(7) {
                "（分公司）"
            } else {
                ""
            }
        ),
        target_type: target_type.into(),
        industry: industry.into(),
        region: region.into(),
        address: format!(
            "浙江省杭州市{region}{}{}号",
            pick(rng, STREETS),
            1 + rng.next_u32() % 999
        ),
        legal_rep: person_name(rng),
        reg_status: reg_status.into(),
        risk_class: risk_class.into(),
        flag_abnormal: chance(rng, 30),
        flag_serious: chance(rng, 5),
        complaints: if chance(rng, 50) {
            1 + rng.next_u32() % 3
        } else {
            0
        },
    }
}

/// The seal key beside SQLite database `db`, as the server would use it: for tests that seed
/// a bare database.
#[cfg(test)]
pub(crate) fn seal_of(db: &Db) -> draw::seal::SealKey {
    draw::seal::SealKey::for_database(db.path().expect("a SQLite database")).expect("seal key")
}

/// Fills an empty database with the demo agency. Does nothing (and says so)
/// when the database already has users. Its draws seal their secrets with
/// `seal`, the server's key.
pub fn seed(db: &Db, calendar: &Calendar, seal: &draw::seal::SealKey) -> Result<Summary> {
    let has_users: bool =
        db.read_blocking(|c| c.query_row("SELECT EXISTS(SELECT 1 FROM users)", [], |r| r.get(0)))?;
    if has_users {
        return Ok(Summary::default());
    }
    // The demo password is public, so per-account salts buy nothing; hashing
    // it once keeps the demo start fast.
    let hash = auth::hash_password(DEMO_PASSWORD)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0x5u64 << 32 | 2026);
    db.write_blocking(|tx| {
        let mut summary = Summary {
            seeded: true,
            ..Summary::default()
        };
        let mut user_ids = Vec::new();
        for (username, role) in accounts() {
            let role: Role = role.parse()?;
            let display = match role {
                Role::Admin => "系统管理员".to_owned(),
                Role::Planner => "计划科 王建国".to_owned(),
                Role::Supervisor => "法制审核科 陈静".to_owned(),
                Role::Inspector => person_name(&mut rng),
            };
            let user = accounts::insert_user(tx, ACTOR, &username, &display, &hash, &[role])?;
            user_ids.push(user);
        }
        for (code, name) in DEPARTMENTS {
            departments::insert(
                tx,
                ACTOR,
                &Department {
                    id: 0,
                    code: (*code).into(),
                    name: (*name).into(),
                },
            )?;
            summary.departments += 1;
        }
        for spec in ITEMS {
            let (code, dept, name, basis, target_type, methods, content, class, ratio, qual) =
                *spec;
            items::insert(
                tx,
                ACTOR,
                &NewItem {
                    code: code.into(),
                    input: ItemInput {
                        name: name.into(),
                        legal_basis: basis.into(),
                        department: dept.into(),
                        target_type: target_type.into(),
                        methods: methods.iter().map(|m| (*m).into()).collect(),
                        content: content.into(),
                        class,
                        default_ratio: ratio,
                        frequency: 1,
                        qualification: Some(qual.into()),
                    },
                },
            )?;
            summary.items += 1;
        }
        let at = now();
        for serial in 0..DEMO_TARGETS {
            let target = demo_target(&mut rng, serial).normalise()?;
            targets::insert_unaudited(tx, &target, &at)?;
        }
        summary.targets = DEMO_TARGETS;
        crate::audit::append(
            tx,
            ACTOR,
            "target.import",
            "targets",
            None,
            Some(&serde_json::json!({"rows": DEMO_TARGETS, "source": "demo generator"})),
        )?;
        // Inspectors: spread over departments, each qualified for one to three
        // of their department's items.
        for (n, user) in user_ids
            .iter()
            .filter(|u| u.roles.contains(&Role::Inspector))
            .enumerate()
        {
            let (dept, _) = DEPARTMENTS[n % DEPARTMENTS.len()];
            let mut expertise: Vec<String> = ITEMS
                .iter()
                .filter(|spec| spec.1 == dept)
                .map(|spec| spec.9.to_owned())
                .collect();
            expertise.dedup();
            let keep = 1 + rng.next_u32() as usize % 3;
            let start = rng.next_u32() as usize % expertise.len();
            expertise.rotate_left(start);
            expertise.truncate(keep.min(expertise.len()));
            if dept == "SCJG" && !expertise.iter().any(|e| e == "食品安全") {
                expertise.push("食品安全".into());
            }
            if n % 10 == 0 && !expertise.iter().any(|e| e == "企业信息公示") {
                expertise.push("企业信息公示".into());
            }
            inspectors::insert(
                tx,
                ACTOR,
                &InspectorInput {
                    user_id: user.id,
                    name: user.display_name.clone(),
                    cert_no: format!("浙{}330100{:05}", dept, 20_000 + n),
                    department: dept.into(),
                    expertise,
                    region: REGIONS[n % REGIONS.len()].0.into(),
                    active: n % 29 != 28,
                    expert: n % 12 == 0,
                },
            )?;
            summary.inspectors += 1;
        }
        let reasons = [
            "配偶在该单位任职",
            "曾在该单位任职未满三年",
            "与法定代表人系近亲属",
            "持有该单位股份",
        ];
        for k in 0..8 {
            let inspector_id = 1 + (k * 7) as i64;
            let target_id = 1 + i64::from(rng.next_u32() % DEMO_TARGETS as u32);
            inspectors::insert_conflict(
                tx,
                ACTOR,
                inspector_id,
                target_id,
                reasons[k % reasons.len()],
            )?;
        }
        let food_task = seed_plan(tx)?;
        // A published draw, so a newcomer can verify one at once.
        let commitment = draw::commit(
            tx,
            "planner",
            food_task,
            &draw::CommitRequest::default(),
            seal,
        )?;
        let entropy = vec![
            Entropy {
                observer: "市人大代表 李华".into(),
                value: "20261122".into(),
            },
            Entropy {
                observer: "《钱江晚报》记者 周敏".into(),
                value: "8848".into(),
            },
        ];
        let ceremony = draw::Ceremony {
            commitment_id: commitment.id,
            entropy,
            beacon_value: None,
        };
        draw::execute(tx, "planner", food_task, ceremony, seal, calendar)?;
        draw::publish(tx, "planner", food_task)?;
        summary.published_draws = 1;
        // Review and publication of a task of its own, through the real code paths.
        let plan_id = plans::get_task_by_id(tx, food_task)?.plan_id;
        crate::review::demo::walk(tx, plan_id, seal, calendar)?;
        summary.published_draws += 1;
        Ok(summary)
    })
}

/// Creates and publishes the demo plan; returns the id of the food-safety task.
fn seed_plan(tx: &crate::store::sql::Tx<'_>) -> Result<i64> {
    let plan = plans::insert_plan(
        tx,
        ACTOR,
        &NewPlan {
            number: "HZ-2026-SJ-01".into(),
            name: "2026年度市场监管领域部门联合“双随机、一公开”抽查计划".into(),
            year: 2026,
            department: "SCJG".into(),
        },
    )?;
    let item = |code: &str| TaskItemInput {
        code: code.into(),
        version: None,
        department: None,
    };
    let date = |s: &str| s.parse().expect("valid demo date");
    plans::insert_task(
        tx,
        ACTOR,
        plan.id,
        &NewTask {
            number: "HZ-2026-SJ-01-001".into(),
            name: "2026年企业公示信息不定向抽查".into(),
            directed: false,
            conditions: Conditions::default(),
            ratio: Some(0.03),
            count: None,
            items: vec![item("SCJG-GS-001")],
            window_start: date("2026-06-01"),
            window_end: date("2026-11-27"),
            department: None,
            joint: false,
        },
    )?;
    let food = plans::insert_task(
        tx,
        ACTOR,
        plan.id,
        &NewTask {
            number: "HZ-2026-SJ-01-002".into(),
            name: "2026年餐饮服务食品安全定向抽查".into(),
            directed: true,
            conditions: Conditions {
                industries: vec!["餐饮业".into()],
                reg_statuses: vec!["存续".into()],
                ..Conditions::default()
            },
            ratio: None,
            count: Some(40),
            items: vec![item("SCJG-SP-002")],
            window_start: date("2026-09-01"),
            window_end: date("2026-11-27"),
            department: None,
            joint: false,
        },
    )?;
    plans::insert_task(
        tx,
        ACTOR,
        plan.id,
        &NewTask {
            number: "HZ-2026-SJ-01-003".into(),
            name: "2026年危险化学品企业部门联合抽查".into(),
            directed: true,
            conditions: Conditions {
                industries: vec!["化学原料和化学制品制造业".into()],
                ..Conditions::default()
            },
            ratio: Some(0.2),
            count: None,
            items: vec![
                item("YJGL-WH-001"),
                item("STHJ-FW-001"),
                item("SCJG-TZ-001"),
            ],
            window_start: date("2026-10-08"),
            window_end: date("2026-11-30"),
            department: Some("YJGL".into()),
            joint: true,
        },
    )?;
    plans::publish(tx, ACTOR, plan.id)?;
    Ok(food.id)
}
